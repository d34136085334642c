"""`qianxing bench group-buy`: distinct buyers start and join group-buy teams concurrently.

The real service on loopback (as `bench live-burst`): a scratch database of its own (a SQLite
file under var/bench/, or `qx_bench_group_<pid>` next to the PostgreSQL in DATABASE_URL), Redis
(REDIS_URL as given, database 14 when it names none, or an embedded redis-server of its own),
`qianxing web` (gunicorn) and `qianxing worker` (with its periodic jobs: the expiry sweep and the
refund retries are periodic).

Seeded: a serial-code SKU (retail 19.90, stock for every buyer) and one activity on it: teams of
`size` at 9.90, a one-hour window.

1. baseline: `clients` connections loop GET /api/v1/ping for `baseline_s` seconds, before and
   after the join phase; `baseline_per_s` is the mean rate over both windows.
2. join phase, `clients` teams in flight at a time (and as many connections): a distinct
   buyer starts team i (POST /api/v1/orders with `group_activity`) and pays it with the signed
   notification WeChat Pay would send; then the team's other buyers join it at once (POST
   /api/v1/orders with `team`, then pay). One team in ten is left one member short; one full
   team in ten gets one more buyer racing the others for its seats (exactly one of them is
   refused, 409 group_full, or group_closed when the team had already filled: `refused`).
   `joins_per_s` = paid member orders (leaders included) / the phase's wall time;
   `ratio` = joins_per_s / baseline_per_s.
3. the worker's jobs run to completion: the delivery drain advances paid members and delivers
   each team when it fills; then the short teams' windows are moved into the past (time
   passing, without waiting an hour) and the expiry sweep closes them, refunding every paid
   member through the sandbox gateway.
4. checks in the database: `teams`, `succeeded`, `failed`, `oversized` (teams with more than
   `size` paid members), `delivered_before_success` (a member order delivered while its team
   had not succeeded, or before the team's success time), `refunds_missing` (paid members of
   failed teams without a succeeded refund), `double_refunds` (an order with more than one
   refund or refund ledger entry), `ledger_unbalanced` (ledger transactions whose postings do not sum to zero).
`peak_rss_mb`: the most the web and worker processes held together (sampled every 0.2 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from qianxing.bench.flash_sale import http_session
from qianxing.bench.harness import (
    BENCH_DIR,
    OwnScratch,
    Scratch,
    bench_settings,
    child_env,
    free_port,
    log,
    migrate_child,
    notifier,
    wait_healthy,
)
from qianxing.bench.live_burst import RssMonitor, _baseline  # the same ping baseline as live-burst
from qianxing.settings import Settings

SKU_CODE = "BENCH-GROUP-1"
RETAIL_FEN, GROUP_FEN = 1990, 990
WINDOW_S = 3600
STARTUP_TIMEOUT_S = 150.0
SHORT_EVERY = 10  # team i with i % SHORT_EVERY == SHORT_EVERY - 1 is left one member short
CONTEND_EVERY = 10  # team i with i % CONTEND_EVERY == 0 gets one buyer more than seats
REFUSED_CODES = ("group_full", "group_closed")  # the one buyer too many: no seat, or the team filled




# ---- the plan and seeding ---------------------------------------------------------------------


@dataclass(frozen=True)
class TeamPlan:
    index: int
    leader: str
    members: tuple[str, ...]  # joiners (one more than seats when contended)
    short: bool
    contended: bool


def plan(teams: int, size: int, run_id: str) -> list[TeamPlan]:
    found = []
    for i in range(teams):
        short = i % SHORT_EVERY == SHORT_EVERY - 1
        contended = not short and i % CONTEND_EVERY == 0
        joiners = size - 1 - (1 if short else 0) + (1 if contended else 0)
        found.append(TeamPlan(i, f"gb-{run_id}-{i}-0", tuple(f"gb-{run_id}-{i}-{k}" for k in range(1, joiners + 1)),
                              short, contended))
    return found


def seed(buyers: int, size: int) -> int:
    """The SKU (stock for every buyer) and the activity (through the operator's service,
    validated); the activity's id."""
    from models import catalog, groupbuy, vault
    from models.catalog import Kind
    from models.db import connection, db, utcnow

    now = utcnow()
    with connection():
        with db.atomic():
            product = catalog.create_product("Bench group buy", "qianxing bench group-buy")
            sku = catalog.create_sku(product, code=SKU_CODE, name="Bench group code", kind=Kind.SERIAL,
                                     supply_price_fen=500, retail_price_fen=RETAIL_FEN, stock=buyers + 10)
            vault.seal_serial(sku, "BENCH-GROUP-SERIAL-0001")
        activity = groupbuy.create_activity(groupbuy.ActivitySpec(
            sku_code=SKU_CODE, title="Bench 拼团", size=size, window_s=WINDOW_S, group_price_fen=GROUP_FEN,
            starts_at=now - dt.timedelta(minutes=1), ends_at=now + dt.timedelta(days=1)), actor="bench")
    return activity.id


# ---- load ---------------------------------------------------------------------------------------


async def _logins(base_url: str, openids: list[str], concurrency: int) -> dict[str, str]:
    tokens: dict[str, str] = {}
    gate = asyncio.Semaphore(concurrency)
    async with http_session(concurrency) as http:

        async def one(openid: str) -> None:
            async with gate, http.post(base_url + "/api/v1/auth/dev-login", json={"openid": openid}) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"dev-login answered {resp.status}: {await resp.text()}")
                tokens[openid] = (await resp.json())["token"]

        await asyncio.gather(*(one(o) for o in openids))
    return tokens


@dataclass
class Joins:
    paid: int = 0  # member orders created and paid (leaders included)
    refused: int = 0  # 409 for a team with no seat left (full, or already succeeded)
    errors: int = 0
    unexpected: Counter = field(default_factory=Counter)
    elapsed: float = 0.0

    def per_s(self) -> float:
        return self.paid / self.elapsed if self.elapsed else 0.0


async def _join_phase(base_url: str, activity_id: int, teams: list[TeamPlan], tokens: dict[str, str],
                      clients: int, notify_xml: Any) -> Joins:
    stats = Joins()
    orders_url, notify_url = base_url + "/api/v1/orders", base_url + "/webhooks/wechatpay/notify"
    gate = asyncio.Semaphore(clients)
    async with http_session(clients) as http:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            await asyncio.gather(*(http.get(base_url + "/api/v1/ping") for _ in range(min(clients, 64))))

        async def member(openid: str, body: dict[str, Any]) -> int | None:
            """Create and pay one member order; the team id, or None."""
            headers = {"Authorization": f"Bearer {tokens[openid]}", "Idempotency-Key": f"gb-{openid}"}
            try:
                async with http.post(orders_url, json={"sku": SKU_CODE, "quantity": 1, **body},
                                     headers=headers) as resp:
                    answer, status = await resp.json(content_type=None), resp.status
                if status == 409 and answer.get("error", {}).get("code") in REFUSED_CODES:
                    stats.refused += 1
                    return None
                if status != 201:
                    stats.unexpected[f"{status}:{answer.get('error', {}).get('code', '')}"] += 1
                    return None
                async with http.post(notify_url, data=notify_xml(answer["no"], int(answer["amount_fen"]), openid),
                                     headers={"Content-Type": "text/xml"}) as resp:
                    paid = resp.status == 200 and b"SUCCESS" in await resp.read()
            except (aiohttp.ClientError, TimeoutError, ValueError):
                stats.errors += 1
                return None
            if not paid:
                stats.unexpected["notify"] += 1
                return None
            stats.paid += 1
            return answer.get("group_team")

        async def team(p: TeamPlan) -> None:
            async with gate:
                team_id = await member(p.leader, {"group_activity": activity_id})
                if team_id is None:
                    stats.unexpected["no_team"] += 1
                    return
                await asyncio.gather(*(member(o, {"team": team_id}) for o in p.members))

        started = time.perf_counter()
        await asyncio.gather(*(team(p) for p in teams))
        stats.elapsed = time.perf_counter() - started
    return stats


# ---- after the phase: the worker's jobs ---------------------------------------------------------


def _scalar(sql: str, params: list | tuple = ()) -> int:
    from models.db import connection, execute

    with connection():
        return int(execute(sql, params).fetchone()[0] or 0)


def _wait(scratch: Scratch, what: str, sql: str, timeout: float) -> float:
    """Poll until `sql` counts 0 (or the timeout); the seconds waited."""
    started = time.monotonic()
    while True:
        left = _scalar(sql)
        if not left:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            log(f"{what}: {left} left after {timeout:.0f} s")
            return time.monotonic() - started
        scratch.check_alive()
        time.sleep(0.5)


# Paid orders not yet delivered (a team that succeeded), or paid members the drain has not yet
# counted (their team cannot fill before it has).
UNSETTLED = ("SELECT (SELECT COUNT(*) FROM \"order\" WHERE status = 'paid' AND NOT group_hold) "
             "+ (SELECT COUNT(*) FROM group_member m JOIN \"order\" o ON o.id = m.order_id "
             "WHERE m.state = 'joining' AND o.status = 'paid')")
UNCLOSED = ("SELECT (SELECT COUNT(*) FROM group_team WHERE state = 'open') + (SELECT COUNT(*) FROM group_member m "
            "JOIN group_team t ON t.id = m.team_id JOIN \"order\" o ON o.id = m.order_id "
            "LEFT JOIN refund r ON r.order_id = o.id AND r.state = 'succeeded' "
            "WHERE t.state = 'failed' AND o.paid_at IS NOT NULL AND r.id IS NULL)")


def expire_short_teams(rt: Any) -> int:
    """Time passes: the open teams' windows end now; the expiry sweep is queued at once (the
    worker's periodic sweep would find them within its interval anyway). Returns the teams."""
    from models.db import connection, execute, utcnow
    from models.groupbuy import GroupTeam

    past = GroupTeam.expires_at.db_value(utcnow() - dt.timedelta(seconds=1))
    with connection():
        moved = execute("UPDATE group_team SET expires_at = %s WHERE state = 'open'", [past]).rowcount
    rt.queue.enqueue("tasks.groupbuy.close_expired", job_timeout=600)
    return moved


# ---- checks -----------------------------------------------------------------------------------------


def checks() -> dict[str, int]:
    paid_members = ("SELECT t.id, t.size, COUNT(*) AS n FROM group_member m JOIN group_team t ON t.id = m.team_id "
                    "JOIN \"order\" o ON o.id = m.order_id WHERE o.paid_at IS NOT NULL GROUP BY t.id, t.size")
    return {
        "teams": _scalar("SELECT COUNT(*) FROM group_team"),
        "succeeded": _scalar("SELECT COUNT(*) FROM group_team WHERE state = 'succeeded'"),
        "failed": _scalar("SELECT COUNT(*) FROM group_team WHERE state = 'failed'"),
        "still_open": _scalar("SELECT COUNT(*) FROM group_team WHERE state = 'open'"),
        "oversized": _scalar(f"SELECT COUNT(*) FROM ({paid_members}) x WHERE x.n > x.size")
        + _scalar("SELECT COUNT(*) FROM group_team WHERE paid_count > size OR seats_taken > size"),
        "delivered_before_success": _scalar(
            "SELECT COUNT(*) FROM group_member m JOIN group_team t ON t.id = m.team_id "
            "JOIN \"order\" o ON o.id = m.order_id WHERE o.delivered_at IS NOT NULL "
            "AND (t.state <> 'succeeded' OR t.closed_at IS NULL OR o.delivered_at < t.closed_at)"),
        "refunds_missing": _scalar(
            "SELECT COUNT(*) FROM group_member m JOIN group_team t ON t.id = m.team_id "
            "JOIN \"order\" o ON o.id = m.order_id LEFT JOIN refund r ON r.order_id = o.id AND r.state = 'succeeded' "
            "WHERE t.state = 'failed' AND o.paid_at IS NOT NULL AND r.id IS NULL"),
        "double_refunds": _scalar(
            "SELECT COUNT(*) FROM (SELECT order_id FROM refund GROUP BY order_id HAVING COUNT(*) > 1) x")
        + _scalar("SELECT COUNT(*) FROM (SELECT order_id FROM ledger_transaction WHERE kind = 'refund' "
                  "GROUP BY order_id HAVING COUNT(*) > 1) x"),
        "refunded": _scalar("SELECT COUNT(*) FROM refund WHERE state = 'succeeded'"),
        "delivered": _scalar("SELECT COUNT(*) FROM \"order\" WHERE status = 'delivered'"),
        "ledger_unbalanced": _scalar("SELECT COUNT(*) FROM (SELECT txn_id FROM posting GROUP BY txn_id "
                                     "HAVING SUM(amount_fen) <> 0) x"),
    }


# ---- entry point ------------------------------------------------------------------------------------


def run(settings: Settings, *, teams: int = 2000, size: int = 3, clients: int = 64,
        baseline_s: float = 3.0, settle_timeout_s: float = 300.0) -> dict[str, Any]:
    """Run the benchmark and return its results (the CLI prints them as one JSON line)."""
    if teams < 1 or not 2 <= size <= 50 or clients < 1 or baseline_s <= 0:
        raise ValueError("teams and clients at least 1, size 2-50, baseline_s positive")
    from qianxing.wiring import bootstrap

    began = time.monotonic()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    scratch = OwnScratch(settings, db_name="group", dir_name="group-buy")
    run_id = secrets.token_hex(3)
    teams_plan = plan(teams, size, run_id)
    buyers = [o for p in teams_plan for o in (p.leader, *p.members)]
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
        rt = bootstrap(bench)
        activity_id = seed(len(buyers), size)
        with RssMonitor(scratch) as rss:
            scratch.start("web", ["web"], env)
            scratch.start("worker", ["worker"], env)
            wait_healthy(scratch, base_url, STARTUP_TIMEOUT_S)
            log(f"server up after {time.monotonic() - began:.1f} s; logging {len(buyers)} buyers in")
            tokens = asyncio.run(_logins(base_url, buyers, min(clients, 64)))
            before = asyncio.run(_baseline(base_url, clients, baseline_s))
            log(f"baseline {before.per_s():.0f} req/s; {teams} teams of {size}, {clients} in flight")
            joins = asyncio.run(_join_phase(base_url, activity_id, teams_plan, tokens, clients, notifier(bench)))
            log(f"join phase {joins.elapsed:.1f} s, {joins.per_s():.0f} paid joins/s")
            scratch.check_alive()
            after = asyncio.run(_baseline(base_url, clients, baseline_s))
            log(f"baseline again {after.per_s():.0f} req/s")
            settle_wait = _wait(scratch, "teams to deliver", UNSETTLED, settle_timeout_s)
            expired = expire_short_teams(rt)
            log(f"delivered after {settle_wait:.1f} s; {expired} teams expired")
            expiry_wait = _wait(scratch, "teams to close and refund", UNCLOSED, settle_timeout_s)
            scratch.check_alive()
        found = checks()
        baseline_per_s = (before.requests + after.requests) / (before.elapsed + after.elapsed)
        joins_per_s = joins.per_s()
        result: dict[str, Any] = {
            "teams": found["teams"], "succeeded": found["succeeded"], "failed": found["failed"],
            "oversized": found["oversized"], "delivered_before_success": found["delivered_before_success"],
            "refunds_missing": found["refunds_missing"], "double_refunds": found["double_refunds"],
            "joins_per_s": round(joins_per_s, 1), "baseline_per_s": round(baseline_per_s, 1),
            "ratio": round(joins_per_s / baseline_per_s, 3) if baseline_per_s else 0.0,
            "peak_rss_mb": round(rss.peak / 2**20, 1),
            "joins": joins.paid, "refused": joins.refused,
            "contended": sum(1 for p in teams_plan if p.contended),
            "short_teams": sum(1 for p in teams_plan if p.short),
            "still_open": found["still_open"], "delivered": found["delivered"], "refunded": found["refunded"],
            "ledger_unbalanced": found["ledger_unbalanced"],
            "errors": joins.errors + before.errors + after.errors,
            "unexpected": sum(joins.unexpected.values()) + before.unexpected + after.unexpected,
            "unexpected_by_status": dict(joins.unexpected),
            "join_phase_s": round(joins.elapsed, 1), "settle_wait_s": round(settle_wait, 1),
            "expiry_wait_s": round(expiry_wait, 1),
            "size": size, "clients": clients, "database": database,
            "redis": "embedded" if scratch.embedded is not None else "external",
            "web_workers": bench.WEB_WORKERS, "web_threads": bench.WEB_THREADS,
        }
    finally:
        scratch.close()
    shutil.rmtree(scratch.log_dir(), ignore_errors=True)  # the logs are kept only when the run failed
    result["total_s"] = round(time.monotonic() - began, 1)
    log(f"done in {result['total_s']} s")
    return result
