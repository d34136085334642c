"""Settlement jobs (RQ). They take ids only and are safe to run twice, or side by side: every
write goes through `models.settlement`, which settles in batches under one lock with a unique
key per (order, beneficiary, kind), so a job killed half-way and run again produces exactly the
ledger an uninterrupted run would have.

- `settle_all` (every 5 minutes, see tasks/worker.py PERIODIC): every paid, unsettled order, then the commission of
  refunded orders is reversed, then the new orders are risk-scored (tasks/risk.py), then one
  level evaluation is queued if anything was settled;
- `settle_live(live_id)`: the orders of a live session that just ended (queued by the API);
- `release_due` (hourly): scores what is unscored, then pending commission past the refund
  window becomes available (only of scored orders while RISK_ENABLED; never of held ones);
- `reverse_refunded`: queued after each refund (and run by `settle_all` as a safety net).
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

from models import failures, reversals, settlement
from models.db import connection
from tasks import risk
from tasks.context import runtime

log = logging.getLogger(__name__)

LEVELS_JOB = "tasks.network.evaluate_levels"
# One evaluation waiting at a time: a burst of settlements queues it once. A second id lets a
# fresh one wait while the first is running (it may have read the metrics before our commit).
LEVELS_JOB_IDS = ("evaluate-levels", "evaluate-levels-next")
LEVELS_TIMEOUT_S = 1800
_WAITING = {JobStatus.CREATED, JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
_OVER = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


def settle_all() -> dict[str, int]:
    """Settle every paid, unsettled order; reverse refunded orders' commission."""
    rt = runtime()
    with connection():
        result = settlement.settle(rt.payout, batch=rt.settings.SETTLE_BATCH,
                                   retry_intervals=rt.settings.intervals("ITEM_RETRY_INTERVALS"))
        reversed_ = reversals.reverse_refunded()
    try:
        risk.score_orders()
    except Exception:  # the periodic score_orders runs again within the minute; levels still queue
        log.exception("risk scoring after settlement failed")
    if result.orders:
        log.info("settled %d orders (%d lines, %d fen) in %d batches", result.orders, result.lines,
                 result.paid_fen, result.batches)
        queue_level_evaluation()
    return {"orders": result.orders, "lines": result.lines, "paid_fen": result.paid_fen,
            "reversed": reversed_}


def settle_live(live_id: int) -> dict[str, int]:
    """Settle the paid orders of one live session (the rest wait for `settle_all`)."""
    rt = runtime()
    with connection():
        result = settlement.settle(rt.payout, live_id=int(live_id), batch=rt.settings.SETTLE_BATCH,
                                   retry_intervals=rt.settings.intervals("ITEM_RETRY_INTERVALS"))
    if result.orders:
        log.info("live %s: settled %d orders", live_id, result.orders)
        queue_level_evaluation()
    return {"orders": result.orders, "lines": result.lines, "paid_fen": result.paid_fen}


def retry_set_aside(limit: int = 100) -> dict[str, int]:
    """Periodic: settle, one at a time, the orders a settlement batch set aside whose next try
    is due (models/failures.py); each settles or is set aside again for the next interval."""
    rt = runtime()
    with connection():
        due = failures.due(failures.SETTLEMENT, limit=limit)
        for order_id in due:
            settlement.settle(rt.payout, order_ids=[order_id], retry_set_aside=True,
                              retry_intervals=rt.settings.intervals("ITEM_RETRY_INTERVALS"))
        still = failures.parked(failures.SETTLEMENT, due)
    return {"retried": len(due), "recovered": len(due) - len(still), "failed": len(still)}


def release_due() -> int:
    """Move commission past the refund window (and not on risk hold) from pending to available."""
    rt = runtime()
    risk.score_orders()
    with connection():
        released = settlement.release_due(rt.payout, batch=rt.settings.SETTLE_BATCH,
                                          require_scored=rt.settings.RISK_ENABLED)
    if released:
        log.info("released the commission of %d orders", released)
    return released


def reverse_refunded() -> int:
    """Reverse (pending) or claw back (available) the commission of refunded orders."""
    with connection():
        done = reversals.reverse_refunded()
    if done:
        log.info("reversed the commission of %d refunded orders", done)
    return done


def queue_level_evaluation() -> str | None:
    """Queue `tasks.network.evaluate_levels` unless one is already waiting to run. Returns the
    job id queued, or None (one was waiting, or Redis is unreachable: the nightly run and the
    next settlement catch up)."""
    queue = runtime().queue
    try:
        for job_id in LEVELS_JOB_IDS:
            for _ in range(3):
                try:
                    queue.enqueue(LEVELS_JOB, job_id=job_id, unique=True, job_timeout=LEVELS_TIMEOUT_S,
                                  result_ttl=600, failure_ttl=86400)
                    return job_id
                except DuplicateJobError:
                    try:
                        job = Job.fetch(job_id, connection=queue.connection)
                    except NoSuchJobError:
                        continue  # it just finished and expired: try again
                    status = job.get_status()
                    if status in _WAITING:
                        return None  # it has not started: it will see what we just settled
                    if status in _OVER:
                        job.delete()  # a finished run's record must not block a new run
                        continue
                    break  # running: queue the follow-up id instead
    except RedisError:
        log.exception("could not queue a level evaluation; the nightly run will catch up")
    return None
