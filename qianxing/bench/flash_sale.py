"""`qianxing bench flash-sale`: concurrent buyers create and pay orders against a pool of keys.

The benchmark runs the real service on loopback: a scratch database (a temp SQLite file, or a
`qianxing_bench` database created next to the PostgreSQL in DATABASE_URL), Redis (REDIS_URL, or
an embedded redis-server of its own), `qianxing web` (gunicorn) and `qianxing worker`.

Phase 1 (baseline): `clients` connections loop GET /api/v1/ping for `duration` seconds; the
same again after phase 2, and `baseline_per_s` is the mean rate over both windows.
Phase 2 (flash sale): each client is a buyer that loops "create an order, then pay it with the
signed notification WeChat Pay would send", until `duration` is over or the pool is sold out.
Afterwards the worker must deliver every paid order, and the database is checked: no key sold
twice, no more orders paid than keys in the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
from wechatpy.pay import calculate_signature, dict_to_xml

from qianxing.bench.scratch import pg_admin as _pg_admin
from qianxing.bench.scratch import with_database as _with_database
from qianxing.processes import stop_all
from qianxing.settings import VAR_DIR, Settings, load_settings

BENCH_DIR = VAR_DIR / "bench"
BENCH_DATABASE = "qianxing_bench"
BENCH_REDIS_DB = 14
SKU_CODE = "BENCH-FLASH-1"
PRICE_FEN = 990
DELIVERY_WAIT_S = 60.0  # at least this long; longer while the run stays under TIME_BUDGET_S
TIME_BUDGET_S = 215.0  # the whole run, teardown included, stays under four minutes
STARTUP_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---- scratch resources --------------------------------------------------------------------


def migrate_child(env: dict[str, str]) -> None:
    """`qianxing migrate` in a child process with the benchmark's environment."""
    migrated = subprocess.run([sys.executable, "-m", "qianxing.cli", "migrate"], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    if migrated.returncode:
        raise RuntimeError(f"migrate failed:\n{migrated.stdout}{migrated.stderr}")


def _pg_drop(url: str) -> None:
    import psycopg2

    try:
        _pg_admin(url, f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
    except psycopg2.errors.SyntaxError:  # PostgreSQL < 13
        _pg_admin(
            url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{BENCH_DATABASE}' AND pid <> pg_backend_pid()",
            f"DROP DATABASE IF EXISTS {BENCH_DATABASE}",
        )


def _redis_bench_url(url: str) -> str:
    """The given Redis URL, on database 14 when it names no database."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query))
        if "db" in query:
            return url
        query["db"] = str(BENCH_REDIS_DB)
        return urlunsplit(parts._replace(query=urlencode(query)))
    if parts.path.strip("/"):
        return url
    return urlunsplit(parts._replace(path=f"/{BENCH_REDIS_DB}"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Scratch:
    """Everything the run creates, so `close()` can take it all down again."""

    settings: Settings
    database_url: str = ""
    redis_url: str = ""
    sqlite_path: Path | None = None
    pg_admin_url: str | None = None
    embedded: Any = None
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    logs: dict[str, Path] = field(default_factory=dict)

    def open_database(self) -> str:
        url = self.settings.DATABASE_URL
        if url.startswith(("postgres://", "postgresql://")):
            if urlsplit(url).path.strip("/") == BENCH_DATABASE:
                raise RuntimeError(f"DATABASE_URL must not point at the scratch database {BENCH_DATABASE}")
            self.pg_admin_url = url
            _pg_drop(url)
            _pg_admin(url, f"CREATE DATABASE {BENCH_DATABASE}")
            self.database_url = _with_database(url, BENCH_DATABASE)
        elif url.startswith("sqlite"):
            self.sqlite_path = BENCH_DIR / f"flash-sale-{os.getpid()}.db"
            self._remove_sqlite()
            self.database_url = f"sqlite:///{self.sqlite_path}"
        else:
            raise RuntimeError("the benchmark supports SQLite and PostgreSQL DATABASE_URLs")
        return self.database_url

    def open_redis(self) -> str:
        if self.settings.REDIS_URL:
            self.redis_url = _redis_bench_url(self.settings.REDIS_URL)
        else:
            # An embedded server of our own: the development one (var/redis) keeps its queues.
            from qianxing.embedded_redis import EmbeddedRedis

            data_dir = BENCH_DIR / "redis"
            shutil.rmtree(data_dir, ignore_errors=True)
            self.embedded = EmbeddedRedis(data_dir)
            self.redis_url = self.embedded.url
        from redis import Redis

        client = Redis.from_url(self.redis_url)
        try:
            client.flushdb()
        finally:
            client.close()
        return self.redis_url

    def log_dir(self) -> Path:
        return BENCH_DIR

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        self.log_dir().mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir() / f"{name}.log"
        self.logs[name] = log_path
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "qianxing.cli", *args], env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.procs.append((name, proc))
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.logs.get(name)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop_processes(self) -> None:
        names = {proc.pid: name for name, proc in self.procs}
        for proc in stop_all(proc for _, proc in self.procs):
            _log(f"{names[proc.pid]} did not stop in time; killed its process group")
        self.procs.clear()

    def close(self) -> None:
        try:
            self.stop_processes()
        finally:
            self._close_database()
            if self.embedded is not None:
                with contextlib.suppress(Exception):
                    self.embedded.stop()
                shutil.rmtree(BENCH_DIR / "redis", ignore_errors=True)

    def _close_database(self) -> None:
        from models.db import db
        from qianxing import wiring

        with contextlib.suppress(Exception):
            if db.obj is not None:
                close_all = getattr(db.obj, "close_all", None)
                if close_all is not None:
                    close_all()
                elif not db.is_closed():
                    db.close()
        wiring.reset()
        if self.pg_admin_url:
            try:
                _pg_drop(self.pg_admin_url)
            except Exception as exc:  # noqa: BLE001 - reported, never masks the real outcome
                _log(f"could not drop database {BENCH_DATABASE}: {exc}")
        if self.sqlite_path is not None:
            self._remove_sqlite()

    def _remove_sqlite(self) -> None:
        assert self.sqlite_path is not None
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.sqlite_path}{suffix}").unlink(missing_ok=True)


def child_env(settings: Settings) -> dict[str, str]:
    """The environment for `qianxing migrate|web|worker`: every setting spelled out, so the
    children see exactly the bench configuration whatever .env or the caller's env holds."""
    fields = set(Settings.model_fields)
    env = {k: v for k, v in os.environ.items() if k not in fields}
    for name in fields:
        value = getattr(settings, name)
        if value is not None:
            env[name] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_healthy(scratch: Scratch, base_url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        scratch.check_alive()
        try:
            with urllib.request.urlopen(base_url + "/healthz", timeout=2) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the web server did not become healthy:\n{scratch.tail('web')}")
        time.sleep(0.2)


def seed(keys: int) -> int:
    from models import catalog, vault
    from models.catalog import Kind
    from models.db import connection, db

    with connection():
        with db.atomic():
            product = catalog.create_product("Bench flash sale", "qianxing bench flash-sale")
            sku = catalog.create_sku(product, code=SKU_CODE, name="Bench card key", kind=Kind.CARD_KEY,
                                     supply_price_fen=500, retail_price_fen=PRICE_FEN)
        rows = [(i + 1, f"BENCH-{i:06d}-{secrets.token_hex(6).upper()}") for i in range(keys)]
        report = vault.import_keys(sku, rows)
    return report.imported


# ---- load generation ----------------------------------------------------------------------


@dataclass
class _Stats:
    requests: int = 0  # answered (any status below 500)
    creates: int = 0
    notifies: int = 0
    paid: int = 0  # notifications answered SUCCESS
    refused: int = 0  # 409 out_of_stock
    errors: int = 0  # 5xx, connection errors, timeouts
    unexpected: int = 0  # any other answer (4xx other than sold out, notify FAIL)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    def p99_ms(self) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return round(ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] * 1000, 2)

    def per_s(self) -> float:
        """Answered requests per second."""
        return self.requests / self.elapsed if self.elapsed else 0.0

    def __add__(self, other: _Stats) -> _Stats:
        """Two measurement windows as one (their counts, latencies and time added up)."""
        return _Stats(self.requests + other.requests, self.creates + other.creates,
                      self.notifies + other.notifies, self.paid + other.paid,
                      self.refused + other.refused, self.errors + other.errors,
                      self.unexpected + other.unexpected, self.latencies + other.latencies,
                      self.elapsed + other.elapsed)


def _session(clients: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients, ttl_dns_cache=None)
    return aiohttp.ClientSession(connector=connector,
                                 timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))


async def _send(stats: _Stats, http: aiohttp.ClientSession, method: str, url: str,
                **kwargs: Any) -> tuple[int, bytes] | None:
    """One timed request; None (and an error counted) when no HTTP answer came back."""
    started = time.perf_counter()
    try:
        async with http.request(method, url, **kwargs) as resp:
            body = await resp.read()
            status = resp.status
    except (TimeoutError, aiohttp.ClientError):
        stats.errors += 1
        await asyncio.sleep(0.05)
        return None
    stats.latencies.append(time.perf_counter() - started)
    if status >= 500:
        stats.errors += 1
        return None
    stats.requests += 1
    return status, body


async def _baseline(base_url: str, clients: int, duration: float) -> _Stats:
    stats = _Stats()
    url = base_url + "/api/v1/ping"
    async with _session(clients) as http:
        warm = _Stats()
        await asyncio.gather(*(_send(warm, http, "GET", url) for _ in range(clients * 4)))
        started = time.perf_counter()
        deadline = started + duration

        async def client() -> None:
            while time.perf_counter() < deadline:
                answer = await _send(stats, http, "GET", url)
                if answer is not None and answer[0] != 200:
                    stats.unexpected += 1

        await asyncio.gather(*(client() for _ in range(clients)))
        stats.elapsed = time.perf_counter() - started
    return stats


def _baseline_window(base_url: str, clients: int, duration: float) -> _Stats:
    stats = asyncio.run(_baseline(base_url, clients, duration))
    _log(f"baseline {stats.per_s():.0f} req/s, p99 {stats.p99_ms()} ms, errors {stats.errors}")
    return stats


def notifier(settings: Settings) -> Callable[[str, int, str], bytes]:
    appid, mch_id, api_key = settings.WECHAT_APPID, settings.WECHATPAY_MCH_ID, settings.WECHATPAY_API_KEY or ""

    def notify_xml(order_no: str, amount_fen: int, openid: str) -> bytes:
        """The signed v2 payment-result notification WeChat Pay posts to notify_url."""
        data = {
            "appid": appid, "mch_id": mch_id, "nonce_str": secrets.token_hex(16),
            "result_code": "SUCCESS", "return_code": "SUCCESS", "openid": openid,
            "is_subscribe": "N", "trade_type": "JSAPI", "bank_type": "OTHERS",
            "total_fee": str(amount_fen), "cash_fee": str(amount_fen), "fee_type": "CNY",
            "out_trade_no": order_no, "transaction_id": "bench" + order_no,
            "time_end": time.strftime("%Y%m%d%H%M%S", time.gmtime()),
        }
        return dict_to_xml(data, calculate_signature(data, api_key)).encode()

    return notify_xml


async def _flash_sale(base_url: str, clients: int, duration: float,
                      notify_xml: Callable[[str, int, str], bytes]) -> _Stats:
    stats = _Stats()
    run_id = secrets.token_hex(4)
    orders_url, notify_url = base_url + "/api/v1/orders", base_url + "/webhooks/wechatpay/notify"
    async with _session(clients) as http:

        async def login(i: int) -> str:
            async with http.post(base_url + "/api/v1/auth/dev-login",
                                 json={"openid": f"bench-{i}"}) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"dev-login answered {resp.status}: {await resp.text()}")
                return (await resp.json())["token"]

        tokens = await asyncio.gather(*(login(i) for i in range(clients)))
        started = time.perf_counter()
        deadline = started + duration

        async def buyer(i: int, token: str) -> None:
            auth = {"Authorization": f"Bearer {token}"}
            openid = f"bench-{i}"
            n = 0
            while time.perf_counter() < deadline:
                n += 1
                answer = await _send(stats, http, "POST", orders_url,
                                     json={"sku": SKU_CODE, "quantity": 1},
                                     headers={**auth, "Idempotency-Key": f"bench-{run_id}-{i}-{n}"})
                if answer is None:
                    continue
                stats.creates += 1
                status, body = answer
                if status == 409 and b"out_of_stock" in body:
                    stats.refused += 1
                    return  # sold out: this buyer is done
                if status != 201:
                    stats.unexpected += 1
                    continue
                order = _json(body)
                # Pay what was created, even past the deadline: no order is left pending.
                paid = await _send(stats, http, "POST", notify_url,
                                   data=notify_xml(order["no"], int(order["amount_fen"]), openid),
                                   headers={"Content-Type": "text/xml"})
                if paid is None:
                    continue
                stats.notifies += 1
                if paid[0] == 200 and b"SUCCESS" in paid[1]:
                    stats.paid += 1
                else:
                    stats.unexpected += 1

        await asyncio.gather(*(buyer(i, t) for i, t in enumerate(tokens)))
        stats.elapsed = time.perf_counter() - started
    return stats


def _json(body: bytes) -> dict[str, Any]:
    import json

    return json.loads(body)


# ---- verification -------------------------------------------------------------------------


def _wait_delivered(scratch: Scratch, timeout: float) -> float:
    from models.db import connection
    from models.orders import Order, Status

    started = time.monotonic()
    while True:
        with connection():
            waiting = Order.select().where(Order.status == Status.PAID).count()
        if not waiting:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            _log(f"{waiting} paid orders still undelivered after {timeout:.0f} s")
            return time.monotonic() - started
        scratch.check_alive()
        time.sleep(0.5)


def verify(pool: int) -> dict[str, int]:
    import peewee as pw

    from models.catalog import Sku
    from models.db import connection
    from models.delivery import Voucher
    from models.inventory import OrderItem
    from models.orders import Order, Status
    from models.vault import CardKey

    with connection():
        sku = Sku.get(Sku.code == SKU_CODE)
        keys_in_pool = CardKey.select().where(CardKey.sku == sku).count()
        paid = Order.select().where(Order.status.in_([Status.PAID, Status.DELIVERED])).count()
        delivered = Order.select().where(Order.status == Status.DELIVERED).count()
        pending = Order.select().where(Order.status == Status.PENDING).count()
        held = OrderItem.select(pw.fn.COALESCE(pw.fn.SUM(OrderItem.quantity), 0)).where(
            OrderItem.sku == sku).scalar()
        # Orders holding stock whose claimed keys do not add up: a key claimed by two orders
        # leaves the first one short (card_key.order_id was overwritten).
        claimed = (CardKey.select(CardKey.order_id, pw.fn.COUNT(CardKey.id).alias("n"))
                   .where(CardKey.order_id.is_null(False)).group_by(CardKey.order_id))
        claimed_by = {row.order_id: row.n for row in claimed}
        short = sum(1 for item in OrderItem.select() if claimed_by.get(item.order_id, 0) != item.quantity)
        # Vouchers holding a key that belongs to another order.
        foreign = (Voucher.select().join(CardKey)
                   .where((CardKey.order_id.is_null() | (CardKey.order_id != Voucher.order))
                          & Voucher.revoked_at.is_null()).count())
        # Live vouchers only: a refunded (revoked) voucher keeps its key while the key is sold again.
        live = Voucher.card_key.is_null(False) & Voucher.revoked_at.is_null()
        with_key = Voucher.select().where(live).count()
        distinct_keys = Voucher.select(pw.fn.COUNT(Voucher.card_key.distinct())).where(live).scalar() or 0
        per_order = (Voucher.select(Voucher.order, pw.fn.COUNT(Voucher.id).alias("n"))
                     .group_by(Voucher.order))
        vouchers_of = {row.order_id: row.n for row in per_order}
        wrong_count = sum(1 for o in Order.select(Order.id, Order.quantity)
                          .where(Order.status == Status.DELIVERED)
                          if vouchers_of.get(o.id, 0) != o.quantity)
    oversold = max(0, paid - pool) + max(0, int(held) - keys_in_pool) + short + foreign
    return {
        "paid": paid, "delivered": delivered, "pending": pending, "keys_in_pool": keys_in_pool,
        "oversold": oversold, "duplicate_keys": (with_key - distinct_keys) + wrong_count,
    }


# ---- entry point --------------------------------------------------------------------------


def run(settings: Settings, *, clients: int = 64, keys: int = 2000, duration: float = 20.0) -> dict[str, Any]:
    """Run the benchmark and return its results (the CLI prints them as one JSON line)."""
    if clients < 1 or keys < 1 or duration <= 0:
        raise ValueError("clients and keys must be at least 1 and duration positive")
    from qianxing.wiring import bootstrap

    began = time.monotonic()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Scratch(settings)
    try:
        database_url = scratch.open_database()
        redis_url = scratch.open_redis()
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        bench = load_settings(**{
            **settings.model_dump(),
            "QIANXING_ENV": "dev", "DATABASE_URL": database_url, "REDIS_URL": redis_url,
            "WEB_BIND": f"127.0.0.1:{port}", "PUBLIC_BASE_URL": base_url,
            "WECHATPAY_NOTIFY_URL": None, "PAYMENT_PROVIDER": "sandbox",
            "MAX_UNPAID_PER_IP": 1_000_000, "NOTIFY_CHANNELS": "log", "LOG_LEVEL": "WARNING",
            "ORDER_TTL_SECONDS": 900,
        })
        database = "postgresql" if scratch.pg_admin_url else "sqlite"
        _log(f"{database} database {database_url.rsplit('/', 1)[-1]}, redis {redis_url}, "
             f"gunicorn {bench.WEB_WORKERS} workers x {bench.WEB_THREADS} threads on {base_url}")
        env = child_env(bench)
        migrate_child(env)
        bootstrap(bench)
        pool = seed(keys)
        _log(f"seeded {SKU_CODE} with {pool} keys")
        scratch.start("web", ["web"], env)
        scratch.start("worker", ["worker", "--no-cron"], env)
        wait_healthy(scratch, base_url)
        _log(f"server up after {time.monotonic() - began:.1f} s; baseline: {clients} clients "
             f"x GET /api/v1/ping for {duration:g} s")

        before = _baseline_window(base_url, clients, duration)
        scratch.check_alive()

        _log(f"flash sale: {clients} buyers, {pool} keys, up to {duration:g} s")
        sale = asyncio.run(_flash_sale(base_url, clients, duration, notifier(bench)))
        requests_per_s = (sale.creates + sale.notifies) / sale.elapsed
        _log(f"flash sale {requests_per_s:.0f} req/s, {sale.paid / sale.elapsed:.0f} orders/s over "
             f"{sale.elapsed:.1f} s; paid {sale.paid}, refused {sale.refused}, errors {sale.errors}")
        scratch.check_alive()

        # The baseline again after the sale: these machines drift over a minute, and the mean
        # of the two windows around the sale is the fair yardstick for it.
        _log(f"baseline again: {clients} clients x GET /api/v1/ping for {duration:g} s")
        after = _baseline_window(base_url, clients, duration)
        base = before + after
        baseline_per_s = base.per_s()
        scratch.check_alive()

        waited = _wait_delivered(scratch, max(DELIVERY_WAIT_S, TIME_BUDGET_S - (time.monotonic() - began)))
        _log(f"deliveries done {waited:.1f} s after the sale")
        checks = verify(pool)
        result: dict[str, Any] = {
            "orders_per_s": round(sale.paid / sale.elapsed, 1),
            "requests_per_s": round(requests_per_s, 1),
            "baseline_per_s": round(baseline_per_s, 1),
            "ratio": round(requests_per_s / baseline_per_s, 3) if baseline_per_s else 0.0,
            "oversold": checks["oversold"],
            "duplicate_keys": checks["duplicate_keys"],
            "p99_ms": sale.p99_ms(),
            "baseline_p99_ms": base.p99_ms(),
            "baseline_before_per_s": round(before.per_s(), 1),
            "baseline_after_per_s": round(after.per_s(), 1),
            "paid": checks["paid"],
            "delivered": checks["delivered"],
            "pending": checks["pending"],
            "keys": pool,
            "refused": sale.refused,
            "errors": sale.errors + base.errors,
            "unexpected": sale.unexpected + base.unexpected,
            "paid_answers": sale.paid,
            "create_requests": sale.creates,
            "notify_requests": sale.notifies,
            "sale_elapsed_s": round(sale.elapsed, 2),
            "delivery_wait_s": round(waited, 1),
            "database": database,
            "redis": "embedded" if scratch.embedded is not None else "external",
            "web_workers": bench.WEB_WORKERS,
            "web_threads": bench.WEB_THREADS,
            "clients": clients,
            "duration_s": duration,
        }
    finally:
        scratch.close()
    result["total_s"] = round(time.monotonic() - began, 1)
    _log(f"done in {result['total_s']} s")
    return result
