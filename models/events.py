"""Append-only event rows: every money, stock or risk state change leaves one an admin can read,
and later domains (commission clawback, risk) consume them by topic."""

from __future__ import annotations

from typing import Any

import peewee as pw

from models.db import BaseModel, JSONText, utcnow


class Event(BaseModel):
    topic = pw.CharField(max_length=64, index=True)  # e.g. order.paid, order.refunded, stock.low
    subject = pw.CharField(max_length=64, index=True)  # e.g. order:42, sku:7
    actor = pw.CharField(max_length=64)  # user:3, operator:cli, system:worker
    payload = JSONText(default=dict)
    created_at = pw.DateTimeField(default=utcnow, index=True)


def record(topic: str, subject: str, actor: str, **payload: Any) -> Event:
    """Write one event inside the caller's transaction."""
    return Event.create(topic=topic, subject=subject, actor=actor, payload=payload)


def events_for(subject: str) -> list[Event]:
    return list(Event.select().where(Event.subject == subject).order_by(Event.id))
