"""Enqueue helpers: one per job, so job ids, retries and timeouts are set in one place.

Jobs are enqueued after the transaction that made them necessary has committed. If Redis is
down at that moment nothing is lost: the sweep job finds paid-but-undelivered orders.
"""

from __future__ import annotations

import datetime as dt
import logging

from redis.exceptions import RedisError
from rq import Retry

from qianxing.wiring import runtime

log = logging.getLogger(__name__)


def _enqueue(func: str, *args: object, job_id: str | None = None, retry: Retry | None = None,
             delay_s: int = 0) -> None:
    rt = runtime()
    try:
        if delay_s:
            rt.queue.enqueue_in(dt.timedelta(seconds=delay_s), func, *args, job_id=job_id,
                                retry=retry, job_timeout=120)
        else:
            rt.queue.enqueue(func, *args, job_id=job_id, retry=retry, job_timeout=120)
    except RedisError:
        log.exception("could not enqueue %s%s; the sweep will pick it up", func, args)


DELIVERY_LIST = "qianxing:deliver:pending"
DELIVERY_FLAG = "qianxing:deliver:scheduled"


def deliver(order_id: int) -> None:
    """Queue a paid order for delivery. Orders are delivered in batches by one drain job, not
    one RQ job each (RQ spends ~5 ms of CPU per job, more than a delivery costs)."""
    if _signal(DELIVERY_LIST, DELIVERY_FLAG, order_id,
               "could not queue order %s for delivery; the sweep will pick it up"):
        drain_deliveries()


def _signal(list_key: str, flag_key: str, item: int, failure: str) -> bool:
    """Push an id for a drain job; True when no drain is scheduled yet (the caller queues
    one). A Redis failure is logged with `failure` and answered False: the sweeps find it."""
    rt = runtime()
    try:
        pipe = rt.redis.pipeline(transaction=False)
        pipe.rpush(list_key, item)
        pipe.set(flag_key, 1, nx=True, ex=60)
        _, first = pipe.execute()
    except RedisError:
        log.exception(failure, item)
        return False
    return bool(first)


def drain_deliveries() -> None:
    _enqueue("tasks.delivery.deliver_pending")


def notify(order_id: int, channel: str, *, first_delay: bool = False) -> None:
    """Retry a notice push on the DELIVERY_RETRY_INTERVALS schedule (the first attempt is made
    inline by the delivery job; `first_delay` waits the first interval before this one)."""
    intervals = runtime().settings.intervals("DELIVERY_RETRY_INTERVALS")
    if first_delay:
        delay, rest = intervals[0], intervals[1:]
    else:
        delay, rest = 0, intervals
    _enqueue("tasks.delivery.notify_order", order_id, channel, delay_s=delay,
             retry=Retry(max=len(rest), interval=rest) if rest else None)


def topup(order_id: int, delay_s: int = 0) -> None:
    _enqueue("tasks.delivery.topup_order", order_id, delay_s=delay_s)


def refund(order_id: int, reason: str) -> None:
    _enqueue("tasks.delivery.refund_order", order_id, reason,
             retry=Retry(max=5, interval=[30, 120, 600, 1800, 3600]))



def settle_live(live_id: int) -> None:
    """Settle a live session's orders now that it ended (the periodic settle_all is the net)."""
    _enqueue("tasks.settlement.settle_live", live_id)


def reverse_refunded() -> None:
    """Take back the commission of refunded orders (settle_all also does, every 5 minutes)."""
    _enqueue("tasks.settlement.reverse_refunded")


CHAT_UPDATES_LIST = "qianxing:chat_updates:pending"
CHAT_UPDATES_FLAG = "qianxing:chat_updates:scheduled"


def chat_update(row_id: int) -> None:
    """Signal a stored Telegram update (bot_update row). Like deliveries: a Redis list and a
    flag, and ONE drain job (tasks.chat_updates.process_updates) that works through every
    queued row in batches. If Redis is down the row stays queued for the next drain."""
    if _signal(CHAT_UPDATES_LIST, CHAT_UPDATES_FLAG, row_id,
               "could not signal chat update %s; the next drain will pick it up"):
        drain_chat_updates()


def drain_chat_updates(delay_s: int = 0) -> None:
    _enqueue("tasks.chat_updates.process_updates", delay_s=delay_s)


OUTBOUND_FLAG = "qianxing:outbound:{}:scheduled"
OUTBOUND_FLAG_TTL_S = 300


def drain_outbound(platform: str, *, at: dt.datetime | None = None) -> None:
    """Make sure a drain job (tasks.chat.drain_outbound) will send the platform's outbound
    messages: one queued job at a time (a flag with SET NX, cleared when the job starts, so a
    message written during a run queues the next run); `at` (naive UTC) wakes a drain then
    instead, for retries and rate-limited rows that are not due yet (one wake per second)."""
    from models.db import utcnow

    rt = runtime()
    delay = (at - utcnow()).total_seconds() if at is not None else 0.0
    try:
        if delay > 0.5:
            when = at.replace(tzinfo=dt.UTC)
            rt.queue.enqueue_at(when, "tasks.chat.drain_outbound", platform,
                                job_id=f"outbound-wake-{platform}-{int(when.timestamp())}", job_timeout=180)
            return
        if rt.redis.set(OUTBOUND_FLAG.format(platform), 1, nx=True, ex=OUTBOUND_FLAG_TTL_S):
            rt.queue.enqueue("tasks.chat.drain_outbound", platform, job_timeout=180)
    except RedisError:
        log.exception("could not queue an outbound drain for %s; the periodic drain will", platform)
