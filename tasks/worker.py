"""The worker process: an RQ worker with the scheduler (for retries and delayed jobs), plus a
cron scheduler child process for the periodic jobs (tasks/periodic.py); the parts that keep
them alive through outages are in tasks/liveness.py.

It rides out outages instead of exiting:

- **Redis unreachable** (down, restarted, a network cut): the worker, its scheduler child and
  its cron child each log one line ("Redis unreachable at HOST:PORT/DB (...); retrying in N s")
  and retry with capped exponential backoff (`REDIS_RETRY_MAX_S`), forever. RQ's work loop
  quits on some connection errors; `run_worker` then starts it again once Redis answers.
  When Redis is back (and whenever the worker starts) the worker queues the recovery run at
  the front of its queue (tasks.maintenance.recover): every paid order is re-queued and every
  drain kicked, so what a Redis that lost its data or a killed worker left behind is delivered
  in seconds.
- **PostgreSQL unreachable**: only jobs notice; a failing job fails (the drains push their ids
  back and are retried, tasks.queues.DRAIN_RETRY) and the worker goes on with the next one.
- **The worker killed, even with kill -9**: its children end with it. Each sets
  PR_SET_PDEATHSIG (Linux: the kernel sends it SIGTERM when the worker dies) and also checks
  that its parent is still the worker (every second, everywhere), then stops cleanly: the
  scheduler gives up its lock, the cron scheduler leaves the registry. A restarted worker
  takes the scheduler over at once: the scheduler's name (the value of RQ's lock
  `rq:scheduler-lock:<queue>`) records host and worker pid, and a new worker clears a lock
  whose worker is dead on this host instead of waiting for its 61 s TTL.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from typing import Any

from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.worker_registration import register as register_worker

from qianxing.settings import Settings
from qianxing.wiring import QUEUE_NAMES, bootstrap
from tasks.liveness import (
    REDIS_DOWN,
    Backoff,
    Scheduler,
    nap,
    redis_unreachable,
    scheduler_name,
    take_over_dead_scheduler_locks,
    where,
)
from tasks.periodic import PERIODIC, run_cron

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_S = 60  # RQ's registry clean-up and scheduler take-over check (RQ: 600)


# ---- the worker ---------------------------------------------------------------------------------


class Worker(SimpleWorker):
    """SimpleWorker runs jobs in this process: RQ's forking Worker pays a fork, a fresh
    database connection and re-imports per job (~50 ms), which caps delivery near 15 orders/s.
    Jobs here are idempotent and bounded by job_timeout either way.

    On top of RQ: the scheduler child is ours (`Scheduler`), a dead worker's scheduler lock
    is taken over on start, the recovery run is queued on start and when Redis comes back,
    and a stop signal is remembered so `run_worker` knows a quit from a crash."""

    def __init__(self, *args: Any, retry_max_s: float = 5.0, recover_on_start: bool = True,
                 **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL_S)
        super().__init__(*args, **kwargs)
        self.recover_on_start = recover_on_start
        self.max_connection_wait_time = retry_max_s  # RQ's own backoff while dequeueing
        self.retry_max_s = retry_max_s
        self.stop_signalled = False
        self._redis_lost = False

    def request_stop(self, signum: Any, frame: Any) -> None:
        self.stop_signalled = True
        super().request_stop(signum, frame)

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        super().bootstrap(*args, **kwargs)
        if self.recover_on_start:
            from tasks import queues

            queues.recover()  # whatever a killed predecessor or a lost Redis left behind

    def _start_scheduler(self, burst: bool = False, logging_level: Any = "INFO",
                         date_format: Any = None, log_format: Any = None) -> None:
        extra = {k: v for k, v in (("date_format", date_format), ("log_format", log_format)) if v}
        self.scheduler = Scheduler(
            self.queues, connection=self.connection, serializer=self.serializer,
            logging_level=logging_level if logging_level is not None else self.log.level,
            name=scheduler_name(os.getpid()), **extra)
        self.scheduler.parent_pid = os.getpid()
        self.scheduler.retry_max_s = self.retry_max_s
        take_over_dead_scheduler_locks(self.connection, self.queue_names())
        self.scheduler.acquire_locks()
        if self.scheduler.acquired_locks:
            if burst:
                try:
                    self.scheduler.register_birth()
                    self.scheduler.enqueue_scheduled_jobs()
                finally:
                    self.scheduler.release_locks()
                    self.scheduler.register_death()
            else:
                self.scheduler.start()
        if not burst:
            _preload()  # after the fork: a child must never inherit an import half done

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        try:
            super().heartbeat(timeout)
        except REDIS_DOWN as exc:
            if not self._redis_lost:
                log.warning("Redis unreachable at %s (%s: %s); worker waiting for it (backoff up to %.1f s)",
                            where(self.connection), type(exc).__name__, exc, self.retry_max_s)
            self._redis_lost = True
            raise
        if self._redis_lost:
            self._redis_lost = False
            log.warning("Redis is back at %s; queueing the recovery run", where(self.connection))
            self._after_reconnect()

    def _after_reconnect(self) -> None:
        from tasks import queues

        try:
            register_worker(self)  # a Redis that restarted empty forgot the worker set
        except RedisError:
            return
        queues.recover()


# Job modules whose import is slow (aiogram: seconds of CPU). Imported in a background thread
# once the worker runs, so a chat job does not stall the deliveries queued behind it.
PRELOAD = ("tasks.chat_updates", "tasks.chat", "tasks.wechat_updates")
_preloading: list[threading.Thread] = []
PRELOAD_DELAY_S = 20.0


def _warm_answers() -> None:
    """Build the grounded answers' index (content_ai.retrieval: the embedding model and every
    fact's vector, seconds) before the first group question, not during it."""
    try:
        from content_ai import retrieval
        from models.db import db
        from tasks.context import runtime

        with db.connection_context():
            retrieval.warm(runtime().settings)
    except Exception:  # noqa: BLE001 - the first question builds it then
        log.warning("warming the answer index failed", exc_info=True)


def _preload() -> None:
    if _preloading:
        return

    def load() -> None:
        import importlib

        # Not at once: a worker restarted after a crash first delivers what piled up; the
        # import holds the GIL for seconds and would slow that catch-up (fault benchmark).
        time.sleep(PRELOAD_DELAY_S)
        for module in PRELOAD + tuple(dotted.rpartition(".")[0] for dotted, _ in PERIODIC):
            try:
                importlib.import_module(module)
            except Exception:  # noqa: BLE001 - the job itself will report it
                log.debug("preloading %s failed", module, exc_info=True)
        _warm_answers()

    thread = threading.Thread(target=load, name="preload", daemon=True)
    _preloading.append(thread)
    thread.start()


def run_worker(settings: Settings, *, burst: bool = False, with_cron: bool = True) -> None:
    """Run the worker until it is told to stop (SIGTERM, SIGINT) or, with `burst`, until the
    queue is empty. RQ's work loop ends on some errors (Redis gone in the middle of a job);
    it is started again here as soon as Redis answers, with the cron child kept alive."""
    rt = bootstrap(settings)
    cron: Any = None
    stopping = {"now": False}

    def on_signal(signum: int, frame: Any) -> None:  # only between two runs of the work loop
        stopping["now"] = True

    backoff = Backoff(settings.REDIS_RETRY_MAX_S)
    try:
        while True:
            if with_cron and not burst and (cron is None or not cron.is_alive()):
                cron = multiprocessing.get_context("fork").Process(
                    target=run_cron, args=(settings, os.getpid()), daemon=True, name="qianxing-cron")
                cron.start()
            if stopping["now"]:  # a stop signal that came between two runs of the loop
                return
            worker = Worker(list(QUEUE_NAMES), connection=rt.redis, retry_max_s=settings.REDIS_RETRY_MAX_S,
                            recover_on_start=not burst)
            failure: BaseException | None = None
            try:
                worker.work(burst=burst, with_scheduler=True, logging_level=settings.LOG_LEVEL.upper())
            except REDIS_DOWN as exc:
                failure = exc
            except Exception as exc:  # noqa: BLE001 - anything else: log it, start again
                log.exception("worker loop failed")
                failure = exc
            if burst or worker.stop_signalled or stopping["now"]:
                return
            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
            # The loop ended without a stop signal: Redis went away mid-job, or RQ hit an
            # error. Wait until Redis answers, then start the loop again.
            while not stopping["now"]:
                try:
                    rt.redis.ping()
                    break
                except REDIS_DOWN as exc:
                    wait = backoff.next()
                    redis_unreachable(rt.redis, exc, wait)
                    nap(wait, lambda: stopping["now"])
            else:
                return
            backoff.reset()
            log.warning("restarting the worker loop (it ended on %s)",
                        type(failure).__name__ if failure else "an error RQ logged above")
            if not isinstance(failure, REDIS_DOWN):
                nap(1.0, lambda: stopping["now"])  # never a hot loop on a persistent error
                if stopping["now"]:
                    return
    finally:
        if cron is not None and cron.is_alive():
            cron.terminate()
            cron.join(10)
            if cron.is_alive():
                cron.kill()


