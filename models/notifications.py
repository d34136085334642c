"""Buyer notifications through one delivery interface, with every attempt recorded.

A notification is claimed with a lease before it is sent, so two workers running the same job
never push twice; a worker that dies mid-send frees the claim when the lease runs out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

import peewee as pw

from models.catalog import Sku
from models.db import BaseModel, db, utcnow
from models.errors import DomainError
from models.orders import Order
from models.users import User

LEASE_SECONDS = 60


class Notification(BaseModel):
    key = pw.CharField(max_length=96, unique=True)  # kind:order:channel
    order_id = pw.BigIntegerField(index=True)
    user = pw.ForeignKeyField(User, on_delete="RESTRICT")
    channel = pw.CharField(max_length=32)
    kind = pw.CharField(max_length=32)
    state = pw.CharField(max_length=16, default="pending")  # pending, sending, sent, failed
    attempts = pw.IntegerField(default=0)
    last_error = pw.CharField(max_length=200, null=True)
    claimed_at = pw.DateTimeField(null=True)
    created_at = pw.DateTimeField(default=utcnow)
    sent_at = pw.DateTimeField(null=True)


class NotificationAttempt(BaseModel):
    notification = pw.ForeignKeyField(Notification, backref="attempt_rows", on_delete="RESTRICT")
    number = pw.IntegerField()
    ok = pw.BooleanField()
    error = pw.CharField(max_length=200, null=True)
    created_at = pw.DateTimeField(default=utcnow)


class NotifyError(DomainError):
    code = "notify_failed"

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Notice:
    """What the buyer is told. Never carries a card key: the buyer reveals it in the app."""

    kind: str
    order_no: str
    order_id: int
    product: str
    amount_fen: int
    when: str
    page: str


class Notifier(Protocol):
    channel: str

    def send(self, user: User, notice: Notice) -> None:
        """Push one notice. Raises NotifyError (transient or not)."""


def delivery_notice(order: Order, sku: Sku) -> Notice:
    return Notice(kind="delivered", order_no=order.no, order_id=order.id, product=sku.name,
                  amount_fen=order.amount_fen,
                  when=(order.delivered_at or utcnow()).strftime("%Y-%m-%d %H:%M"),
                  page=f"pages/vouchers/index?order={order.id}")


def send_notice(order_id: int, notifier: Notifier, kind: str = "delivered") -> str:
    """Send one notice for an order through a channel, at most once. Returns the final state
    ('sent', 'failed', or 'busy' when another worker holds the claim). Re-raises a transient
    NotifyError so the job is retried with backoff."""
    order = Order.select(Order, Sku).join(Sku).where(Order.id == order_id).get()
    key = f"{kind}:{order_id}:{notifier.channel}"
    Notification.insert(key=key, order_id=order_id, user=order.user_id, channel=notifier.channel,
                        kind=kind).on_conflict_ignore().execute()
    now = utcnow()
    stale = now - dt.timedelta(seconds=LEASE_SECONDS)
    claimed = Notification.update(state="sending", claimed_at=now,
                                  attempts=Notification.attempts + 1).where(
        (Notification.key == key)
        & ((Notification.state == "pending")
           | ((Notification.state == "sending") & (Notification.claimed_at < stale)))
    ).execute()
    note = Notification.get(Notification.key == key)
    if not claimed:
        return note.state if note.state in ("sent", "failed") else "busy"
    try:
        notifier.send(order.user, delivery_notice(order, order.sku))
    except NotifyError as exc:
        with db.atomic():
            NotificationAttempt.create(notification=note, number=note.attempts, ok=False,
                                       error=exc.message[:200])
            state = "pending" if exc.transient else "failed"
            Notification.update(state=state, last_error=exc.message[:200]).where(
                Notification.id == note.id).execute()
        if exc.transient:
            raise
        return "failed"
    with db.atomic():
        NotificationAttempt.create(notification=note, number=note.attempts, ok=True)
        Notification.update(state="sent", sent_at=utcnow()).where(Notification.id == note.id).execute()
    return "sent"
