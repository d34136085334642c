"""`qianxing bench live-burst`: a live flash sale is a burst, mostly refused.

The real service on loopback (as `bench flash-sale`): a scratch database of its own (a SQLite
file under var/bench/, or `qx_bench_live_<pid>` next to the PostgreSQL in DATABASE_URL), Redis
(REDIS_URL as given, database 14 when it names none, or an embedded redis-server of its own),
`qianxing web` (gunicorn) and `qianxing worker`.

Seeded: a creator's live session on air with one pinned card-key SKU (retail 99 yuan, `units`
keys) under a two-tier ladder: the first half of the units at 9.90, the rest at 19.90.

1. baseline: `clients` connections loop GET /api/v1/ping for `baseline_s` seconds, before and
   after the burst; `baseline_per_s` is the mean rate over both windows.
2. `buyers` distinct buyers, logged in beforehand (dev-login), arrive within `window` seconds
   (open loop: buyer i starts at i x window / buyers whatever the answers) and each creates an
   order for the pin; a created order is paid with the signed notification WeChat Pay would send.
   `refused_per_s` = refusals (409 sold_out) / the time from the first request to the last
   refusal answered; `refused_ratio` = refused_per_s / baseline_per_s; `sellout_s` = from the
   first request to the answer that took the last unit; `p99_ms` over the burst's order
   requests, from each buyer's scheduled start.
3. checks in the database: `sold` (paid orders), `oversold` (more paid than units, a tier over
   its units, a key sold twice), `tier_errors` (an order whose recorded price is not the price
   of its tier, or a later tier used while an earlier one still has room), `duplicate_keys`.
`peak_rss_mb`: the most the web and worker processes held together (sampled every 0.2 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from qianxing.bench.fault_service import group_processes
from qianxing.bench.flash_sale import http_session, json_body, p99_ms
from qianxing.bench.harness import (
    BENCH_DIR,
    SKU_CODE,
    OwnScratch,
    Scratch,
    bench_settings,
    child_env,
    free_port,
    log,
    migrate_child,
    notifier,
    verify,
    wait_healthy,
)
from qianxing.settings import Settings

RETAIL_FEN, PRICES = 9900, (990, 1990)
DELIVERY_WAIT_S = 60.0
STARTUP_TIMEOUT_S = 150.0  # more patience than harness.wait_healthy's: gunicorn starts slowly on a busy machine




# ---- seeding --------------------------------------------------------------------------------


def seed(units: int) -> int:
    """The SKU (`units` keys), a creator's session on air and the pinned ladder; the session id."""
    from models import catalog, live, live_prices, network, vault
    from models.catalog import Kind
    from models.db import connection, db
    from models.live import LivePin
    from models.users import get_or_create_by_openid

    first = units // 2
    with connection():
        with db.atomic():
            product = catalog.create_product("Bench live burst", "qianxing bench live-burst")
            sku = catalog.create_sku(product, code=SKU_CODE, name="Bench live card key", kind=Kind.CARD_KEY,
                                     supply_price_fen=500, retail_price_fen=RETAIL_FEN)
        vault.import_keys(sku, [(i + 1, f"LIVE-{i:06d}-{secrets.token_hex(6).upper()}") for i in range(units)])
        seller = network.become_creator(get_or_create_by_openid("bench-live-host"), name="bench host")
        session = live.start_live(seller, "bench live burst")
        tiers = live_prices.parse_ladder({"tiers": [{"units": first, "price_fen": PRICES[0]},
                                                    {"units": units - first, "price_fen": PRICES[1]}]}
                                         if first else {"tiers": [{"units": units, "price_fen": PRICES[1]}]},
                                         RETAIL_FEN)
        with db.atomic():
            pin = LivePin.create(session=session.id, sku=sku.id)
            live_prices.save_ladder(pin, tiers)
    return session.id


# ---- load -------------------------------------------------------------------------------------


@dataclass
class Window:
    requests: int = 0
    errors: int = 0
    unexpected: int = 0
    elapsed: float = 0.0

    def per_s(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0


@dataclass
class Burst:
    created: int = 0
    refused: int = 0
    paid: int = 0
    errors: int = 0
    unexpected: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    last_refused_at: float = 0.0
    last_created_at: float = 0.0
    started: float = 0.0

    def p99_ms(self) -> float:
        return p99_ms(self.latencies)


async def _baseline(base_url: str, clients: int, duration: float) -> Window:
    stats = Window()
    url = base_url + "/api/v1/ping"
    async with http_session(clients) as http:
        for _ in range(clients * 2):  # warm the connections
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(url) as resp:
                    await resp.read()
        started = time.perf_counter()
        deadline = started + duration

        async def client() -> None:
            while time.perf_counter() < deadline:
                try:
                    async with http.get(url) as resp:
                        await resp.read()
                        stats.requests += 1
                        stats.unexpected += resp.status != 200
                except (aiohttp.ClientError, TimeoutError):
                    stats.errors += 1

        await asyncio.gather(*(client() for _ in range(clients)))
        stats.elapsed = time.perf_counter() - started
    return stats


async def _logins(base_url: str, buyers: int, concurrency: int) -> list[str]:
    tokens: list[str] = [""] * buyers
    gate = asyncio.Semaphore(concurrency)
    async with http_session(concurrency) as http:

        async def one(i: int) -> None:
            async with gate, http.post(base_url + "/api/v1/auth/dev-login",
                                       json={"openid": f"live-buyer-{i}"}) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"dev-login answered {resp.status}: {await resp.text()}")
                tokens[i] = (await resp.json())["token"]

        await asyncio.gather(*(one(i) for i in range(buyers)))
    return tokens


async def _burst(base_url: str, session_id: int, tokens: list[str], window: float, connections: int,
                 notify_xml: Any) -> Burst:
    stats = Burst()
    run_id = secrets.token_hex(4)
    orders_url, notify_url = base_url + "/api/v1/orders", base_url + "/webhooks/wechatpay/notify"
    async with http_session(connections) as http:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):  # open some connections first
            await asyncio.gather(*(http.get(base_url + "/api/v1/ping") for _ in range(min(connections, 64))))
        stats.started = start = time.perf_counter() + 0.05
        step = window / len(tokens)

        async def buyer(i: int, token: str) -> None:
            due = start + i * step
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            body = {"sku": SKU_CODE, "quantity": 1, "live": session_id}
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": f"live-{run_id}-{i:06d}"}
            try:
                async with http.post(orders_url, json=body, headers=headers) as resp:
                    answer, status = await resp.read(), resp.status
            except (aiohttp.ClientError, TimeoutError):
                stats.errors += 1
                return
            now = time.perf_counter()
            stats.latencies.append(now - due)
            if status == 409 and (b'"sold_out"' in answer or b'"out_of_stock"' in answer):
                stats.refused += 1
                stats.last_refused_at = max(stats.last_refused_at, now)
                return
            if status != 201:
                stats.unexpected[status] += 1
                return
            stats.created += 1
            stats.last_created_at = max(stats.last_created_at, now)
            order = json_body(answer)
            try:
                async with http.post(notify_url, data=notify_xml(order["no"], int(order["amount_fen"]),
                                                                 f"live-buyer-{i}"),
                                     headers={"Content-Type": "text/xml"}) as resp:
                    paid = resp.status == 200 and b"SUCCESS" in await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                stats.errors += 1
                return
            if paid:
                stats.paid += 1
            else:
                stats.unexpected["notify"] += 1

        await asyncio.gather(*(buyer(i, t) for i, t in enumerate(tokens)))
    return stats


class RssMonitor:
    """The peak RSS of the web and worker process groups together, sampled in a thread."""

    def __init__(self, scratch: Scratch) -> None:
        self.scratch, self.peak = scratch, 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(Exception):
                groups = {proc.pid: name for name, proc in self.scratch.procs}
                self.peak = max(self.peak, sum(rss for _, rss in group_processes(groups).values()))
            self.stopping.wait(0.2)

    def __enter__(self) -> RssMonitor:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


# ---- checks -----------------------------------------------------------------------------------


def tier_errors() -> dict[str, int]:
    """Orders whose recorded price is not their tier's (or not the order's), live orders without
    a tier, tiers whose counter is not the places held on orders, and places in a later tier
    while an earlier one still has room."""
    from models.db import connection, execute

    with connection():
        wrong_price = execute(
            'SELECT COUNT(*) FROM live_order_price lp JOIN "order" o ON o.id = lp.order_id '
            "LEFT JOIN live_tier t ON t.id = lp.tier_id "
            "WHERE t.id IS NULL OR lp.price_fen <> t.price_fen OR o.unit_price_fen <> lp.price_fen").fetchone()[0]
        untracked = execute(
            'SELECT COUNT(*) FROM "order" o LEFT JOIN live_order_price lp ON lp.order_id = o.id '
            "WHERE o.live_id IS NOT NULL AND lp.order_id IS NULL").fetchone()[0]
        tiers = execute(
            "SELECT t.seq, t.units, t.taken, (SELECT COALESCE(SUM(lp.quantity), 0) FROM live_order_price lp "
            "WHERE lp.tier_id = t.id AND NOT lp.released) FROM live_tier t ORDER BY t.pin_id, t.seq").fetchall()
    drift = sum(1 for _, _, taken, held in tiers if taken != held)
    over = sum(max(0, taken - units) for _, units, taken, _ in tiers)
    skipped = 0
    for i, (_, units, taken, _) in enumerate(tiers):
        if taken < units:
            skipped += sum(later[2] for later in tiers[i + 1:])
            break
    return {"tier_errors": wrong_price + untracked + drift + skipped, "tier_over": over}


def _wait_delivered(scratch: Scratch, timeout: float) -> float:
    from models.db import connection
    from models.orders import Order, Status

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with connection():
            if not Order.select().where(Order.status == Status.PAID).exists():
                break
        scratch.check_alive()
        time.sleep(0.3)
    return time.monotonic() - started


# ---- entry point ------------------------------------------------------------------------------


def run(settings: Settings, *, units: int = 100, buyers: int = 5000, window: float = 1.0,
        clients: int = 64, baseline_s: float = 3.0, connections: int = 512) -> dict[str, Any]:
    """Run the benchmark and return its results (the CLI prints them as one JSON line)."""
    if units < 1 or buyers < 1 or window <= 0 or clients < 1 or baseline_s <= 0 or connections < 1:
        raise ValueError("units, buyers, clients and connections at least 1; window and baseline_s positive")
    from qianxing.wiring import bootstrap

    began = time.monotonic()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    scratch = OwnScratch(settings, db_name="live", dir_name="live-burst")
    try:
        database_url, redis_url = scratch.open_database(), scratch.open_redis()
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        bench = bench_settings(settings, database_url, redis_url, port)
        database = "postgresql" if scratch.own.postgres else "sqlite"
        log(f"{database} database {database_url.rsplit('/', 1)[-1]}, redis {redis_url}, "
            f"gunicorn {bench.WEB_WORKERS} workers x {bench.WEB_THREADS} threads on {base_url}")
        env = child_env(bench)
        migrate_child(env)
        bootstrap(bench)
        session_id = seed(units)
        with RssMonitor(scratch) as rss:
            scratch.start("web", ["web"], env)
            scratch.start("worker", ["worker", "--no-cron"], env)
            wait_healthy(scratch, base_url, STARTUP_TIMEOUT_S)
            log(f"server up after {time.monotonic() - began:.1f} s; logging {buyers} buyers in")
            tokens = asyncio.run(_logins(base_url, buyers, min(clients, 64)))
            before = asyncio.run(_baseline(base_url, clients, baseline_s))
            log(f"baseline {before.per_s():.0f} req/s")
            log(f"burst: {buyers} buyers within {window:g} s for {units} units (tiers {units // 2} + "
                f"{units - units // 2})")
            burst = asyncio.run(_burst(base_url, session_id, tokens, window, connections, notifier(bench)))
            scratch.check_alive()
            after = asyncio.run(_baseline(base_url, clients, baseline_s))
            log(f"baseline again {after.per_s():.0f} req/s")
            waited = _wait_delivered(scratch, DELIVERY_WAIT_S)
            scratch.check_alive()
        checks = verify(units)
        tiers = tier_errors()
        baseline_per_s = (before.requests + after.requests) / (before.elapsed + after.elapsed)
        refused_span = (burst.last_refused_at - burst.started) if burst.refused else 0.0
        refused_per_s = burst.refused / refused_span if refused_span > 0 else 0.0
        result: dict[str, Any] = {
            "sold": checks["paid"],
            "oversold": checks["oversold"] + tiers["tier_over"],
            "tier_errors": tiers["tier_errors"],
            "duplicate_keys": checks["duplicate_keys"],
            "refused": burst.refused,
            "refused_per_s": round(refused_per_s, 1),
            "baseline_per_s": round(baseline_per_s, 1),
            "refused_ratio": round(refused_per_s / baseline_per_s, 3) if baseline_per_s else 0.0,
            "sellout_s": round(burst.last_created_at - burst.started, 3) if burst.created else None,
            "p99_ms": burst.p99_ms(),
            "peak_rss_mb": round(rss.peak / 2**20, 1),
            "created": burst.created,
            "paid_answers": burst.paid,
            "delivered": checks["delivered"],
            "errors": burst.errors + before.errors + after.errors,
            "unexpected": sum(burst.unexpected.values()) + before.unexpected + after.unexpected,
            "unexpected_by_status": {str(k): v for k, v in burst.unexpected.items()},
            "baseline_before_per_s": round(before.per_s(), 1),
            "baseline_after_per_s": round(after.per_s(), 1),
            "delivery_wait_s": round(waited, 1),
            "units": units, "buyers": buyers, "window_s": window,
            "database": database,
            "redis": "embedded" if scratch.embedded is not None else "external",
            "web_workers": bench.WEB_WORKERS, "web_threads": bench.WEB_THREADS,
        }
    finally:
        scratch.close()
    shutil.rmtree(scratch.log_dir(), ignore_errors=True)  # the logs are kept only when the run failed
    result["total_s"] = round(time.monotonic() - began, 1)
    log(f"done in {result['total_s']} s")
    return result
