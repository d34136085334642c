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
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from qianxing.bench.harness import (
    BENCH_DIR,
    REQUEST_TIMEOUT_S,
    SKU_CODE,
    Scratch,
    bench_settings,
    child_env,
    free_port,
    log,
    migrate_child,
    notifier,
    seed,
    verify,
    wait_healthy,
)
from qianxing.settings import Settings

DELIVERY_WAIT_S = 60.0  # at least this long; longer while the run stays under TIME_BUDGET_S
TIME_BUDGET_S = 215.0  # the whole run, teardown included, stays under four minutes


# ---- load generation ----------------------------------------------------------------------


def p99_ms(latencies: list[float]) -> float:
    """The 99th-percentile latency (nearest rank) in milliseconds; 0.0 when there are none."""
    if not latencies:
        return 0.0
    ordered = sorted(latencies)
    return round(ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] * 1000, 2)


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
        return p99_ms(self.latencies)

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


def http_session(clients: int) -> aiohttp.ClientSession:
    """An aiohttp session of up to `clients` connections; a request times out after REQUEST_TIMEOUT_S."""
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
    async with http_session(clients) as http:
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
    log(f"baseline {stats.per_s():.0f} req/s, p99 {stats.p99_ms()} ms, errors {stats.errors}")
    return stats


async def _flash_sale(base_url: str, clients: int, duration: float,
                      notify_xml: Callable[[str, int, str], bytes]) -> _Stats:
    stats = _Stats()
    run_id = secrets.token_hex(4)
    orders_url, notify_url = base_url + "/api/v1/orders", base_url + "/webhooks/wechatpay/notify"
    async with http_session(clients) as http:

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
                order = json_body(body)
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


def json_body(body: bytes) -> dict[str, Any]:
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
            log(f"{waiting} paid orders still undelivered after {timeout:.0f} s")
            return time.monotonic() - started
        scratch.check_alive()
        time.sleep(0.5)


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
        bench = bench_settings(settings, database_url, redis_url, port)
        database = "postgresql" if scratch.pg_admin_url else "sqlite"
        log(f"{database} database {database_url.rsplit('/', 1)[-1]}, redis {redis_url}, "
             f"gunicorn {bench.WEB_WORKERS} workers x {bench.WEB_THREADS} threads on {base_url}")
        env = child_env(bench)
        migrate_child(env)
        bootstrap(bench)
        pool = seed(keys)
        log(f"seeded {SKU_CODE} with {pool} keys")
        scratch.start("web", ["web"], env)
        scratch.start("worker", ["worker", "--no-cron"], env)
        wait_healthy(scratch, base_url)
        log(f"server up after {time.monotonic() - began:.1f} s; baseline: {clients} clients "
             f"x GET /api/v1/ping for {duration:g} s")

        before = _baseline_window(base_url, clients, duration)
        scratch.check_alive()

        log(f"flash sale: {clients} buyers, {pool} keys, up to {duration:g} s")
        sale = asyncio.run(_flash_sale(base_url, clients, duration, notifier(bench)))
        requests_per_s = (sale.creates + sale.notifies) / sale.elapsed
        log(f"flash sale {requests_per_s:.0f} req/s, {sale.paid / sale.elapsed:.0f} orders/s over "
             f"{sale.elapsed:.1f} s; paid {sale.paid}, refused {sale.refused}, errors {sale.errors}")
        scratch.check_alive()

        # The baseline again after the sale: these machines drift over a minute, and the mean
        # of the two windows around the sale is the fair yardstick for it.
        log(f"baseline again: {clients} clients x GET /api/v1/ping for {duration:g} s")
        after = _baseline_window(base_url, clients, duration)
        base = before + after
        baseline_per_s = base.per_s()
        scratch.check_alive()

        waited = _wait_delivered(scratch, max(DELIVERY_WAIT_S, TIME_BUDGET_S - (time.monotonic() - began)))
        log(f"deliveries done {waited:.1f} s after the sale")
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
    log(f"done in {result['total_s']} s")
    return result
