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


def deliver(order_id: int) -> None:
    _enqueue("tasks.delivery.deliver_order", order_id)


def notify(order_id: int, channel: str) -> None:
    intervals = runtime().settings.intervals("DELIVERY_RETRY_INTERVALS")
    _enqueue("tasks.delivery.notify_order", order_id, channel,
             retry=Retry(max=len(intervals), interval=intervals))


def topup(order_id: int, delay_s: int = 0) -> None:
    _enqueue("tasks.delivery.topup_order", order_id, delay_s=delay_s)


def refund(order_id: int, reason: str) -> None:
    _enqueue("tasks.delivery.refund_order", order_id, reason,
             retry=Retry(max=5, interval=[30, 120, 600, 1800, 3600]))

