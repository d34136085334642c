"""Periodic jobs: expire unpaid orders, reconcile unclear payments, sweep stuck deliveries."""

from __future__ import annotations

import datetime as dt
import logging

from peewee import SQL, fn

from models import orders, payments
from models.db import connection, utcnow
from models.notifications import Notification
from models.orders import Order, Status
from models.payments import GatewayError, Outcome
from qianxing.wiring import runtime
from tasks import queues

log = logging.getLogger(__name__)


def expire_unpaid_orders() -> int:
    with connection():
        return orders.expire_due()


def reconcile_payments(older_than_s: int = 120) -> dict[str, int]:
    """Ask the provider about orders whose payment we never heard back on."""
    rt = runtime()
    counts = {"checked": 0, "paid": 0}
    with connection():
        for order in payments.unclear_orders(older_than_s):
            counts["checked"] += 1
            try:
                result = rt.gateway.query(order.no)
            except GatewayError:
                log.warning("reconcile: query failed for order %s", order.id)
                continue
            if result.state == "SUCCESS" and result.transaction_id and result.total_fee is not None:
                try:
                    order_id, outcome = payments.confirm_payment(
                        order.no, result.transaction_id, result.total_fee, source="reconcile")
                except payments.PaymentRejected:
                    log.error("reconcile: provider reports a mismatching payment for %s", order.id)
                    continue
                dispatch_payment(order_id, outcome)
                counts["paid"] += outcome == Outcome.PAID
    return counts


def dispatch_payment(order_id: int, outcome: Outcome) -> None:
    if outcome == Outcome.PAID:
        queues.deliver(order_id)
    elif outcome == Outcome.REFUND:
        queues.refund(order_id, "paid after the order expired and the stock was gone")


def sweep_undelivered(older_than_s: int = 60) -> int:
    """Re-queue work that fell through (a lost enqueue, a worker that died mid-batch): paid
    orders still undelivered, and delivered orders whose notice was never sent or got stuck.
    Everything re-queued is idempotent, so a false alarm costs nothing."""
    rt = runtime()
    cutoff = utcnow() - dt.timedelta(seconds=older_than_s)
    horizon = cutoff - dt.timedelta(days=2)
    with connection():
        paid = [o.id for o in Order.select(Order.id).where(
            (Order.status == Status.PAID) & (Order.paid_at <= cutoff)).limit(500)]
        unsent: list[tuple[int, str]] = []
        for notifier in rt.notifiers:
            # NOT EXISTS, looked up per order through notification.order_id: the window's
            # orders are few, the notifications of all time many (NOT IN hashed them all).
            done = Notification.select(SQL("1")).where(
                (Notification.order_id == Order.id) & (Notification.channel == notifier.channel)
                & ((Notification.state.in_(["sent", "failed"]))
                   | (Notification.claimed_at > cutoff)))
            unsent += [(o.id, notifier.channel) for o in Order.select(Order.id).where(
                (Order.status == Status.DELIVERED) & (Order.delivered_at <= cutoff)
                & (Order.delivered_at >= horizon) & ~fn.EXISTS(done)).limit(500)]
    for order_id in paid:
        queues.deliver(order_id)
    for order_id, channel in unsent:
        queues.notify(order_id, channel)
    return len(paid) + len(unsent)
