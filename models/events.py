"""Append-only event rows: every money, stock or risk state change leaves one an admin can read,
and later domains (commission clawback, risk) consume them by topic."""

from __future__ import annotations

from typing import Any

import peewee as pw

from models.db import BaseModel, JSONText, execute, utcnow


class Event(BaseModel):
    topic = pw.CharField(max_length=64, index=True)  # e.g. order.paid, order.refunded, stock.low
    subject = pw.CharField(max_length=64, index=True)  # e.g. order:42, sku:7
    actor = pw.CharField(max_length=64)  # user:3, operator:cli, system:worker
    payload = JSONText(default=dict)
    created_at = pw.DateTimeField(default=utcnow)  # ordered by id, not by time


def record(topic: str, subject: str, actor: str, **payload: Any) -> None:
    """Write one event inside the caller's transaction."""
    execute(*statement(topic, subject, actor, **payload))


def statement(topic: str, subject: str, actor: str, **payload: Any) -> tuple[str, list]:
    """The INSERT for one event, for callers that batch it with other statements."""
    return many_statement(topic, actor, [(subject, payload)])


def many_statement(topic: str, actor: str, rows: list[tuple[str, dict[str, Any]]]) -> tuple[str, list]:
    """One INSERT for many events of one topic: rows of (subject, payload)."""
    now = Event.created_at.db_value(utcnow())
    values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(rows))
    params = [v for subject, payload in rows
              for v in (topic, subject, actor, Event.payload.db_value(payload), now)]
    return f"INSERT INTO event (topic, subject, actor, payload, created_at) VALUES {values}", params


def events_for(subject: str) -> list[Event]:
    return list(Event.select().where(Event.subject == subject).order_by(Event.id))
