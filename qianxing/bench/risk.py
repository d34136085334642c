"""`qianxing bench risk --orders N`: batched risk scoring against a per-order baseline.

The run owns a scratch database (`qx_bench_risk_<pid>` next to the PostgreSQL in DATABASE_URL,
dropped afterwards, or a SQLite file under var/bench/), planned by qianxing/bench/risk_data.py
and loaded by risk_load.py: N paid orders over 30 days sold by a tree of creators, a known
share of them injected fraud patterns labelled with the rule expected to catch them, the rest
honest traffic and honest look-alikes. Phases, each timed:

1. set-up: migrate, load the shop (COPY / executemany), `settlement.settle` every order (the
   engine scores settled orders), then on PostgreSQL `VACUUM (ANALYZE)` of the loaded tables:
   what autovacuum does to insert-only tables in production, setting the visibility map so
   the rules' index-only scans stay off the heap (the baseline runs after it too).
2. baseline: a random sample (`--sample`) scored one call per order
   (`score_pending(order_ids=[id], batch=1)`) inside one transaction that is rolled back
   afterwards (hits, scores, holds, voids and cases all undone), so the full run scores every
   order from the same state. Savepoints replace the per-order commits there, which if
   anything flatters the baseline. It stops after `--baseline-budget` seconds (the sample is
   in random order, so what it reached is still a random sample): `baseline_orders` says how
   many it scored.
3. full run: `score_pending(Thresholds(RISK_HOLD_SCORE, RISK_REVIEW_SCORE), batch=--batch)`.
4. per-rule seconds (`rule_seconds`): the engine's own (ScoreResult.rule_seconds) when it
   reports them; else each order rule's query re-run over all the batches after the full run
   (read only). The rest of `score_s` is the writing.
5. the edge checks' latency (`gate`: p50/p99 per check in microseconds) from the gate's own
   `measure` against REDIS_URL, when Redis is configured.
6. measures: recall (injected orders whose expected rule hit them: a risk_hit with that code
   and the order as subject), false_positive_rate (honest orders held or reviewed), per-rule
   recall, hits, holds, reviews, voids, cases, the honest look-alikes flagged.
The last line printed is one JSON object (see `run`).
"""

from __future__ import annotations

import random
import resource
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from qianxing.bench import risk_data, risk_load
from qianxing.bench.harness import ScratchDatabase, redis_bench_url
from qianxing.settings import Settings

BASELINE_BUDGET_S = 120.0  # the per-order baseline stops after this long (it scores what it reached)
TARGETS = {"orders_per_s": 20_000, "recall": 0.95, "false_positive_rate": 0.01}


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """The most memory this process has held (the scoring runs in it), in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def rss_mb() -> float | None:
    """This process's resident memory now, in MiB (Linux; None elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(pages * resource.getpagesize() / 2**20, 1)


def _timings(result: Any) -> dict[str, float] | None:
    """Per-rule seconds, when the engine's ScoreResult carries them (any dict-valued field
    named like `rule_seconds` / `timings`)."""
    for name in ("rule_seconds", "rule_s", "timings", "seconds_by_rule"):
        value = getattr(result, name, None)
        if isinstance(value, dict) and value:
            return {str(k): round(float(v), 3) for k, v in value.items()}
    return None


def rule_seconds(batch: int) -> dict[str, float] | None:
    """Seconds each order rule's query takes over all orders, in the engine's batches (read
    only: the rules of models/risk_order_rules.py run again after the full run, outside it).
    The rest of `score_s` is writing: hits, scores, holds, voids and cases."""
    try:
        from models import risk_rules
        from models.risk_order_rules import ORDER_RULES, Batch
        from models.risk_tables import Scope
    except ImportError:
        return None
    from models.db import execute

    rules = risk_rules.current(Scope.ORDER)
    rows = execute('SELECT o.id, o.user_id, o.seller_id FROM "order" o JOIN risk_order_score r ON r.order_id = o.id '
                   "ORDER BY o.id").fetchall()
    spent: dict[str, float] = dict.fromkeys(ORDER_RULES, 0.0)
    lo = 0
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        b = Batch(lo=lo, hi=chunk[-1][0], orders={r[0]: (r[1], r[2]) for r in chunk})
        for code, check in ORDER_RULES.items():
            rule = rules.get(code)
            if rule is None or not rule.enabled:
                continue
            t0 = time.perf_counter()
            check(b, rule.params)
            spent[code] += time.perf_counter() - t0
        lo = chunk[-1][0]
    return {code: round(v, 2) for code, v in spent.items()}


def measure(p: risk_data.Plan) -> dict[str, Any]:
    """Recall, false positives and counts from the scored scratch database."""
    from models.db import execute

    hits_by_order: dict[int, set[str]] = defaultdict(set)
    for oid, code in execute("SELECT subject_id, code FROM risk_hit WHERE subject_kind = 'order'").fetchall():
        hits_by_order[int(oid)].add(code)
    outcome = {int(oid): out for oid, out in execute("SELECT order_id, outcome FROM risk_order_score").fetchall()}
    injected, caught, flagged_kinds = Counter(), Counter(), Counter()
    honest = honest_flagged = 0
    for oid, label in p.labels.items():
        if label == risk_data.HONEST:
            honest += 1
            if outcome.get(oid) in ("hold", "review"):
                honest_flagged += 1
                flagged_kinds[p.kinds[oid]] += 1
            continue
        injected[label] += 1
        if label in hits_by_order.get(oid, ()):
            caught[label] += 1
    hits = Counter(code for codes in hits_by_order.values() for code in codes)
    fraud = sum(injected.values())
    count = lambda sql: int(execute(sql).fetchone()[0])  # noqa: E731
    return {
        "injected": fraud,
        "caught": sum(caught.values()),
        "recall": round(sum(caught.values()) / fraud, 4) if fraud else 1.0,
        "honest_orders": honest,
        "honest_flagged": honest_flagged,
        "false_positive_rate": round(honest_flagged / honest, 5) if honest else 0.0,
        "per_rule": {code: {"injected": injected[code], "caught": caught[code],
                            "recall": round(caught[code] / injected[code], 4) if injected[code] else None,
                            "hits": hits[code]} for code in risk_data.RULES},
        "honest_flagged_by_kind": dict(flagged_kinds),
        "scored": len(outcome),
        "outcomes": dict(Counter(outcome.values())),
        "hits": count("SELECT COUNT(*) FROM risk_hit"),
        "held": count('SELECT COUNT(*) FROM "order" WHERE risk_hold'),
        "voided": count("SELECT COUNT(*) FROM commission WHERE kind = 'void'"),
        "cases": count("SELECT COUNT(*) FROM risk_case"),
    }


def gate_latency(settings: Settings, log: Callable[[str], None], n: int = 1000) -> dict[str, Any] | None:
    """p50/p99 (microseconds) of each edge check's Redis round trip, from the gate's own
    `measure(redis, n)` (models/risk_gate_redis.py; scratch keys it removes) on REDIS_URL (its
    database 14 when the URL names none); None when there is no such function or no Redis."""
    from models import risk_gate

    measure_fn = getattr(risk_gate, "measure", None)
    if measure_fn is None:
        try:
            from models import risk_gate_redis
        except ImportError:
            return None
        measure_fn = getattr(risk_gate_redis, "measure", None)
    if measure_fn is None or not settings.REDIS_URL:
        return None
    try:
        from redis import Redis

        client = Redis.from_url(redis_bench_url(settings.REDIS_URL))
        try:
            found = measure_fn(client, n)
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - the gate is an extra; the scoring figures stand
        log(f"gate latency not measured: {type(exc).__name__}")
        return None
    return found if isinstance(found, dict) else {"result": str(found)}


def run(settings: Settings, *, orders: int, creators: int = 10_000, sample: int = 1000,
        fraud_share: float = 0.05, batch: int | None = None, seed: int = 15,
        baseline_budget_s: float = BASELINE_BUDGET_S, per_rule_timings: bool = True,
        log: Callable[[str], None] = _log) -> dict[str, Any]:
    """Build, baseline, score, measure; returns the result the CLI prints as its last line."""
    from models import settlement
    from models.db import db, execute, open_database
    from models.migrations import migrate
    from models.risk_scoring import Thresholds, score_pending
    from models.settlement import PayoutPolicy

    batch = batch or settings.RISK_SCORE_BATCH
    thresholds = Thresholds.from_settings(settings)
    policy = PayoutPolicy(cap_bp=settings.PAYOUT_CAP_BP, upline_depth=settings.UPLINE_DEPTH,
                          refund_window_days=settings.REFUND_WINDOW_DAYS)
    phases: dict[str, float] = {}
    scratch = ScratchDatabase(settings, "risk")
    scratch.create()
    try:
        open_database(scratch.url)
        log(f"scratch database {scratch.name}; planning {creators} creators and {orders} orders")
        t0 = time.perf_counter()
        p = risk_data.plan(orders=orders, creators=creators, fraud_share=fraud_share, seed=seed)
        phases["plan_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        migrate()
        with db.connection_context():
            risk_load.write(p, postgres=scratch.postgres, log=log)
            if scratch.postgres:
                for table in ('"order"', "creator", '"user"', "risk_signal", "risk_user"):
                    execute(f"VACUUM (ANALYZE) {table}")  # as autovacuum would: visibility map set
        phases["load_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with db.connection_context():
            settled = settlement.settle(policy, batch=settings.SETTLE_BATCH)
            if scratch.postgres:
                for table in ('"order"', "settlement", "commission"):
                    execute(f"VACUUM (ANALYZE) {table}")
        phases["settle_s"] = time.perf_counter() - t0
        log(f"loaded in {phases['load_s']:.1f} s, settled {settled.orders} in {phases['settle_s']:.1f} s; "
            f"labels {risk_data.counts(p)}")
        if scratch.postgres:
            log("VACUUM (ANALYZE) run on the loaded tables (as autovacuum would): index-only scans skip the heap")

        picked = random.Random(seed + 1).sample(range(1, orders + 1), min(sample, orders))
        baselined = 0
        with db.connection_context():
            with db.atomic() as txn:
                t0 = time.perf_counter()
                for oid in picked:
                    score_pending(thresholds, order_ids=[oid], batch=1)
                    baselined += 1
                    if time.perf_counter() - t0 > baseline_budget_s:
                        break
                phases["baseline_s"] = time.perf_counter() - t0
                txn.rollback()
        baseline_per_s = baselined / phases["baseline_s"]
        log(f"baseline: {baselined} of {len(picked)} sampled orders one by one in {phases['baseline_s']:.2f} s "
            f"({baseline_per_s:.1f}/s), rolled back")

        before_score_mb = rss_mb()
        with db.connection_context():
            t0 = time.perf_counter()
            result = score_pending(thresholds, batch=batch)
            phases["score_s"] = time.perf_counter() - t0
        orders_per_s = result.orders / phases["score_s"] if phases["score_s"] else 0.0
        log(f"scored {result.orders} orders in {phases['score_s']:.2f} s ({orders_per_s:.0f}/s), "
            f"{result.batches} batches")
        with db.connection_context():
            t0 = time.perf_counter()
            found = measure(p)
            phases["measure_s"] = time.perf_counter() - t0
        timings = _timings(result)  # the engine's own per-rule seconds, when it reports them
        if timings is None and per_rule_timings:
            with db.connection_context():
                t0 = time.perf_counter()
                timings = rule_seconds(batch)
                phases["rule_timing_s"] = time.perf_counter() - t0
        log(f"rule queries over all batches (seconds): {timings}")
        t0 = time.perf_counter()
        gate = gate_latency(settings, log)
        phases["gate_s"] = time.perf_counter() - t0
        if gate is not None:
            log(f"edge checks (microseconds): {gate}")
        out: dict[str, Any] = {
            "orders": orders, "creators": creators, "fraud_share": fraud_share,
            "backend": "postgresql" if scratch.postgres else "sqlite", "batch": batch,
            "settled": settled.orders, "scored_orders": result.orders,
            "orders_per_s": round(orders_per_s, 1),
            "baseline_orders": baselined, "baseline_sample": len(picked),
            "baseline_per_s": round(baseline_per_s, 2),
            "speedup": round(orders_per_s / baseline_per_s, 1) if baseline_per_s else 0.0,
            "recall": found.pop("recall"), "false_positive_rate": found.pop("false_positive_rate"),
            **found,
            "engine": {"hits": result.hits, "held": result.held, "reviewed": result.reviewed,
                       "voided": result.voided, "cases": result.cases, "batches": result.batches},
            "rule_seconds": timings,
            "peak_rss_mb": peak_rss_mb(), "rss_before_score_mb": before_score_mb, "rss_after_score_mb": rss_mb(),
            **{k: round(v, 2) for k, v in phases.items()},
        }
        if gate is not None:
            out["gate"] = gate
        out["targets_met"] = (out["orders_per_s"] >= TARGETS["orders_per_s"] and out["recall"] >= TARGETS["recall"]
                              and out["false_positive_rate"] <= TARGETS["false_positive_rate"])
        return out
    finally:
        scratch.remove()
