"""Batched, set-based risk scoring of paid orders, and the periodic creator rules (issue 15).

Pipeline: an order is paid -> settlement writes its pending lines -> `score_pending` scores it
-> release (`settlement.release_due(require_scored=True)`) may make its commission available.

`score_pending` takes settled, unscored sold orders in id order, `batch` per transaction (under
one advisory lock, so concurrent scorers queue rather than collide). Per batch:
- each enabled order rule (models/risk_order_rules.py) is one set-based query over the batch;
- subjects on the allowlist (risk_allow: `creator:<seller>` or `user:<buyer>`, the rule's code,
  `until` in the future, not revoked) skip that rule;
- one `risk_hit` per (order, rule version), written with COPY on PostgreSQL;
- the score of an order is the sum of its hits' weights; outcome review >= thresholds.review,
  hold >= thresholds.hold, else allow; one `risk_order_score` row per order marks it scored;
- hold and review set `order.risk_hold` (release skips the order) and add an item to the
  seller's case (models/risk_cases.attach; orders without a seller keep their hits only);
- self-purchase voids what the matched beneficiaries earn on the order
  (models/reversals.void_lines); the order and its other beneficiaries stand.
Idempotent: an order is scored once (risk_order_score's primary key, in the same transaction
as its hits); a batch killed half-way rolls back whole and the re-run writes the same rows.

`score_creators` runs the creator rules (refund_abuse) once per day per creator: the hit's
period is the day, so a second run the same day changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from models import events, reversals, risk_cases, risk_rules
from models.bulk import insert_rows
from models.db import db, execute, is_postgres, placeholders, utcnow
from models.network import SOLD
from models.risk_order_rules import ORDER_RULES, Batch
from models.risk_tables import Outcome, Scope
from models.settlement import SettleState

SCORE_LOCK = 742015  # pg_advisory_xact_lock id of the scorers
ACTOR = "system:risk"
CREATOR_RULES = ("refund_abuse",)


@dataclass(frozen=True)
class Thresholds:
    hold: int = 50
    review: int = 80

    @classmethod
    def from_settings(cls, settings: Any) -> Thresholds:
        """RISK_HOLD_SCORE / RISK_REVIEW_SCORE (as WithdrawPolicy.from_settings)."""
        return cls(hold=settings.RISK_HOLD_SCORE, review=settings.RISK_REVIEW_SCORE)


@dataclass
class ScoreResult:
    orders: int = 0  # orders scored by this call
    hits: int = 0
    held: int = 0  # orders put under a risk hold (hold or review)
    reviewed: int = 0
    voided: int = 0  # (order, beneficiary) pairs whose lines were voided (self-purchase)
    cases: int = 0  # new cases
    batches: int = 0
    rule_seconds: dict[str, float] = field(default_factory=dict)  # time spent per rule (and "write")


def outcome_of(score: int, thresholds: Thresholds) -> Outcome:
    if score >= thresholds.review:
        return Outcome.REVIEW
    if score >= thresholds.hold:
        return Outcome.HOLD
    return Outcome.ALLOW


def allowed(now: dt.datetime) -> set[tuple[str, int, str]]:
    """(subject kind, subject id, rule code) of the allowlist entries in force."""
    stamp = _stamp(now)
    return {(k, int(i), c) for k, i, c in execute(
        "SELECT subject_kind, subject_id, rule_code FROM risk_allow WHERE until > %s AND revoked_at IS NULL",
        (stamp,)).fetchall()}


def _stamp(moment: dt.datetime) -> str:
    return moment.isoformat(" ")  # as peewee stores a DateTimeField


def _lock() -> None:
    if is_postgres():
        execute("SELECT pg_advisory_xact_lock(%s)", (SCORE_LOCK,))


def _evidence(ev: dict[str, Any]) -> str:
    # ints, hex prefixes and fixed words only: nothing COPY's text format would escape
    return json.dumps(ev, sort_keys=True, separators=(",", ":"))


_CANDIDATES = (
    'SELECT o.id, o.user_id, o.seller_id FROM "order" o JOIN settlement st ON st.order_id = o.id '
    "AND st.order_id > %s WHERE o.id > %s AND o.status IN (%s, %s) "
    # bounded anti-join, as settlement._ORDERS: the scan starts at the cursor on both sides
    "AND NOT EXISTS (SELECT 1 FROM risk_order_score r WHERE r.order_id = o.id AND r.order_id > %s)"
)


def score_pending(thresholds: Thresholds, *, batch: int = 5000, order_ids: list[int] | None = None,
                  now: dt.datetime | None = None) -> ScoreResult:
    """Score every settled, unscored paid order (or those of `order_ids`), `batch` orders per
    transaction; idempotent (risk_order_score / risk_hit unique keys)."""
    result = ScoreResult()
    wanted = sorted(set(order_ids)) if order_ids is not None else None
    cursor = 0
    run: dict = {}  # what the rules keep across this call's batches (the creators' tree)
    while True:
        extra, params = "", []
        if wanted is not None:
            chunk = [i for i in wanted if i > cursor][:batch]
            if not chunk:
                break
            extra, params = f" AND o.id IN ({placeholders(chunk)})", chunk
        with db.atomic():
            _lock()
            rows = execute(_CANDIDATES + extra + " ORDER BY o.id LIMIT %s",
                           (cursor, cursor, *SOLD, cursor, *params, batch)).fetchall()
            if rows:
                # the rules read the id range (lo, hi]: as tight as the batch's first and last order
                _score_batch(Batch(lo=rows[0][0] - 1, hi=rows[-1][0], orders={r[0]: (r[1], r[2]) for r in rows},
                                   run=run),
                             thresholds, now or utcnow(), result)
        if not rows:
            if wanted is None:
                break
            cursor = chunk[-1]
            continue
        cursor = rows[-1][0]
    return result


def _score_batch(batch: Batch, thresholds: Thresholds, now: dt.datetime, result: ScoreResult) -> None:
    rules = risk_rules.current(Scope.ORDER)
    skip = allowed(now)
    stamp = _stamp(now)
    hits: list[tuple] = []
    weights: dict[int, int] = defaultdict(int)
    voids: list[tuple[int, int]] = []
    for code, check in ORDER_RULES.items():
        rule = rules.get(code)
        if rule is None or not rule.enabled:
            continue
        started = time.perf_counter()
        found = check(batch, rule.params)
        result.rule_seconds[code] = result.rule_seconds.get(code, 0.0) + time.perf_counter() - started
        for order_id, ev in sorted(found.items()):
            buyer, seller = batch.orders[order_id]
            if ("user", buyer, code) in skip or (seller is not None and ("creator", seller, code) in skip):
                continue
            creator_id = ev.get("team_of", seller)
            hits.append(("order", order_id, rule.id, code, rule.weight, "", creator_id, _evidence(ev), stamp))
            weights[order_id] += rule.weight
            if code == "self_purchase":
                voids += [(order_id, b["creator_id"]) for b in ev["beneficiaries"]]
    started = time.perf_counter()
    insert_rows("risk_hit", ("subject_kind", "subject_id", "rule_id", "code", "weight", "period", "creator_id",
                             "evidence", "created_at"), hits)
    outcomes = {oid: outcome_of(weights.get(oid, 0), thresholds) for oid in batch.orders}
    insert_rows("risk_order_score", ("order_id", "score", "outcome", "scored_at"),
                [(oid, weights.get(oid, 0), outcomes[oid].value, stamp) for oid in sorted(batch.orders)])
    if voids:
        result.voided += reversals.void_lines(voids, reason="risk: self_purchase", actor=ACTOR)["voided"]
    held = sorted(oid for oid, out in outcomes.items() if out != Outcome.ALLOW)
    if held:
        _hold(held, {oid: outcomes[oid].value for oid in held}, weights)
        hit_ids = _hit_ids("order", held)
        fen = _pending_fen(held)
        items = [risk_cases.CaseItem(creator_id=batch.orders[oid][1], outcome=outcomes[oid].value,
                                     score=weights[oid], hit_ids=hit_ids.get(oid, []), held_fen=fen.get(oid, 0))
                 for oid in held if batch.orders[oid][1] is not None]
        if items:
            result.cases += risk_cases.attach(items, now=now)
    result.rule_seconds["write"] = result.rule_seconds.get("write", 0.0) + time.perf_counter() - started
    result.orders += len(batch.orders)
    result.hits += len(hits)
    result.held += len(held)
    result.reviewed += sum(1 for oid in held if outcomes[oid] == Outcome.REVIEW)
    result.batches += 1


def _hold(order_ids: list[int], outcome: dict[int, str], weights: dict[int, int]) -> None:
    execute(f'UPDATE "order" SET risk_hold = %s WHERE id IN ({placeholders(order_ids)})', (True, *order_ids))
    execute(*events.many_statement("order.risk_hold", ACTOR, [
        (f"order:{oid}", {"reason": f"risk: {outcome[oid]}", "score": weights.get(oid, 0)}) for oid in order_ids]))


def _hit_ids(kind: str, subject_ids: list[int], period: str = "") -> dict[int, list[int]]:
    found: dict[int, list[int]] = defaultdict(list)
    for hit_id, subject in execute(
            f"SELECT id, subject_id FROM risk_hit WHERE subject_kind = %s AND subject_id IN "
            f"({placeholders(subject_ids)}) AND period = %s ORDER BY id", (kind, *subject_ids, period)).fetchall():
        found[subject].append(hit_id)
    return found


def _pending_fen(order_ids: list[int]) -> dict[int, int]:
    """The commission still pending on these orders (all beneficiaries, voids netted)."""
    if not order_ids:
        return {}
    return {oid: int(v) for oid, v in execute(  # the payout is the lines' sum (settlement.verify)
        f"SELECT order_id, payout_fen FROM settlement WHERE order_id IN ({placeholders(order_ids)}) AND state = %s",
        (*order_ids, SettleState.PENDING.value)).fetchall()}


def score_creators(thresholds: Thresholds, *, now: dt.datetime | None = None) -> ScoreResult:
    """The creator rules (refund_abuse): a seller with >= min_orders sold or refunded orders
    paid in the last `days`, of which refunded * 10000 > max_refund_rate_bp * all, gets one hit
    for the day (period YYYY-MM-DD; evidence: counts, rate, the pending orders held). Those
    pending orders are put under a risk hold and the creator's case gets the item (when the
    weight reaches the hold threshold). A second run on the same day changes nothing."""
    now = now or utcnow()
    result = ScoreResult()
    rule = risk_rules.current(Scope.CREATOR).get("refund_abuse")
    if rule is None or not rule.enabled:
        return result
    p = rule.params
    period = now.strftime("%Y-%m-%d")
    since = _stamp(now - dt.timedelta(days=int(p["days"])))
    with db.atomic():
        _lock()
        found = execute(
            "SELECT o.seller_id, COUNT(*), SUM(CASE WHEN o.status = 'refunded' THEN 1 ELSE 0 END) "
            'FROM "order" o WHERE o.seller_id IS NOT NULL AND o.paid_at >= %s AND o.status IN (%s, %s, %s) '
            "GROUP BY o.seller_id HAVING COUNT(*) >= %s "
            "AND SUM(CASE WHEN o.status = 'refunded' THEN 1 ELSE 0 END) * 10000 > %s * COUNT(*) "
            "ORDER BY o.seller_id",
            (since, *SOLD, "refunded", int(p["min_orders"]), int(p["max_refund_rate_bp"]))).fetchall()
        skip = allowed(now)
        found = [r for r in found if ("creator", r[0], "refund_abuse") not in skip]
        if not found:
            return result
        sellers = [r[0] for r in found]
        done = {s for (s,) in execute(
            f"SELECT subject_id FROM risk_hit WHERE subject_kind = 'creator' AND subject_id IN "
            f"({placeholders(sellers)}) AND rule_id = %s AND period = %s", (*sellers, rule.id, period)).fetchall()}
        found = [r for r in found if r[0] not in done]
        if not found:
            return result
        pending: dict[int, list[int]] = defaultdict(list)
        for oid, seller in execute(
                'SELECT o.id, o.seller_id FROM "order" o JOIN settlement st ON st.order_id = o.id '
                f"WHERE o.seller_id IN ({placeholders([r[0] for r in found])}) AND st.state = %s "
                f"AND o.status IN (%s, %s) ORDER BY o.id",
                (*[r[0] for r in found], SettleState.PENDING.value, *SOLD)).fetchall():
            pending[seller].append(oid)
        stamp = _stamp(now)
        out = outcome_of(rule.weight, thresholds)
        hits = []
        for seller, total, refunded in found:
            ev = {"orders": pending.get(seller, []), "sold_or_refunded": int(total), "refunded": int(refunded),
                  "rate_bp": int(refunded) * 10_000 // int(total), "days": int(p["days"])}
            hits.append(("creator", seller, rule.id, "refund_abuse", rule.weight, period, seller, _evidence(ev), stamp))
        insert_rows("risk_hit", ("subject_kind", "subject_id", "rule_id", "code", "weight", "period", "creator_id",
                                 "evidence", "created_at"), hits)
        result.hits = len(hits)
        if out == Outcome.ALLOW:
            return result
        held = sorted(oid for seller, *_ in found for oid in pending.get(seller, []))
        if held:
            _hold(held, dict.fromkeys(held, out.value), dict.fromkeys(held, rule.weight))
        ids = _hit_ids("creator", [r[0] for r in found], period)
        fen = _pending_fen(held)
        items = [risk_cases.CaseItem(creator_id=seller, outcome=out.value, score=rule.weight,
                                     hit_ids=ids.get(seller, []),
                                     held_fen=sum(fen.get(oid, 0) for oid in pending.get(seller, [])))
                 for seller, *_ in found]
        result.cases = risk_cases.attach(items, now=now)
        result.held = len(held)
        result.reviewed = len(held) if out == Outcome.REVIEW else 0
    return result
