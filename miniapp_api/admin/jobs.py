"""Admin pages: jobs (RQ queues, workers, scheduled and failed jobs, the periodic jobs).

Our own page rather than rq-dashboard: rq-dashboard 0.9.0 (the latest) does run against rq 3.0
(it needs `six`, which it does not declare, plus arrow and redis-sentinel-url), but mounted
under /admin it would bypass the admin's rules: its requeue-all is a GET, its POSTs (requeue,
delete, empty a queue) are sent by its scripts without our CSRF token (so the admin's CSRF check
refuses them, or they would have to be exempted), it has no roles (a readonly operator could
empty a queue) and writes no audit row, and it knows nothing of the cron scheduler's periodic
jobs. This page reads the same RQ structures: queues with their registries, workers (state,
current job, last heartbeat), scheduled jobs, failed jobs with the last lines of their exception
(job arguments are ids; known secrets are redacted) and the periodic jobs (tasks.periodic
PERIODIC, with the cron scheduler's last and next enqueue times). A failed job is retried
through rq's FailedJobRegistry.requeue or deleted from the registry (jobs.retry, audited).
Redis unreachable: the page says so (503), never a 500.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from flask import flash, redirect, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.cron import CronScheduler
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from miniapp_api.admin.actions import flash_duplicate, form_reason, perform
from miniapp_api.admin.base import QxView
from miniapp_api.admin.security import must
from miniapp_api.deps import runtime
from models.errors import DomainError, InvalidInput, NotFound

LIST_MAX = 100  # jobs shown per registry
EXC_LINES = 6  # the last lines of a traceback: the exception and where it was raised
EXC_CHARS = 1200
JOB_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_QUERY_SECRET = re.compile(r"((?:secret|access_token|token|key|js_code|sign|paySign|password)=)[^&\s'\"]+", re.I)


def redact(text: str) -> str:
    """Secrets out of a job's exception: query-string secrets, and every secret the process's
    logging redaction filter knows (qianxing.logging_setup installs one on the root handlers)."""
    clean = _QUERY_SECRET.sub(r"\1[redacted]", text)
    for handler in logging.getLogger().handlers:
        for f in handler.filters:
            if callable(getattr(f, "redact", None)):
                clean = f.redact(clean)
    return clean


def exception_of(job: Job) -> str:
    try:
        text = job.exc_info or ""
    except Exception:  # noqa: BLE001 - an unreadable result is shown as none
        text = ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return redact("\n".join(lines[-EXC_LINES:]))[-EXC_CHARS:]


def call_of(job: Job) -> str:
    """`func(args)` with the arguments cut short (they are ids)."""
    try:
        args = ", ".join(repr(a)[:60] for a in job.args[:6])
    except Exception:  # noqa: BLE001 - arguments that cannot be read in this process
        args = "…"
    return redact(f"{job.func_name}({args})")[:300]


def _when(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _jobs(redis: Redis, ids: list[str]) -> list[Job]:
    return [j for j in Job.fetch_many(ids, connection=redis) if j is not None]


def snapshot(redis: Redis, main_queue: str) -> dict[str, Any]:
    """Everything the page shows, read from Redis (raises RedisError when it is unreachable)."""
    queues = {q.name: q for q in Queue.all(connection=redis)}
    queues.setdefault(main_queue, Queue(main_queue, connection=redis))
    rows, scheduled, failed = [], [], []
    for name in sorted(queues):
        q = queues[name]
        sched, fail = ScheduledJobRegistry(queue=q), FailedJobRegistry(queue=q)
        started = StartedJobRegistry(queue=q).get_job_count(cleanup=False)
        rows.append({"name": name, "queued": q.count, "started": started,
                     "scheduled": sched.get_job_count(cleanup=False), "failed": fail.get_job_count(cleanup=False)})
        for job in _jobs(redis, sched.get_job_ids(0, LIST_MAX - 1, cleanup=False)):
            try:
                at = sched.get_scheduled_time(job)
            except (NoSuchJobError, TypeError):
                at = None
            scheduled.append({"id": job.id, "queue": name, "call": call_of(job), "at": _when(at)})
        for job in _jobs(redis, fail.get_job_ids(0, LIST_MAX - 1, desc=True, cleanup=False)):
            failed.append({"id": job.id, "queue": name, "call": call_of(job), "ended": _when(job.ended_at),
                           "exception": exception_of(job)})
    workers = []
    for w in sorted(Worker.all(connection=redis), key=lambda w: w.name):
        workers.append({"name": w.name, "state": w.get_state(), "job": w.get_current_job_id() or "—",
                        "heartbeat": _when(w.last_heartbeat), "queues": ", ".join(w.queue_names()),
                        "host": f"{w.hostname}:{w.pid}", "ok": w.successful_job_count, "failed": w.failed_job_count})
    return {"queues": rows, "workers": workers, "scheduled": scheduled, "failed": failed,
            "periodic": periodic(redis)}


def periodic(redis: Redis) -> list[dict[str, Any]]:
    """tasks.periodic.PERIODIC with the live cron scheduler's last and next enqueue times."""
    from tasks.periodic import PERIODIC

    seen: dict[str, Any] = {}
    for scheduler in CronScheduler.all(redis, cleanup=False):
        for cron_job in scheduler.get_jobs():
            seen[cron_job.func_name] = (cron_job, scheduler)
    rows = []
    for func, every in PERIODIC:
        found = seen.get(func)
        cron_job, scheduler = found if found else (None, None)
        rows.append({"func": func, "every": every,
                     "last": _when(cron_job.latest_enqueue_time) if cron_job else "—",
                     "next": _when(cron_job.next_enqueue_time) if cron_job and cron_job.latest_enqueue_time else "—",
                     "scheduler": scheduler.name if scheduler else None})
    return rows


def failed_job(redis: Redis, job_id: str) -> tuple[Job, FailedJobRegistry]:
    if not JOB_ID.match(job_id):
        raise InvalidInput(_("任务编号无效"), code="invalid_job")
    try:
        job = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        raise NotFound(_("任务 %(id)s 不存在", id=job_id), code="job_not_found") from None
    registry = FailedJobRegistry(job.origin, connection=redis)
    if redis.zscore(registry.key, job.id) is None:
        raise InvalidInput(_("任务 %(id)s 不在失败列表中", id=job_id), code="job_not_failed")
    return job, registry


def requeue(redis: Redis, job_id: str) -> dict[str, Any]:
    job, registry = failed_job(redis, job_id)
    try:
        registry.requeue(job)
    except InvalidJobOperation:
        raise InvalidInput(_("任务 %(id)s 不在失败列表中", id=job_id), code="job_not_failed") from None
    return {"id": job.id, "queue": job.origin, "call": call_of(job)}


def delete(redis: Redis, job_id: str) -> dict[str, Any]:
    job, registry = failed_job(redis, job_id)
    done = {"id": job.id, "queue": job.origin, "call": call_of(job)}
    registry.remove(job, delete_job=True)
    return done


class JobsView(QxView):
    permission = "jobs.view"

    @expose("/")
    def index(self) -> Any:
        rt = runtime()
        try:
            state = snapshot(rt.redis, rt.queue.name)
        except RedisError as exc:
            return self.render("qx/jobs.html", down=type(exc).__name__), 503
        return self.render("qx/jobs.html", down=None, **state)

    @expose("/failed/<job_id>/<any(retry,delete):what>", methods=["POST"])
    def failed(self, job_id: str, what: str) -> Any:
        must("jobs.retry")
        redis = runtime().redis
        run = requeue if what == "retry" else delete
        try:
            outcome = perform(f"job.{what}", f"rq_job:{job_id[:80]}", reason=form_reason(required=False),
                              run=lambda: run(redis, job_id), after=lambda done: done, atomic=False)
        except RedisError:
            flash(_("无法连接任务队列（Redis），请稍后再试"), "error")
            return redirect(url_for(".index"))
        except DomainError as exc:
            flash(exc.message, "error")
            return redirect(url_for(".index"))
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(_("任务已重新排队") if what == "retry" else _("任务已从失败列表删除"), "success")
        return redirect(url_for(".index"))


def register(admin: Admin) -> None:
    """Adds this area's views to the admin."""
    admin.add_view(JobsView(name=_l("任务队列"), endpoint="jobs", url="jobs", category=_l("系统")))
