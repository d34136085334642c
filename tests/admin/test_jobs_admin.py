"""The jobs page through the real HTTP interface, on the real RQ structures in the test Redis:
queues, workers, scheduled and failed jobs (a job of this module that really fails), retry
through the failed registry and delete, the periodic jobs, roles, and Redis unreachable."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from redis import Redis
from rq import SimpleWorker
from rq.cron import CronScheduler
from rq.job import Job
from rq.registry import FailedJobRegistry

from miniapp_api.deps import EXTENSION
from models.audit import AuditEntry
from models.db import db
from qianxing.settings import Settings
from tasks.context import runtime
from tasks.periodic import resolve

PAGE = "/admin/jobs/"
BROKEN = "qianxing:test:jobs:broken"
DONE = "qianxing:test:jobs:done"


def flaky_import(batch_id: int) -> str:
    """A job that fails while the flag BROKEN is set (as a job does while what it needs is
    missing), and records its success otherwise."""
    redis = runtime().redis
    if redis.get(BROKEN):
        raise RuntimeError(f"batch {batch_id}: the export service answered 503 access_token=SECRET123456")
    redis.rpush(DONE, batch_id)
    return "ok"


@pytest.fixture
def failed_job(rt, run_jobs) -> Job:  # noqa: ANN001
    """A job of this module that failed for real in a worker."""
    rt.redis.set(BROKEN, 1)
    job = rt.queue.enqueue(flaky_import, 42, job_id="flaky-import-42")
    run_jobs()
    assert job.id in FailedJobRegistry(queue=rt.queue).get_job_ids()
    return job


def test_the_page_lists_queues_workers_scheduled_failed_and_periodic_jobs(admin, rt, failed_job) -> None:  # noqa: ANN001
    """Given a failed job, a scheduled job and a running worker, when a readonly operator opens
    the jobs page, then it shows the queue with its counts, the worker, the scheduled job, the
    failed job with the last lines of its exception (secrets redacted) and the periodic jobs,
    without retry buttons."""
    rt.queue.enqueue_in(dt.timedelta(hours=1), "tasks.chat.drain_all", job_id="later-drain")
    worker = SimpleWorker([rt.queue], connection=rt.redis, name="qx-test-worker")
    worker.register_birth()
    cron = CronScheduler(connection=rt.redis, name="qx-test-cron")  # as tasks.periodic.run_cron runs it
    cron.register(resolve("tasks.chat.prune_posters"), queue_name="default", interval=86400)
    cron.register_birth()
    cron.enqueue_jobs()
    cron.save()
    try:
        page = admin("readonly").get(PAGE)
    finally:
        worker.register_death()
        cron.register_death()
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    queue_row = re.search(r'<tr data-queue="default">(.*?)</tr>', text, re.S).group(1)
    assert '<td class="failed">1</td>' in queue_row
    assert "qx-test-worker" in text
    assert "later-drain" in text and "tasks.chat.drain_all()" in text
    assert 'data-job="flaky-import-42"' in text
    assert "flaky_import(42)" in text and "RuntimeError: batch 42: the export service answered 503" in text
    assert "SECRET123456" not in text
    prune = re.search(r"tasks\.chat\.prune_posters</td><td>86400</td><td>([^<]+)</td><td>([^<]+)</td>", text)
    assert prune and prune.group(1) != "—" and prune.group(2) != "—"  # the live scheduler's last and next
    assert re.search(r"tasks\.chat\.drain_all</td><td>60</td><td>—</td>", text)  # not registered here
    assert "/failed/flaky-import-42/retry" not in text  # readonly: no jobs.retry


def test_a_failed_job_is_retried_and_then_succeeds(admin, rt, run_jobs, failed_job) -> None:  # noqa: ANN001
    """Given a failed job whose cause is fixed, when an ops operator retries it from the page,
    then it leaves the failed registry, runs and succeeds; the retry is audited."""
    rt.redis.delete(BROKEN)
    ops = admin("ops")
    assert "/failed/flaky-import-42/retry" in ops.get(PAGE).get_data(as_text=True)
    answer = ops.post(f"{PAGE}failed/flaky-import-42/retry", {"reason": "导出服务已恢复"}, page=PAGE)
    assert answer.status_code == 302
    assert "flaky-import-42" not in FailedJobRegistry(queue=rt.queue).get_job_ids()
    run_jobs()
    assert rt.redis.lrange(DONE, 0, -1) == [b"42"]
    assert 'data-job="flaky-import-42"' not in ops.get(PAGE).get_data(as_text=True)
    with db.connection_context():
        (entry,) = AuditEntry.select().where(AuditEntry.action == "job.retry")
    assert entry.object == "rq_job:flaky-import-42" and entry.reason == "导出服务已恢复"
    assert entry.after["call"] == "tests.admin.test_jobs_admin.flaky_import(42)"


def test_a_failed_job_is_deleted_from_the_registry(admin, rt, failed_job) -> None:  # noqa: ANN001
    ops = admin("ops")
    assert ops.post(f"{PAGE}failed/flaky-import-42/delete", {}, page=PAGE).status_code == 302
    assert FailedJobRegistry(queue=rt.queue).get_job_ids() == []
    assert not Job.exists("flaky-import-42", connection=rt.redis)
    # and retrying a job that is no longer there is a message, not an error
    answer = ops.post(f"{PAGE}failed/flaky-import-42/retry", {}, page=PAGE, follow_redirects=True)
    assert answer.status_code == 200 and "不存在" in answer.get_data(as_text=True)


@pytest.mark.parametrize("role", ["readonly", "finance", "support"])
def test_roles_without_jobs_retry_are_refused_and_the_job_stays_failed(admin, rt, failed_job, role: str) -> None:  # noqa: ANN001
    who = admin(role)
    assert who.get(PAGE).status_code == (403 if role == "support" else 200)
    for what in ("retry", "delete"):
        assert who.post(f"{PAGE}failed/flaky-import-42/{what}", {}).status_code == 403
    assert FailedJobRegistry(queue=rt.queue).get_job_ids() == ["flaky-import-42"]
    assert rt.queue.count == 0


def test_redis_unreachable_is_a_message_not_a_500(admin, app, monkeypatch, settings: Settings) -> None:  # noqa: ANN001
    """Given Redis stops answering (a port nobody listens on), when the jobs page is opened or
    a retry posted, then the page says the queue is unreachable (503), never a 500."""
    ops = admin("ops")
    token_page = ops.get(PAGE).get_data(as_text=True)
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, socket_timeout=0.5)
    rt = app.extensions[EXTENSION]
    monkeypatch.setattr(rt, "redis", dead)
    monkeypatch.setattr(rt.queue, "connection", dead)
    answer = ops.get(PAGE)
    assert answer.status_code == 503
    assert 'id="redis-down"' in answer.get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', token_page).group(1)
    retried = ops.client.post(f"{PAGE}failed/whatever/retry", data={"csrf_token": token, "action_token": "a" * 24},
                              follow_redirects=True)
    assert retried.status_code == 503 and 'id="redis-down"' in retried.get_data(as_text=True)
