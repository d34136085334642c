"""The service under test for `qianxing bench webhook`: the run's own scratch database, logs and
embedded Redis, the fake Telegram Bot API and WeChat API in a child process, and the web and
worker stops and restarts between phases (see qianxing/bench/webhook.py)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from qianxing.bench.harness import BENCH_DIR, Scratch, log, pg_admin, wait_healthy, with_database
from qianxing.settings import PROJECT_ROOT

TG_TOKEN = "7000000001:BenchToken_qianxing_webhook_bench"  # noqa: S105 - the fake's, loopback only
TG_USERNAME = "qianxing_bench_bot"
OA_APPID = "wxbenchoaappid0001"
OA_SECRET = "bench-oa-secret"  # noqa: S105 - the fake's, loopback only


# ---- scratch resources of this run -----------------------------------------------------------


def _pg_drop_database(url: str, name: str) -> None:
    import psycopg2

    try:
        pg_admin(url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    except psycopg2.errors.SyntaxError:  # PostgreSQL < 13
        pg_admin(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
                  f"DROP DATABASE IF EXISTS {name}")


@dataclass
class RunScratch(Scratch):
    """flash-sale's scratch resources, but all of this run's own: a PostgreSQL database
    `qianxing_bench_webhook_<pid>`, and logs and the embedded Redis under var/bench/webhook-<pid>/.
    A benchmark or smoke test running at the same time (they share `qianxing_bench` and
    var/bench/redis) can then neither drop the database nor delete the Redis data under it."""

    root: Path = field(default_factory=lambda: BENCH_DIR / f"webhook-{os.getpid()}")
    pg_name: str = field(default_factory=lambda: f"qianxing_bench_webhook_{os.getpid()}")
    _pg_owned: str | None = None  # the admin URL while our database exists

    def open_database(self) -> str:
        url = self.settings.DATABASE_URL
        if not url.startswith(("postgres://", "postgresql://")):
            return super().open_database()  # SQLite: a file named after this process
        if urlsplit(url).path.strip("/") == self.pg_name:
            raise RuntimeError(f"DATABASE_URL must not point at the scratch database {self.pg_name}")
        _pg_drop_database(url, self.pg_name)
        pg_admin(url, f"CREATE DATABASE {self.pg_name}")
        self._pg_owned = url
        self.database_url = with_database(url, self.pg_name)
        return self.database_url

    def _close_database(self) -> None:
        super()._close_database()  # closes this process's connections; pg_admin_url stays None
        owned, self._pg_owned = self._pg_owned, None
        if owned:
            try:
                _pg_drop_database(owned, self.pg_name)
            except Exception as exc:  # noqa: BLE001 - reported, never masks the real outcome
                log(f"could not drop database {self.pg_name}: {exc}")

    def open_redis(self) -> str:
        if self.settings.REDIS_URL:
            return super().open_redis()
        from qianxing.embedded_redis import EmbeddedRedis

        data_dir = self.root / "redis"
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        self.embedded = EmbeddedRedis(data_dir)
        self.redis_url = self.embedded.url
        return self.redis_url

    def log_dir(self) -> Path:
        return self.root

    def close(self) -> None:
        embedded, self.embedded = self.embedded, None  # stopped here, not in BENCH_DIR/redis
        try:
            super().close()
        finally:
            if embedded is not None:
                with contextlib.suppress(Exception):
                    embedded.stop()
            shutil.rmtree(self.root, ignore_errors=True)


# ---- fakes in a child process ----------------------------------------------------------------


def serve_fakes() -> None:
    """Child-process entry: serve the fake Telegram Bot API and WeChat API on 127.0.0.1, print
    their base URLs as one JSON line, and stop when standard input closes."""
    from tests.fakes.telegram_api import FakeTelegramAPI
    from tests.fakes.wechat_api import FakeWeChatAPI

    with FakeTelegramAPI(TG_TOKEN, username=TG_USERNAME) as telegram, FakeWeChatAPI(OA_APPID, OA_SECRET) as wechat:
        print(json.dumps({"telegram": telegram.base_url.rstrip("/"), "wechat": wechat.base_url}), flush=True)
        sys.stdin.read()


def start_fakes(scratch: RunScratch) -> dict[str, str]:
    scratch.root.mkdir(parents=True, exist_ok=True)
    log_path = scratch.root / "fakes.log"
    scratch.logs["fakes"] = log_path
    err = open(log_path, "wb")  # noqa: SIM115 - the child keeps it; closed below
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from qianxing.bench.webhook_service import serve_fakes; serve_fakes()"],
            cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            start_new_session=True, text=True,
        )
    finally:
        err.close()
    scratch.procs.append(("fakes", proc))
    assert proc.stdout is not None
    line = proc.stdout.readline()  # one line as soon as both servers listen; EOF if it died
    if not line:
        raise RuntimeError(f"the fake platform servers did not start:\n{scratch.tail('fakes')}")
    return json.loads(line)


def stop_quickly(scratch: RunScratch) -> None:
    """The worker may be in the middle of a long drain of the Telegram backlog (a warm RQ
    shutdown would wait for it): the measurements are taken, so it gets two seconds. The fakes
    stop when their standard input closes."""
    from qianxing.processes import stop_all

    for name, proc in scratch.procs:
        if name == "fakes" and proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
    workers = [proc for name, proc in scratch.procs if name == "worker"]
    stop_all(workers, timeout=2.0)
    scratch.procs[:] = [(n, p) for n, p in scratch.procs if n != "worker"]


def restart_web(scratch: RunScratch, env: dict[str, str], base_url: str) -> None:
    from qianxing.processes import stop_all

    web = [(n, p) for n, p in scratch.procs if n == "web"]
    started = time.monotonic()
    stop_all(p for _, p in web)
    scratch.procs[:] = [(n, p) for n, p in scratch.procs if n != "web"]
    scratch.start("web", ["web"], env)
    wait_healthy(scratch, base_url)
    log(f"web restarted in AES mode in {time.monotonic() - started:.1f} s")
