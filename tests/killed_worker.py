"""A real RQ worker SIGKILLed in the middle of a batched job (the at-least-once tests of the
settlement and risk jobs): started as `qianxing worker --burst`, killed once enough work has
committed and, on PostgreSQL, while a batch's transaction is open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.db import db
from qianxing.processes import stop_all
from tests.conftest import settings_is_postgres

ROOT = Path(__file__).resolve().parents[1]


def worker_in_transaction() -> bool:
    """PostgreSQL: another session (the worker's) has a batch open right now, so the kill lands
    inside a transaction. SQLite cannot tell; there nearly all of a batch's time is inside one."""
    with db.connection_context():
        if not settings_is_postgres():
            return True
        return bool(db.execute_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL").fetchone()[0])


def kill_worker_mid_job(rt: Any, settings: Any, job: str, env: dict[str, str], *, done: Callable[[], int],
                        enough: int, deadline_s: float) -> None:
    """Queue `job`, run a burst worker with the test's settings plus `env`, and SIGKILL it (its
    whole process group) once `done()` reaches `enough` inside a batch. Fails the test if the
    worker exits first or nothing is done by the deadline."""
    full_env = {**os.environ, **{k: str(v) for k, v in settings.model_dump().items() if v is not None},
                "LOG_LEVEL": "WARNING", **env}
    rt.queue.enqueue(job, job_timeout=600)
    proc = subprocess.Popen([sys.executable, "-m", "qianxing.cli", "worker", "--burst", "--no-cron"],
                            cwd=ROOT, env=full_env, start_new_session=True)
    try:
        deadline = time.monotonic() + deadline_s
        while done() < enough or not worker_in_transaction():
            assert proc.poll() is None, "the worker exited before it could be killed"
            assert time.monotonic() < deadline, "the worker never got far enough"
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        stop_all([proc])
    assert proc.returncode == -signal.SIGKILL
