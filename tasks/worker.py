"""The worker process: an RQ worker with the scheduler (for retries and delayed jobs), plus a
cron scheduler child process for the periodic jobs."""

from __future__ import annotations

import multiprocessing

from rq import SimpleWorker
from rq.cron import CronScheduler

from qianxing.settings import Settings
from qianxing.wiring import QUEUE_NAMES, bootstrap

PERIODIC = [
    ("tasks.maintenance.expire_unpaid_orders", 30),
    ("tasks.maintenance.reconcile_payments", 120),
    ("tasks.maintenance.sweep_undelivered", 60),
    ("tasks.network.award_traffic_rewards", 3600),
    ("tasks.network.evaluate_levels", 86400),  # also enqueued after each settlement
    ("tasks.withdrawals.pay_due_withdrawals", 600),
    ("tasks.settlement.settle_all", 300),
    ("tasks.settlement.release_due", 3600),
    ("tasks.chat.drain_all", 60),  # outbound messages whose drain job was lost
    ("tasks.chat_updates.process_updates", 60),  # stored updates whose drain job was lost
    ("tasks.wechat_updates.recover_stale", 60),  # WeChat messages a crash left unanswered
    ("tasks.chat.prune_posters", 86400),  # images unused for POSTER_MAX_AGE_DAYS
]
# Periodic jobs that may run longer than RQ's default timeout (a settlement backlog).
JOB_TIMEOUTS = {"tasks.settlement.settle_all": 3600, "tasks.settlement.release_due": 3600}


def _run_cron(settings: Settings) -> None:
    rt = bootstrap(settings)
    cron = CronScheduler(connection=rt.redis, name="qianxing-cron")
    for func, every in PERIODIC:
        cron.register(_resolve(func), queue_name="default", interval=every,
                      job_timeout=JOB_TIMEOUTS.get(func))
    cron.start()


def _resolve(dotted: str):  # noqa: ANN202
    import importlib

    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def run_worker(settings: Settings, *, burst: bool = False, with_cron: bool = True) -> None:
    rt = bootstrap(settings)
    cron = None
    if with_cron and not burst:
        cron = multiprocessing.get_context("fork").Process(target=_run_cron, args=(settings,),
                                                            daemon=True)
        cron.start()
    try:
        # SimpleWorker runs jobs in this process: RQ's forking Worker pays a fork, a fresh
        # database connection and re-imports per job (~50 ms), which caps delivery near
        # 15 orders/s. Jobs here are idempotent and bounded by job_timeout either way.
        SimpleWorker(list(QUEUE_NAMES), connection=rt.redis).work(
            burst=burst, with_scheduler=True, logging_level=settings.LOG_LEVEL.upper())
    finally:
        if cron is not None:
            cron.terminate()
