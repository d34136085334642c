"""`qianxing bench admin --orders N --creators C --samples S`: admin page latency over a shop
of N orders, against GET /api/v1/ping in the same run.

1. A scratch database of this run's own (`qianxing_bench_admin_<pid>` next to the PostgreSQL in
   DATABASE_URL, or a SQLite file under var/bench/admin-<pid>/), migrated with
   `models.migrations.migrate()` and filled by qianxing/bench/admin_data.py: creators in a tree,
   a catalog, N orders over 90 days with payments, refunds, events and a ledger posted the way
   the service posts it (settlement, release and reversal run through the real code). The data
   checks (balanced ledger, no dangling references, `settlement.verify`) go into the result.
2. The dashboard rollups refreshed once, when `models.rollups` exists (else a note).
3. The real `qianxing web` (gunicorn) on 127.0.0.1 over that database, with Redis (REDIS_URL, or
   an embedded server); an owner operator enrolled in TOTP is created and logs in over HTTP.
4. Each page of PAGES is fetched once to warm up, then `samples` rounds: every page once and
   /api/v1/ping once, interleaved (the ping's place and the page order rotate each round).
   Any answer other than 200 counts as an error (redirects are not followed: a 302 to the
   login page is an error).

The last line printed is one JSON object (see `run`); the command exits 1 after printing it
when a page answered anything but 200 or a data check failed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import importlib
import math
import os
import re
import resource
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from qianxing.bench import admin_checks, admin_data
from qianxing.bench.harness import BENCH_DIR, REQUEST_TIMEOUT_S, child_env, free_port, log, wait_healthy
from qianxing.bench.webhook_service import RunScratch
from qianxing.settings import Settings, load_settings

TARGET_RATIO = 25  # worst page p95 / ping p95
PING = "/api/v1/ping"
SHANGHAI = ZoneInfo("Asia/Shanghai")
OPERATOR = "bench-owner"
TOTP_STEP_S = 30


# ---- this run's resources -------------------------------------------------------------------


@dataclass
class AdminScratch(RunScratch):
    """The webhook bench's scratch resources under this run's own names: the PostgreSQL database
    `qianxing_bench_admin_<pid>`, or the SQLite file, logs and embedded Redis under
    var/bench/admin-<pid>/ (removed by `close`)."""

    root: Path = field(default_factory=lambda: BENCH_DIR / f"admin-{os.getpid()}")
    pg_name: str = field(default_factory=lambda: f"qianxing_bench_admin_{os.getpid()}")

    def open_database(self) -> str:
        if self.settings.DATABASE_URL.startswith(("postgres://", "postgresql://")):
            return super().open_database()
        if not self.settings.DATABASE_URL.startswith("sqlite"):
            raise RuntimeError("the benchmark supports SQLite and PostgreSQL DATABASE_URLs")
        self.root.mkdir(parents=True, exist_ok=True)
        self.sqlite_path = self.root / "admin.db"
        self._remove_sqlite()
        self.database_url = f"sqlite:///{self.sqlite_path}"
        return self.database_url


# ---- what is timed ----------------------------------------------------------------------------


def pages_for(targets: dict[str, Any]) -> dict[str, str]:
    """The admin pages to time, for the ids and dates picked in the built data."""
    return {
        "dashboard": "/admin/",
        "orders_first": "/admin/orders/",
        "orders_deep": f"/admin/orders/?after={targets['deep_after']}",
        "orders_by_creator": f"/admin/orders/?creator={targets['creator_code']}",
        "orders_by_date": f"/admin/orders/?from={targets['date_from']}&to={targets['date_to']}",
        "order_detail": f"/admin/orders/{targets['order_id']}",
        "team_tree": f"/admin/creators/{targets['team_creator']}/tree",
    }


def pick_targets(now: dt.datetime) -> dict[str, Any]:
    """Ids for the pages: an order id 90% deep into the newest-first list, the creator with the
    most orders, a 3-day range (Asia/Shanghai dates) in the middle of the data, a delivered
    order whose seller has two uplines (all commission kinds), the creator with the biggest
    team (direct and second level) among the top of the tree."""
    from models.db import execute

    low, high, count = execute('SELECT MIN(id), MAX(id), COUNT(*) FROM "order"').fetchone()
    deep = max(low, high - int(count * 0.9))
    seller = execute('SELECT seller_id, COUNT(*) FROM "order" WHERE seller_id IS NOT NULL '
                     "GROUP BY seller_id ORDER BY COUNT(*) DESC, seller_id LIMIT 1").fetchone()
    code = execute("SELECT code FROM creator WHERE id = %s", (seller[0],)).fetchone()[0]
    detail = execute('SELECT o.id FROM "order" o JOIN creator c ON c.id = o.seller_id '
                     "WHERE o.status = 'delivered' AND c.grandparent_id IS NOT NULL AND o.id <= %s "
                     "ORDER BY o.id DESC LIMIT 1", (low + (high - low) // 2,)).fetchone()
    if detail is None:
        detail = execute('SELECT id FROM "order" WHERE id <= %s ORDER BY id DESC LIMIT 1',
                         (low + (high - low) // 2,)).fetchone()
    team = execute("SELECT x, COUNT(*) FROM (SELECT parent_id AS x FROM creator WHERE parent_id IS NOT NULL "
                   "UNION ALL SELECT grandparent_id FROM creator WHERE grandparent_id IS NOT NULL) t "
                   "GROUP BY x ORDER BY COUNT(*) DESC, x LIMIT 1").fetchone()
    start = (now.replace(tzinfo=dt.UTC).astimezone(SHANGHAI) - dt.timedelta(days=admin_data.DAYS // 2)).date()
    return {"deep_after": deep, "creator_code": code, "creator_id": seller[0], "creator_orders": int(seller[1]),
            "date_from": start.isoformat(), "date_to": (start + dt.timedelta(days=2)).isoformat(),
            "order_id": detail[0], "team_creator": team[0] if team else 1,
            "team_size": int(team[1]) if team else 0}


def percentile_ms(values: list[float], q: float) -> float:
    """Nearest-rank percentile of seconds, in milliseconds."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] * 1000, 2)


class RssWatch:
    """Peak memory of a process tree (gunicorn: master and workers), sampled: `peak` sums the
    resident sets (shared pages counted once per process), `peak_pss` the proportional sets
    (what the tree really holds), `peak_process` is the largest single resident set."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid, self.interval = pid, interval
        self.peak = self.peak_pss = self.peak_process = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-watch", daemon=True)

    @staticmethod
    def _pss(pid: int) -> int:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _loop(self) -> None:
        import psutil

        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(self.pid)
                tree = [root, *root.children(recursive=True)]
                rss = pss = 0
                for proc in tree:
                    with contextlib.suppress(psutil.Error):
                        one = proc.memory_info().rss
                        rss += one
                        self.peak_process = max(self.peak_process, one)
                        pss += self._pss(proc.pid)
                self.peak, self.peak_pss = max(self.peak, rss), max(self.peak_pss, pss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# ---- logging in ---------------------------------------------------------------------------------

_INPUT = re.compile(r"<input\b[^>]*>", re.IGNORECASE)
_CSRF_NAME = re.compile(r"""(?:^|\s)name\s*=\s*(["']?)csrf_token\1(?=[\s/>]|$)""", re.IGNORECASE)
_VALUE = re.compile(r"""(?:^|\s)value\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)


def csrf_token(page: str) -> str | None:
    """The value of the `csrf_token` input of a form, whatever the attribute order or quotes."""
    for tag in _INPUT.findall(page):
        inner = tag[len("<input"):]
        if _CSRF_NAME.search(inner):
            found = _VALUE.search(inner)
            if found:
                return html.unescape(next(g for g in found.groups() if g is not None))
    return None


def _path(location: str) -> str:
    return urlsplit(location).path


def log_in(http: Any, base_url: str, name: str, password: str, secret: str) -> str:
    """Sign in over HTTP (password, then TOTP); "ok" or what went wrong."""
    import pyotp

    got = http.get(base_url + "/admin/login", allow_redirects=False, timeout=REQUEST_TIMEOUT_S)
    if got.status_code != 200:
        return f"unavailable: GET /admin/login answered {got.status_code}"
    token = csrf_token(got.text)
    if token is None:
        return "failed: no csrf_token on /admin/login"
    sent = http.post(base_url + "/admin/login", data={"name": name, "password": password, "csrf_token": token},
                     allow_redirects=False, timeout=REQUEST_TIMEOUT_S)
    if sent.status_code not in (302, 303):
        return f"failed: POST /admin/login answered {sent.status_code}"
    if _path(sent.headers.get("Location", "")).rstrip("/").endswith("/admin/totp"):
        for attempt in range(2):
            form = http.get(base_url + "/admin/totp", allow_redirects=False, timeout=REQUEST_TIMEOUT_S)
            token = csrf_token(form.text) if form.status_code == 200 else None
            if token is None:
                return f"failed: GET /admin/totp answered {form.status_code} without a csrf_token"
            sent = http.post(base_url + "/admin/totp", data={"code": pyotp.TOTP(secret).now(), "csrf_token": token},
                             allow_redirects=False, timeout=REQUEST_TIMEOUT_S)
            if sent.status_code in (302, 303) and not _path(sent.headers.get("Location", "")).rstrip(
                    "/").endswith(("/admin/totp", "/admin/login")):
                break
            if attempt == 0:  # a code is accepted once: wait for the next one
                wait = TOTP_STEP_S - time.time() % TOTP_STEP_S + 1
                log(f"TOTP code refused ({sent.status_code}); trying the next one in {wait:.0f} s")
                time.sleep(wait)
        else:
            return f"failed: POST /admin/totp answered {sent.status_code}"
    home = http.get(base_url + "/admin/", allow_redirects=False, timeout=REQUEST_TIMEOUT_S)
    return "ok" if home.status_code == 200 else f"failed: GET /admin/ after login answered {home.status_code}"


def create_operator(settings: Settings) -> tuple[str, str, str] | str:
    """(name, password, TOTP secret) of a new owner, or why there is none. The secret is sealed
    with the VOUCHER_KEY the web process will use to open it."""
    import pyotp

    from models import vault
    from models.db import connection
    from models.operators import create_operator as create
    from qianxing.settings import parse_voucher_keys

    vault.configure(parse_voucher_keys(settings.VOUCHER_KEY or ""), settings.VOUCHER_HASH_KEY or "")
    secret = pyotp.random_base32()
    try:
        with connection():
            _, password = create(OPERATOR, "owner", secrets.token_urlsafe(18), totp_secret=secret)
    except Exception as exc:  # noqa: BLE001 - reported in the JSON, the run fails
        return f"no operator: {type(exc).__name__}: {exc}"
    return OPERATOR, password, secret


def refresh_rollups() -> tuple[str, float | None]:
    """`models.rollups.refresh()` once, timed, when the module exists."""
    from models.db import connection

    try:
        rollups = importlib.import_module("models.rollups")
    except ModuleNotFoundError as exc:
        if exc.name != "models.rollups":
            raise
        return "skipped: models.rollups does not exist yet", None
    started = time.perf_counter()
    try:
        with connection():
            rollups.refresh()
    except Exception as exc:  # noqa: BLE001 - reported (and fails the run), the pages are still timed
        return f"failed: {type(exc).__name__}: {exc}".splitlines()[0][:300], None
    return "refreshed", round(time.perf_counter() - started, 2)


@dataclass
class Timings:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, page: str, seconds: float, status: int) -> None:
        self.latencies.setdefault(page, []).append(seconds)
        per = self.statuses.setdefault(page, {})
        per[str(status)] = per.get(str(status), 0) + 1

    def errors(self, page: str) -> int:
        return sum(n for status, n in self.statuses.get(page, {}).items() if status != "200")


def measure(http: Any, base_url: str, pages: dict[str, str], samples: int) -> Timings:
    """Warm each URL once, then `samples` rounds of every page plus one ping, interleaved."""

    def fetch(url: str) -> tuple[float, int]:
        started = time.perf_counter()
        try:
            resp = http.get(base_url + url, allow_redirects=False, timeout=REQUEST_TIMEOUT_S)
            _ = resp.content
            status = resp.status_code
        except OSError:
            status = 0
        return time.perf_counter() - started, status

    for url in [*pages.values(), PING]:
        fetch(url)
    out = Timings()
    names = list(pages)
    for i in range(samples):
        order = names[i % len(names):] + names[:i % len(names)]
        order.insert(i % (len(order) + 1), "ping")
        for name in order:
            seconds, status = fetch(PING if name == "ping" else pages[name])
            out.add(name, seconds, status)
    return out


# ---- the run ----------------------------------------------------------------------------------------


def run(settings: Settings, *, orders: int = 1_000_000, creators: int = 10_000, samples: int = 50, seed: int = 7,
        pages: dict[str, str] | None = None, log: Callable[[str], None] = log) -> dict[str, Any]:
    """Build, serve, log in, time; the result the CLI prints as its last line. `pages` replaces
    the admin pages (name -> path) for tests of the harness itself."""
    import requests

    from models.db import connection, open_database, utcnow
    from models.migrations import migrate
    from models.settlement import PayoutPolicy

    if orders < 1 or creators < 1 or samples < 1:
        raise ValueError("orders, creators and samples must be at least 1")
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    policy = PayoutPolicy(cap_bp=settings.PAYOUT_CAP_BP, upline_depth=settings.UPLINE_DEPTH,
                          refund_window_days=settings.REFUND_WINDOW_DAYS)
    scratch = AdminScratch(settings)
    notes: list[str] = []
    try:
        database_url = scratch.open_database()
        backend = "sqlite" if scratch.sqlite_path is not None else "postgresql"
        open_database(database_url)
        log(f"{backend} scratch database {database_url.rsplit('/', 1)[-1]}: "
            f"{creators} creators, {orders} orders")
        t0 = time.perf_counter()
        migrate()
        with connection():
            phases = admin_data.build(backend == "postgresql", orders=orders, creators=creators, policy=policy,
                                      ttl_s=settings.ORDER_TTL_SECONDS, seed=seed, log=log)
        build_s = time.perf_counter() - t0
        log(f"built in {build_s:.1f} s")
        t0 = time.perf_counter()
        with connection():
            checks = admin_checks.check()
            targets = pick_targets(utcnow())
        check_s = time.perf_counter() - t0
        for problem in checks["problems"][:20]:
            log(f"DATA PROBLEM: {problem}")
        log(f"checks in {check_s:.1f} s: {len(checks['problems'])} problems")
        rollup, rollup_s = refresh_rollups()
        log(f"rollups: {rollup}" + (f" in {rollup_s} s" if rollup_s is not None else ""))
        if rollup_s is None:
            notes.append(rollup)
        operator = create_operator(settings)
        if isinstance(operator, str):
            notes.append(operator)
            log(operator)

        redis_url = scratch.open_redis()
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        bench = load_settings(**{
            **settings.model_dump(),
            "QIANXING_ENV": "dev", "DATABASE_URL": database_url, "REDIS_URL": redis_url,
            "WEB_BIND": f"127.0.0.1:{port}", "PUBLIC_BASE_URL": base_url, "NOTIFY_CHANNELS": "log",
            "LOG_LEVEL": "WARNING", "PAYMENT_PROVIDER": "sandbox", "WECHATPAY_NOTIFY_URL": None,
        })
        web = scratch.start("web", ["web"], child_env(bench))
        with RssWatch(web.pid) as web_rss:
            wait_healthy(scratch, base_url)
            log(f"web up on {base_url} ({bench.WEB_WORKERS} workers x {bench.WEB_THREADS} threads)")
            urls = pages if pages is not None else pages_for(targets)
            with requests.Session() as http:
                login = log_in(http, base_url, *operator) if not isinstance(operator, str) else operator
                log(f"login: {login}")
                timings = measure(http, base_url, urls, samples)
            scratch.check_alive()
    finally:
        scratch.close()

    pings = timings.latencies.get("ping", [])
    ping_p95 = percentile_ms(pings, 95)
    p95 = {name: percentile_ms(timings.latencies.get(name, []), 95) for name in urls}
    p50 = {name: percentile_ms(timings.latencies.get(name, []), 50) for name in urls}
    worst_page = max(p95, key=lambda name: p95[name])
    errors = {name: timings.errors(name) for name in [*urls, "ping"]}
    failed = [f"{name}: {timings.statuses[name]}" for name, n in errors.items() if n]
    ok = not failed and not checks["problems"] and not rollup.startswith("failed")
    for line in failed:
        log(f"FAILED: {line} (only 200 counts)")
    if rollup.startswith("failed"):
        log(f"FAILED: rollups {rollup}")
    for problem in checks["problems"][:5]:
        log(f"FAILED: data check: {problem}")
    bench_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    result: dict[str, Any] = {
        "orders": orders,
        "creators": creators,
        "backend": backend,
        "scratch": str(scratch.sqlite_path) if scratch.sqlite_path is not None else scratch.pg_name,
        "build_s": round(build_s, 1),
        "build_phases_s": {k: round(v, 1) for k, v in phases.items()},
        "p95_ms": p95,
        "p50_ms": p50,
        "ping_p95_ms": ping_p95,
        "ping_p50_ms": percentile_ms(pings, 50),
        "worst_ratio": round(p95[worst_page] / ping_p95, 2) if ping_p95 else 0.0,
        "worst_page": worst_page,
        "target_ratio": TARGET_RATIO,
        "peak_rss_mb": {"bench": round(bench_rss, 1), "web": round(web_rss.peak / 2**20, 1),
                        "web_pss": round(web_rss.peak_pss / 2**20, 1),
                        "web_largest_process": round(web_rss.peak_process / 2**20, 1)},
        "errors": errors,
        "statuses": timings.statuses,
        "ok": ok,
        "login": login,
        "rollup": rollup,
        "rollup_s": rollup_s,
        "samples": samples,
        "pages": urls,
        "targets": targets,
        "checks": checks,
        "check_s": round(check_s, 1),
        "web_workers": bench.WEB_WORKERS,
        "web_threads": bench.WEB_THREADS,
        "loadavg_1m": round(load_before, 2),
        "notes": notes,
        "total_s": round(time.monotonic() - began, 1),
    }
    log(f"worst page {worst_page}: p95 {p95[worst_page]} ms = {result['worst_ratio']} x ping p95 {ping_p95} ms "
        f"(target {TARGET_RATIO}); {'ok' if ok else 'FAILED'} in {result['total_s']} s")
    return result
