"""Enqueue helpers: one per job, so job ids, retries and timeouts are set in one place.

Jobs are enqueued after the transaction that made them necessary has committed. If Redis is
down at that moment nothing is lost: the sweep job finds paid-but-undelivered orders.

Drains (deliveries, chat updates, outbound messages) are one job per burst, not one per item:
a producer pushes an id on a Redis list and takes the drain's flag with `SET NX EX`; only the
producer that took it queues a drain job. The flag is a short lease (`DRAIN_LEASE_S`), not a
"scheduled" marker that lives until someone clears it: the running drain renews it every batch
(`hold`), drops it when the list is empty (`release`, then looks once more), and drops it
when it fails. So a drain that is killed (kill -9, a lost worker) blocks new drains for at most
the lease, a failed drain blocks nobody, and the worker also queues every drain when it starts
and when Redis comes back (tasks.maintenance.recover). Two drains that overlap are harmless:
each pops its own ids, and delivering an order twice is a no-op. A failed drain is retried
(`DRAIN_RETRY`: after 1 s, then with backoff) after pushing its ids back.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from redis.exceptions import RedisError
from rq import Retry

from tasks.context import runtime

log = logging.getLogger(__name__)


# A failed drain job is retried after 1 s, then 2, 5, 10 and 30 s (a database outage);
# anything still left is found by the next signal, the worker's recovery run or the sweep.
DRAIN_RETRY = Retry(max=5, interval=[1, 2, 5, 10, 30])


def _enqueue(func: str, *args: object, job_id: str | None = None, retry: Retry | None = None,
             delay_s: int = 0) -> None:
    rt = runtime()
    try:
        if delay_s:
            rt.queue.enqueue_in(dt.timedelta(seconds=delay_s), func, *args, job_id=job_id,
                                retry=retry, job_timeout=120)
        else:
            rt.queue.enqueue(func, *args, job_id=job_id, retry=retry, job_timeout=120)
    except RedisError as exc:  # one line, no traceback: an outage would flood the log
        log.error("could not enqueue %s%s (%s: %s); the sweep will pick it up",
                  func, args, type(exc).__name__, exc)


DELIVERY_LIST = "qianxing:deliver:pending"
DELIVERY_FLAG = "qianxing:deliver:scheduled"


def deliver(order_id: int) -> None:
    """Queue a paid order for delivery. Orders are delivered in batches by one drain job, not
    one RQ job each (RQ spends ~5 ms of CPU per job, more than a delivery costs)."""
    deliver_many([order_id])


def deliver_many(order_ids: list[int]) -> None:
    """Queue paid orders for delivery in one round trip (the sweep re-queues in chunks)."""
    if order_ids and _signal(DELIVERY_LIST, DELIVERY_FLAG, order_ids,
                             "could not queue orders %s for delivery; the sweep will pick them up"):
        drain_deliveries()


def lease_s() -> int:
    return runtime().settings.DRAIN_LEASE_S


_signals_lost = False  # a signal failed in this process since Redis last answered


def _signal(list_key: str, flag_key: str, items: list[int], failure: str) -> bool:
    """Push ids for a drain job; True when this call took the drain's lease (the caller queues
    the drain). A Redis failure is logged with `failure` and answered False: the sweeps find
    the items (rows in the database) later."""
    global _signals_lost
    rt = runtime()
    try:
        pipe = rt.redis.pipeline(transaction=False)
        pipe.rpush(list_key, *items)
        pipe.set(flag_key, 1, nx=True, ex=lease_s())
        _, first = pipe.execute()
    except RedisError as exc:  # one line, no traceback: an outage would flood the log
        what = items[0] if len(items) == 1 else items if len(items) <= 10 else f"({len(items)} ids)"
        log.error(failure + " (%s: %s)", what, type(exc).__name__, exc)
        _signals_lost = True
        return False
    if _signals_lost:  # Redis is back: have the worker find what this process could not signal
        _signals_lost = False
        recover()
    return bool(first)


def hold(flag_key: str, pipe: Any = None) -> None:
    """A running drain renews its lease (every batch), so producers keep leaving it the work."""
    (pipe if pipe is not None else runtime().redis).set(flag_key, 1, ex=lease_s())


def release(flag_key: str, list_key: str) -> bool:
    """A drain found its list empty: drop the lease, then look once more. True when ids
    arrived in between and this drain took the lease back (it carries on); an id pushed after
    the look sees no lease and queues a new drain, so nothing is stranded."""
    redis = runtime().redis
    redis.delete(flag_key)
    return bool(redis.llen(list_key)) and bool(redis.set(flag_key, 1, nx=True, ex=lease_s()))


def drop(flag_key: str) -> None:
    """A drain that fails gives its lease up at once (the next signal queues a new drain);
    if Redis itself is what failed, the lease runs out by itself."""
    try:
        runtime().redis.delete(flag_key)
    except RedisError:
        pass


def drain_deliveries() -> None:
    _enqueue("tasks.delivery.deliver_pending", retry=DRAIN_RETRY)


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


def notify_many(order_ids: list[int], channel: str) -> None:
    """The sweep's notices: one job per chunk sends them in one pass (send_notices); each
    notice still claims its row first, so one being sent elsewhere is not sent twice."""
    _enqueue("tasks.maintenance.notify_orders", order_ids, channel)


def recover() -> None:
    """Queue the recovery run (tasks.maintenance.recover) at the front of the queue: the worker
    does it when it starts and when Redis comes back, so work a killed worker or a Redis that
    lost its data left behind is picked up in seconds, not at the next sweep."""
    try:
        runtime().queue.enqueue("tasks.maintenance.recover", at_front=True, job_timeout=600)
    except RedisError:
        log.warning("could not queue the recovery run; the periodic sweep will do its work")


def topup(order_id: int, delay_s: int = 0) -> None:
    _enqueue("tasks.delivery.topup_order", order_id, delay_s=delay_s)


def refund(order_id: int, reason: str) -> None:
    _enqueue("tasks.delivery.refund_order", order_id, reason,
             retry=Retry(max=5, interval=[30, 120, 600, 1800, 3600]))



def refund_members(order_ids: list[int]) -> None:
    """Refund group-buy members (their team failed, or a late payment found no seat): one job
    per chunk of 100 (tasks.groupbuy.refund_members); a refund WeChat Pay refuses is retried by
    tasks.groupbuy.retry_refunds on GROUP_REFUND_BACKOFF_S, and a lost job is found by it too."""
    ids = sorted(set(order_ids))
    for at in range(0, len(ids), 100):
        _enqueue("tasks.groupbuy.refund_members", ids[at:at + 100])


def close_team_at(team_id: int, at: dt.datetime) -> None:
    """A group-buy team's own close job at its expiry (`at`, naive UTC), one per team (its job
    id; queueing it again moves it); the periodic tasks.groupbuy.close_expired is the net."""
    when = at.replace(tzinfo=dt.UTC)
    try:
        runtime().queue.enqueue_at(when, "tasks.groupbuy.close_team", team_id, job_id=f"group-close-{team_id}",
                                   job_timeout=120)
    except RedisError as exc:
        log.error("could not schedule the close of group team %s (%s); the sweeper will close it",
                  team_id, type(exc).__name__)


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
    if _signal(CHAT_UPDATES_LIST, CHAT_UPDATES_FLAG, [row_id],
               "could not signal chat update %s; the next drain will pick it up"):
        drain_chat_updates()


def drain_chat_updates(delay_s: int = 0) -> None:
    _enqueue("tasks.chat_updates.process_updates", delay_s=delay_s, retry=DRAIN_RETRY)


def drain_all_outbound() -> None:
    """Queue the outbound safety net now (tasks.chat.drain_all: a drain per platform with due
    messages), as the recovery run does."""
    _enqueue("tasks.chat.drain_all")


OUTBOUND_FLAG = "qianxing:outbound:{}:scheduled"


def drain_outbound(platform: str, *, at: dt.datetime | None = None) -> None:
    """Make sure a drain job (tasks.chat.drain_outbound) will send the platform's outbound
    messages: one queued job at a time (a lease with SET NX EX DRAIN_LEASE_S, dropped when the
    job starts, so a message written during a run queues the next run, and dropped again if
    the enqueue fails); `at` (naive UTC) wakes a drain then instead, for retries and
    rate-limited rows that are not due yet (one wake per second)."""
    from models.db import utcnow

    rt = runtime()
    delay = (at - utcnow()).total_seconds() if at is not None else 0.0
    try:
        if delay > 0.5:
            when = at.replace(tzinfo=dt.UTC)
            rt.queue.enqueue_at(when, "tasks.chat.drain_outbound", platform,
                                job_id=f"outbound-wake-{platform}-{int(when.timestamp())}", job_timeout=180)
            return
        flag = OUTBOUND_FLAG.format(platform)
        if rt.redis.set(flag, 1, nx=True, ex=lease_s()):
            try:
                rt.queue.enqueue("tasks.chat.drain_outbound", platform, job_timeout=180,
                                 retry=DRAIN_RETRY)
            except RedisError:
                drop(flag)
                raise
    except RedisError:
        log.exception("could not queue an outbound drain for %s; the periodic drain will", platform)
