"""The periodic jobs and the cron child of the worker that queues them on time."""

from __future__ import annotations

import logging
import os
import signal
import socket
from typing import Any

from redis import Redis
from rq.cron import CronScheduler

from qianxing.settings import Settings
from qianxing.wiring import bootstrap
from tasks.liveness import REDIS_DOWN, Backoff, die_with_parent, nap, orphaned, redis_unreachable, where

log = logging.getLogger(__name__)

PERIODIC = [
    ("tasks.maintenance.expire_unpaid_orders", 30),
    ("tasks.maintenance.reconcile_payments", 120),
    ("tasks.maintenance.sweep_undelivered", 60),
    ("tasks.delivery.retry_set_aside", 60),  # orders a delivery batch set aside, retried alone
    ("tasks.network.award_traffic_rewards", 3600),
    ("tasks.network.evaluate_levels", 86400),  # also enqueued after each settlement
    ("tasks.withdrawals.pay_due_withdrawals", 600),
    ("tasks.settlement.settle_all", 300),
    ("tasks.settlement.release_due", 3600),
    ("tasks.settlement.retry_set_aside", 60),  # orders a settlement batch set aside, retried alone
    ("tasks.chat.drain_all", 60),  # outbound messages whose drain job was lost
    ("tasks.chat_updates.process_updates", 60),  # stored updates whose drain job was lost
    ("tasks.wechat_updates.recover_stale", 60),  # WeChat messages a crash left unanswered
    ("tasks.chat.prune_posters", 86400),  # images unused for POSTER_MAX_AGE_DAYS
    ("tasks.rollups.refresh_rollups", 60),  # the dashboard's figures (models/rollups.py)
    ("tasks.broadcasts.resume_unfinished", 300),  # admin broadcasts whose fan-out job was lost
    ("tasks.reminders.plan_reminders", 5),  # live reservation reminders and notices (issue 13, B)
    ("tasks.live.close_abandoned_sessions", 60),  # scheduled sessions that never started
    ("tasks.lottery.run_draws", 10),  # reservation lotteries due at T-0, prizes, winners' notices (issue 13, C)
    ("tasks.live_dashboard.sample_live", 15),  # live dashboard samples for the hint rules (issue 13, F)
    ("tasks.live_dashboard.reconcile_ended", 60),  # ended sessions' final figures (issue 13, F)
    ("tasks.wakeup.wake_dormant", 86400),  # dormant buyers: the wakeup coupon and a push (issue 14, A)
    ("tasks.coupons.expire_grants", 3600),  # wallet grants past their end -> expired (issue 14)
    ("tasks.refund_requests.sweep", 60),  # granted refund requests (from the chat, or a lost job) (issue 14, S)
    ("tasks.groupbuy.close_expired", 30),  # expired group-buy teams closed, their members refunded (issue 14, G)
    ("tasks.groupbuy.retry_refunds", 30),  # group-buy member refunds WeChat Pay refused, on their backoff (issue 14, G)
    ("tasks.risk.score_orders", 60),  # settled, unscored paid orders (issue 15, scoring)
    ("tasks.risk.score_creators", 3600),  # creator rules (refund abuse), one hit per creator and day (issue 15)
    ("tasks.risk_signals.prune_signals", 86400),  # risk signals and raw IPs past RISK_RETENTION_DAYS (issue 15)
    ("tasks.risk_digest.send_digest", 900),  # operators' daily risk digest, from RISK_DIGEST_HOUR (issue 15)
    ("tasks.ai_calls.prune_calls", 86400),  # model call log rows past AI_CALL_KEEP_DAYS (issue 16)
]
# Periodic jobs that may run longer than RQ's default timeout (a settlement backlog).
JOB_TIMEOUTS = {"tasks.settlement.settle_all": 3600, "tasks.settlement.release_due": 3600,
                "tasks.risk.score_orders": 3600,  # a backlog after RISK_ENABLED is switched on
                "tasks.rollups.refresh_rollups": 1800,  # the first run after a deploy reads the whole history
                "tasks.wakeup.wake_dormant": 3600,  # every dormant buyer of a period, in chunks
                "tasks.risk_signals.prune_signals": 3600}  # the first run may blank years of order IPs


def run_cron(settings: Settings, parent_pid: int) -> None:
    """The periodic jobs (PERIODIC), in a child of the worker. RQ's CronScheduler.start() dies
    on the first Redis error and never looks at its parent, so its loop is run here instead:
    Redis errors wait with backoff, and the child stops when the worker is gone."""
    stop = {"now": False, "ready": False}

    def on_signal(signum: int, frame: Any) -> None:
        if not stop["ready"]:  # still importing the jobs (seconds): nothing to clean up yet
            os._exit(0)
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    die_with_parent(parent_pid)
    rt = bootstrap(settings)
    cron = CronScheduler(connection=rt.redis, name=f"qianxing-cron:{socket.gethostname()}:{os.getpid()}")
    for func, every in PERIODIC:
        try:
            job = resolve(func)
        except (ImportError, AttributeError):  # one broken entry must not stop the others
            log.exception("periodic job %s cannot be imported; not scheduled", func)
            continue
        cron.register(job, queue_name="default", interval=every, job_timeout=JOB_TIMEOUTS.get(func))
    stop["ready"] = True
    backoff, born, watch = Backoff(settings.REDIS_RETRY_MAX_S), False, RedisWatch(rt.redis)
    while not stop["now"] and not orphaned(parent_pid):
        try:
            if watch.came_back():
                from tasks import queues

                log.warning("Redis at %s is back (or restarted); queueing the recovery run", where(rt.redis))
                queues.recover()
            if not born:
                cron.register_birth()
                born = True
            if cron.enqueue_jobs():
                cron.save()
            cron.heartbeat()
            backoff.reset()
            wait = min(cron.calculate_sleep_interval(), 1.0)  # 1 s: notice the parent's death
        except REDIS_DOWN as exc:
            watch.lost = True
            wait = backoff.next()
            redis_unreachable(rt.redis, exc, wait, "cron")
        except Exception:  # noqa: BLE001 - a bad job definition must not end the periodic jobs
            wait = backoff.next()
            log.exception("cron scheduler failed; retrying in %.1f s", wait)
        nap(wait, lambda: stop["now"])
    if born:
        try:
            cron.register_death()
        except Exception:  # noqa: BLE001 - Redis gone, or restarted and forgot the registry
            log.debug("cron scheduler could not register its death", exc_info=True)


class RedisWatch:
    """Tells when Redis came back after an outage, or restarted between two looks (a new
    `run_id`: a Redis without persistence lost every list, flag and queued job)."""

    def __init__(self, redis: Redis) -> None:
        self.redis, self.run_id, self.lost = redis, None, False

    def came_back(self) -> bool:
        run_id = self.redis.info("server").get("run_id")
        back = self.lost or (self.run_id is not None and run_id != self.run_id)
        self.run_id, self.lost = run_id, False
        return back


def resolve(dotted: str):  # noqa: ANN202
    import importlib

    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)
