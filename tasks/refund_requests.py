"""Shopper refund requests (models/refund_requests.py): the refund of a granted request, the
shopper's notice of the result, and the sweep that finishes what a lost job left (a request
granted from the chat, which cannot queue jobs, waits for it: at most a minute).

    refund_requested(id)  payments.refund_order (idempotent: the refund number is the order's),
                          then REFUNDING -> REFUNDED with the notice rows, then the push
    notify_result(id)     push the decided request's notice on every channel (once per key)
    sweep()               periodic: every REFUNDING request, and notices left pending
"""

from __future__ import annotations

import datetime as dt
import logging

from redis.exceptions import RedisError
from rq import Retry

from models import live_orders, payments, refund_requests
from models.db import connection, utcnow
from models.notifications import NotifyError
from models.payments import GatewayError
from tasks import queues
from tasks.context import runtime

log = logging.getLogger(__name__)

# A refund WeChat Pay did not take is tried again after 30 s, 2, 10, 30 and 60 minutes; the
# sweep keeps trying after that (a REFUNDING request stays on its list until it is refunded).
REFUND_RETRY = Retry(max=5, interval=[30, 120, 600, 1800, 3600])
NOTICE_RETRY = Retry(max=3, interval=[30, 300, 1800])
SWEEP_BATCH = 50


def enqueue_refund(request_id: int) -> None:
    """After the commit that granted the request. A Redis failure is logged: the sweep runs it."""
    _enqueue("tasks.refund_requests.refund_requested", request_id, retry=REFUND_RETRY)


def enqueue_notice(request_id: int) -> None:
    _enqueue("tasks.refund_requests.notify_result", request_id, retry=NOTICE_RETRY)


def _enqueue(func: str, request_id: int, *, retry: Retry) -> None:
    try:
        runtime().queue.enqueue(func, request_id, retry=retry, job_timeout=120)
    except RedisError as exc:
        log.error("could not enqueue %s(%s) (%s); the sweep will run it", func, request_id, type(exc).__name__)


def channels() -> list[str]:
    return [n.channel for n in runtime().notifiers]


def refund_requested(request_id: int) -> str:
    """Refund a granted request's order and tell the shopper. Idempotent; a gateway failure
    raises (RQ retries, then the sweep)."""
    rt = runtime()
    with connection():
        request = refund_requests.get(request_id)
        if not refund_requests.recheck(request_id, rt.settings.SELF_REFUND_AUTO):
            return refund_requests.get(request_id).state  # decided before, or back in the queue
        refund = payments.refund_order(
            request.order_id, rt.gateway, actor=f"refund_request:{request_id}", reason=request.reason,
            revoke_unrevealed=rt.settings.REFUND_UNREVEALED_KEYS == "revoke")
        if refund.state != "succeeded":
            raise GatewayError(f"refund {refund.refund_no} is {refund.state}")
        changed = refund_requests.refunded(request_id, channels())
        live_orders.reopen_gates(rt.redis, [request.order_id])  # a live order's place is for sale again
    if changed:
        queues.reverse_refunded()  # take back its commission
    notify_result(request_id, raise_on_retry=False)
    return refund_requests.RequestState.REFUNDED.value


def notify_result(request_id: int, *, raise_on_retry: bool = True) -> dict[str, str]:
    """Push the result on every notify channel (at most once per channel). A transient failure
    raises, so RQ retries the job (the sweep also pushes notices left pending)."""
    with connection():
        outcome = refund_requests.push_notices(request_id, runtime().notifiers)
    if raise_on_retry and "retry" in outcome.values():
        raise NotifyError(f"refund request {request_id}: a notice will be retried", transient=True)
    if "retry" in outcome.values():
        enqueue_notice(request_id)
    return outcome


def sweep() -> dict[str, int]:
    """Periodic: finish granted requests (from the chat, or whose job was lost) and push notices
    left pending in the last day. One request's failure never stops the others."""
    done = {"refunded": 0, "failed": 0, "notices": 0}
    with connection():
        granted = refund_requests.refunding(SWEEP_BATCH)
        waiting = refund_requests.unsent_notices(utcnow() - dt.timedelta(days=1))
    for request_id in granted:
        try:
            refund_requested(request_id)
            done["refunded"] += 1
        except Exception as exc:  # noqa: BLE001 - the gateway or one order's data; logged, retried next run
            log.warning("refund request %s not refunded yet: %s", request_id, type(exc).__name__)
            done["failed"] += 1
    for request_id in waiting:
        notify_result(request_id, raise_on_retry=False)
        done["notices"] += 1
    return done
