"""Periodic jobs: expire unpaid orders, reconcile unclear payments, sweep stuck deliveries; and
the recovery run the worker queues when it starts and when Redis comes back."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

from peewee import SQL, Field, Select, Tuple, fn

from models import live_orders, orders, payments
from models.chat import BotUpdate, OutboundMessage
from models.db import connection, utcnow
from models.notifications import Notification, send_notices
from models.orders import Order, Status
from models.payments import GatewayError, Outcome
from tasks import queues
from tasks.context import runtime

log = logging.getLogger(__name__)


def expire_unpaid_orders() -> int:
    expired: list[int] = []
    with connection():
        count = orders.expire_due(expired_ids=expired)
        live_orders.reopen_gates(runtime().redis, expired)  # places given back: sell them at once
    return count


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


SWEEP_CHUNK = 1000  # ids read, and re-queued, per round trip: memory stays bounded
NOTICE_CHUNK = 100  # notices per job (each is a platform call): well inside the job timeout


def sweep_undelivered(older_than_s: int = 30) -> int:
    """Re-queue work that fell through (a lost enqueue, a worker that died mid-batch, a Redis
    that lost its data): paid orders still undelivered, and delivered orders whose notice was
    never sent or got stuck. Everything that is due goes in one pass, streamed from the
    database in chunks of SWEEP_CHUNK ids (keyset pagination on the partial status indexes),
    each chunk pushed on the delivery list in one round trip, so thousands of orders come back
    at the speed of normal delivery. Everything re-queued is idempotent: an order a drain is
    delivering right now is simply skipped by the second attempt, a notice is claimed before
    it is sent. Returns how many orders (and order x channel notices) were re-queued."""
    rt = runtime()
    cutoff = utcnow() - dt.timedelta(seconds=older_than_s)
    horizon = cutoff - dt.timedelta(days=2)
    count = 0
    # Group-buy orders waiting for their team are the group jobs' (tasks/groupbuy.py), not late.
    paid = Order.select(Order.id, Order.paid_at).where(
        (Order.status == Status.PAID) & (Order.paid_at <= cutoff) & ~Order.group_hold)
    for ids in _chunks(paid, Order.paid_at):
        queues.deliver_many(ids)
        count += len(ids)
    for notifier in rt.notifiers:
        # NOT EXISTS, looked up per order through notification.order_id: the window's
        # orders are few, the notifications of all time many (NOT IN hashed them all).
        done = Notification.select(SQL("1")).where(
            (Notification.order_id == Order.id) & (Notification.channel == notifier.channel)
            & ((Notification.state.in_(["sent", "failed"]))
               | (Notification.claimed_at > cutoff)))
        unsent = Order.select(Order.id, Order.delivered_at).where(
            (Order.status == Status.DELIVERED) & (Order.delivered_at <= cutoff)
            & (Order.delivered_at >= horizon) & ~fn.EXISTS(done))
        for ids in _chunks(unsent, Order.delivered_at):
            for at in range(0, len(ids), NOTICE_CHUNK):
                queues.notify_many(ids[at:at + NOTICE_CHUNK], notifier.channel)
            count += len(ids)
    return count


def _chunks(query: Select, stamp: Field, size: int = SWEEP_CHUNK) -> Iterator[list[int]]:
    """The ids `query` selects (id and `stamp` columns), SWEEP_CHUNK at a time in (stamp, id)
    order; one short connection per chunk, none held while the caller re-queues."""
    after: tuple[Any, int] | None = None
    while True:
        page = query
        if after is not None:
            page = page.where(Tuple(stamp, Order.id) > Tuple(stamp.db_value(after[0]), after[1]))
        with connection():
            rows = list(page.order_by(stamp, Order.id).limit(size).tuples())
        if rows:
            yield [order_id for order_id, _ in rows]
        if len(rows) < size:
            return
        order_id, at = rows[-1]
        after = (at, order_id)


def notify_orders(order_ids: list[int], channel: str) -> dict[str, int]:
    """The sweep's notice job: send one chunk's notices on one channel in one pass; a transient
    failure is retried on its own (DELIVERY_RETRY_INTERVALS), like the delivery job's."""
    notifier = next(n for n in runtime().notifiers if n.channel == channel)
    with connection():
        states = send_notices(order_ids, notifier)
    counts: dict[str, int] = {}
    for order_id, (state, _) in states.items():
        counts[state] = counts.get(state, 0) + 1
        if state == "retry":
            queues.notify(order_id, channel, first_delay=True)
    return counts


def recover() -> dict[str, int]:
    """Queued by the worker at the front of its queue when it starts and when Redis comes back
    after an outage (tasks.worker): re-queue every paid order now (not only those paid a while
    ago: the ids a killed drain had popped, the signals lost while Redis was down or with its
    data are all in the database), and kick every drain that has work (chat updates, outbound
    messages), so a restart or a Redis that lost its data costs seconds of delivery, not a
    sweep interval. Kept light: the chat drains (and their imports) run as jobs of their own,
    after the delivery drain."""
    swept = sweep_undelivered(older_than_s=0)
    queues.drain_deliveries()
    with connection():
        updates = BotUpdate.select().where(BotUpdate.state == "queued").exists()
        outbound = OutboundMessage.select().where(OutboundMessage.state.in_(["pending", "sending"])).exists()
    if updates:
        queues.drain_chat_updates()
    if outbound:
        queues.drain_all_outbound()
    log.info("recovery run: %d orders and notices re-queued, drains queued", swept)
    return {"requeued": swept, "chat_updates": int(updates), "outbound": int(outbound)}
