"""Settlement: paid orders -> commission lines and ledger entries, in batches.

Life cycle of an order's commission (the `settlement.state` of the order):
    none        nobody earns anything on it (no seller, or the cap left nothing)
    pending     lines written at settlement; the money sits in `creator:X:pending`
    available   after the refund window (REFUND_WINDOW_DAYS from payment) unless held for risk;
                moved to `creator:X:available`, from where it can be withdrawn
    reversed    refunded or found fraudulent while pending: the pending entry is reversed
    clawed_back refunded or fraudulent after availability: taken back from `available`, which
                may go below zero (a debt netted against future earnings, never capped)

Reversal (refunds, fraud) and the risk hold are in models/reversals.py; `verify` here
cross-checks the lines, the settlement states and the ledger.

Coupons (issue 14): commission is on what the buyer paid; a platform coupon stays the
`expense:discounts` the payment booked. A creator's coupon D is the seller's (commission.py
rule 5): split on paid + D, then a line of kind `coupon`, amount -r (the only negative kind),
r = min(D, markup + sale). Payout = the lines' sum (>= 0; `pending` even at 0 when lines exist).
Ledger legs: `creator:X:pending` -(X's lines), `expense:commission` +(positive lines),
`expense:discounts` -r. Orders awaiting their group-buy team (`group_hold`) are not settled.

How it stays exact and fast:
- one batch = one database transaction under one lock: read up to SETTLE_BATCH unsettled orders
  with their seller and two uplines (one query, one row per order), compute every payout with
  the pure `commission.split`, insert one `settlement` row per order and one `commission` line
  per (order, beneficiary, kind), and post ONE ledger transaction for the batch with one leg per
  creator. Rows, not jobs, per order.
- idempotent: `settlement.order_id` is a primary key and `commission (order_id, creator_id,
  kind)` is unique; a batch killed half-way rolls back whole, and a re-run settles exactly the
  same orders to exactly the same lines and per-creator amounts (its batches may be cut
  elsewhere). A batch's ledger key names its first and last order; an order is settled once,
  so no key can come round twice.
- the rows go in with COPY on PostgreSQL and executemany on SQLite; the unsettled-order scan
  starts at the cursor on both sides of its anti-join. Measured with `qianxing bench settle`
  (PostgreSQL 15, 2 cores, 10,000 creators, batches of 5,000): ~34,000 orders/s over a
  million orders, ~100x the naive per-order ORM loop.
- `settlement` and `commission` keep no foreign keys to `order`: at a million rows a minute the
  per-row constraint check is the single largest cost, and both tables are only ever written
  from rows just read from `order` under the settlement lock.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import peewee as pw

from models import failures, ledger
from models.bulk import insert_rows
from models.commission import OrderFacts, creator_funded, seller_rate, split
from models.db import BaseModel, db, execute, is_postgres, placeholders, utcnow
from models.levels import Rates
from models.network import SOLD

SETTLE_LOCK = 742012  # pg_advisory_xact_lock id shared by every settlement writer


class SettleState(StrEnum):
    NONE = "none"
    PENDING = "pending"
    AVAILABLE = "available"
    REVERSED = "reversed"
    CLAWED_BACK = "clawed_back"


class LineKind(StrEnum):
    MARKUP = "markup"
    SALE = "sale"
    TEAM1 = "team1"
    TEAM2 = "team2"
    COUPON = "coupon"  # negative: the seller's part of their own coupon's discount
    VOID = "void"  # negative: a beneficiary's whole net on the order, voided by risk (self-purchase)


_MARKUP, _SALE, _TEAM1, _TEAM2, _COUPON, _VOID = (k.value for k in LineKind)  # plain str: read per order line


class Settlement(BaseModel):
    order_id = pw.BigIntegerField(primary_key=True)
    seller_id = pw.BigIntegerField(null=True)
    state = pw.CharField(max_length=12)
    payout_fen = pw.BigIntegerField()
    settled_at = pw.DateTimeField()
    released_at = pw.DateTimeField(null=True)
    reversed_at = pw.DateTimeField(null=True)


class Commission(BaseModel):
    """One payout line; append-only (the migration installs triggers)."""

    order_id = pw.BigIntegerField()
    creator_id = pw.BigIntegerField(index=True)
    kind = pw.CharField(max_length=8)
    amount_fen = pw.BigIntegerField()
    created_at = pw.DateTimeField()

    class Meta:
        indexes = ((("order_id", "creator_id", "kind"), True),)


@dataclass(frozen=True)
class PayoutPolicy:
    cap_bp: int
    upline_depth: int
    refund_window_days: int


@dataclass
class SettleResult:
    orders: int = 0  # orders settled by this call
    lines: int = 0
    paid_fen: int = 0
    batches: int = 0


_ORDERS = (
    "SELECT o.id, o.amount_fen, o.markup_fen, o.cost_fen, c.id, s.commission_bp, c.rank, "
    "       p.id, p.rank, g.id, g.rank, o.creator_discount_fen "
    'FROM "order" o JOIN sku s ON s.id = o.sku_id '
    "LEFT JOIN creator c ON c.id = o.seller_id AND c.active "
    "LEFT JOIN creator p ON p.id = c.parent_id AND p.active "
    "LEFT JOIN creator g ON g.id = c.grandparent_id AND g.active "
    "WHERE o.id > %s AND o.status IN (%s, %s) AND NOT o.group_hold "
    # The repeated bound lets PostgreSQL start its merge anti-join at the cursor instead of at
    # the first settlement ever written (which made every batch slower than the one before).
    "AND NOT EXISTS (SELECT 1 FROM settlement st WHERE st.order_id = o.id AND st.order_id > %s)"
)


def lock() -> None:
    """Serialise settlement writers (SQLite transactions are IMMEDIATE already)."""
    if is_postgres():
        execute("SELECT pg_advisory_xact_lock(%s)", (SETTLE_LOCK,))


def compute_lines(row: tuple, rates: Rates, policy: PayoutPolicy) -> list[tuple[int, str, int]]:
    """(creator_id, kind, amount) lines of one order row as read by `_ORDERS`: the positive
    lines of `commission.split`, and the seller's negative `coupon` line when the order carries
    a creator-funded discount (commission.py rule 5)."""
    _, amount, markup, cost, seller, sku_bp, s_rank, up1, up1_rank, up2, up2_rank, creator_discount = row
    if seller is None:
        return []
    facts = OrderFacts(
        amount_fen=amount + creator_discount, markup_fen=markup, cost_fen=cost,
        seller_rate_bp=seller_rate(sku_bp, rates.own.get(s_rank, 0)),
        upline1_rate_bp=rates.team1.get(up1_rank, 0) if up1 is not None else 0,
        upline2_rate_bp=rates.team2.get(up2_rank, 0) if up2 is not None else 0,
    )
    got = split(facts, cap_bp=policy.cap_bp, upline_depth=policy.upline_depth)
    lines = [(seller, _MARKUP, got.markup), (seller, _SALE, got.sale),
             (up1, _TEAM1, got.team1), (up2, _TEAM2, got.team2)]
    found = [line for line in lines if line[2] > 0]
    if creator_discount and (funded := creator_funded(got, creator_discount)):
        found.append((seller, _COUPON, -funded))
    return found


def unsettled_count(*, live_id: int | None = None) -> int:
    """Paid orders (of one live session) that `settle` would pick up now: for progress bars."""
    extra, params = "", []
    if live_id is not None:
        extra, params = " AND o.live_id = %s", [live_id]
    return int(execute('SELECT COUNT(*) FROM "order" o WHERE o.status IN (%s, %s) AND NOT o.group_hold '
                       "AND NOT EXISTS (SELECT 1 FROM settlement st WHERE st.order_id = o.id)" + extra,
                       (*SOLD, *params)).fetchone()[0])


def settle(policy: PayoutPolicy, *, live_id: int | None = None, order_ids: Iterable[int] | None = None,
           batch: int = 5000, progress: Callable[[int], None] | None = None,
           retry_intervals: Sequence[int] = failures.DEFAULT_INTERVALS,
           retry_set_aside: bool = False) -> SettleResult:
    """Settle every paid, unsettled order (or those of one live session, or the given ids).
    Safe to run concurrently and repeatedly.

    A batch that fails is split until the orders that fail alone are found; those are set
    aside (models/failures.py, retried after `retry_intervals`) and the rest settle. Orders set
    aside are skipped unless `retry_set_aside` (their own retry)."""
    rates = Rates.load()
    result = SettleResult()
    wanted = sorted(set(order_ids)) if order_ids is not None else None
    cursor = 0
    while True:
        extra, params = "", []
        if live_id is not None:
            extra += " AND o.live_id = %s"
            params.append(live_id)
        if wanted is not None:
            start = bisect.bisect_right(wanted, cursor)
            chunk = wanted[start:start + batch]
            if not chunk:
                break
            extra += f" AND o.id IN ({placeholders(chunk)})"
            params += chunk
        rows, todo, set_aside = [], [], []
        try:
            with db.atomic():
                lock()
                rows = execute(_ORDERS + extra + " ORDER BY o.id LIMIT %s",
                               (cursor, *SOLD, cursor, *params, batch)).fetchall()
                if rows and not retry_set_aside:
                    skipped = failures.parked(failures.SETTLEMENT, [r[0] for r in rows])
                    todo = [r for r in rows if r[0] not in skipped]
                else:
                    todo = rows
                if todo:
                    _write_batch(todo, rates, policy, result)
        except Exception as exc:
            if not todo or failures.is_unavailable(exc):
                raise
            set_aside = failures.isolate(failures.SETTLEMENT, [r[0] for r in todo],
                                         lambda ids: _settle_ids(ids, rates, policy, result),
                                         intervals=retry_intervals, failed=exc)
        if retry_set_aside and rows:
            failures.resolve(failures.SETTLEMENT, [r[0] for r in rows if r[0] not in set_aside])
        if wanted is not None and not rows:
            cursor = chunk[-1]
            continue
        if not rows:
            break
        cursor = rows[-1][0]
        if progress is not None:
            progress(len(rows))
    return result


def _settle_ids(order_ids: list[int], rates: Rates, policy: PayoutPolicy, result: SettleResult) -> None:
    """Settle exactly these orders (those still unsettled) in one transaction: a part of a
    batch that failed (see `settle`)."""
    with db.atomic():
        lock()
        rows = execute(_ORDERS + f" AND o.id IN ({placeholders(order_ids)}) ORDER BY o.id",
                       (0, *SOLD, 0, *order_ids)).fetchall()
        if rows:
            _write_batch(rows, rates, policy, result)


def _write_batch(rows: list[tuple], rates: Rates, policy: PayoutPolicy, result: SettleResult) -> None:
    now = utcnow()
    stamp = now.isoformat(" ")  # as peewee stores a DateTimeField; formatted once per batch
    settlements: list[tuple] = []
    lines: list[tuple] = []
    per_creator: dict[int, int] = defaultdict(int)
    funded = 0  # the coupon lines' sum: minus what sellers funded of their own coupons
    for row in rows:
        got = compute_lines(row, rates, policy)
        total = sum(amount for _, _, amount in got)
        # `pending` whenever lines were written: a creator coupon may bring the payout to 0
        settlements.append((row[0], row[4], SettleState.PENDING.value if got else SettleState.NONE.value,
                            total, stamp))
        for creator_id, kind, amount in got:
            lines.append((row[0], creator_id, kind, amount, stamp))
            per_creator[creator_id] += amount
            if kind == _COUPON:
                funded += amount
    insert_rows("settlement", ("order_id", "seller_id", "state", "payout_fen", "settled_at"), settlements)
    insert_rows("commission", ("order_id", "creator_id", "kind", "amount_fen", "created_at"), lines)
    total = sum(per_creator.values())
    if lines:
        legs = {ledger.creator_account(c, ledger.PENDING): -v for c, v in per_creator.items()}
        legs[ledger.COMMISSION_EXPENSE] = total - funded
        legs[ledger.DISCOUNT_EXPENSE] = funded
        if ledger.post_bulk(f"settle:o{rows[0][0]}-{rows[-1][0]}", "commission", legs,
                            memo=f"{len(rows)} orders", created_at=now) is None:
            raise RuntimeError("settlement batch key already posted")  # rolls the batch back
    result.orders += len(rows)
    result.lines += len(lines)
    result.paid_fen += total
    result.batches += 1


def sums_by_creator(order_ids: list[int]) -> dict[int, int]:
    """creator -> the sum of their commission lines on these orders (coupon lines included:
    what the creator is owed)."""
    rows = execute(f"SELECT creator_id, SUM(amount_fen) FROM commission "
                   f"WHERE order_id IN ({placeholders(order_ids)}) GROUP BY creator_id",
                   order_ids).fetchall()
    return {c: int(v) for c, v in rows}


def coupon_sum(order_ids: list[int]) -> int:
    """The sum of the coupon lines of these orders (<= 0): minus what their sellers funded of
    their own coupons; settlement posted it to `expense:discounts`, the commission expense
    carries the other lines."""
    return int(execute(f"SELECT COALESCE(SUM(amount_fen), 0) FROM commission WHERE kind = %s "
                       f"AND order_id IN ({placeholders(order_ids)})", (_COUPON, *order_ids)).fetchone()[0])


def release_due(policy: PayoutPolicy, *, now: dt.datetime | None = None, batch: int = 5000,
                require_scored: bool = False) -> int:
    """Move pending commission of orders paid more than the refund window ago, not refunded and
    not under a risk hold, to available. Returns the orders released. `require_scored`: only
    orders the risk engine has scored (a `risk_order_score` row; models/risk_scoring.py)."""
    now = now or utcnow()
    cutoff = Settlement.settled_at.db_value(now - dt.timedelta(days=policy.refund_window_days))
    released, after = 0, 0
    scored = (" AND EXISTS (SELECT 1 FROM risk_order_score r WHERE r.order_id = st.order_id)"
              if require_scored else "")
    while True:
        with db.atomic():
            lock()
            # `after` skips what earlier batches released (still dead entries in the partial
            # index until vacuum) and what they passed over (held or not yet due this run).
            ids = [r[0] for r in execute(
                'SELECT st.order_id FROM settlement st JOIN "order" o ON o.id = st.order_id '
                "WHERE st.state = %s AND st.order_id > %s AND o.paid_at <= %s AND NOT o.risk_hold "
                "AND o.status IN (%s, %s)" + scored + " ORDER BY st.order_id LIMIT %s",
                (SettleState.PENDING.value, after, cutoff, *SOLD, batch)).fetchall()]
            if not ids:
                return released
            execute(f"UPDATE settlement SET state = %s, released_at = %s WHERE order_id IN "
                    f"({placeholders(ids)})",
                    (SettleState.AVAILABLE.value, Settlement.settled_at.db_value(now), *ids))
            legs: dict[str, int] = {}
            for creator_id, amount in sums_by_creator(ids).items():
                legs[ledger.creator_account(creator_id, ledger.PENDING)] = amount
                legs[ledger.creator_account(creator_id, ledger.AVAILABLE)] = -amount
            ledger.post_bulk(f"release:o{ids[0]}-{ids[-1]}", "release", legs,
                             memo=f"{len(ids)} orders", created_at=now)
        released += len(ids)
        after = ids[-1]
        if len(ids) < batch:
            return released


def verify() -> list[str]:
    """Cross-checks between the commission lines, the settlement states and the ledger; each
    problem found is one message (none on a healthy database):
    - each settlement's payout is the sum of its lines, `none` exactly when it has no lines,
      never negative, 0 outside `none` only when a coupon or void line took it all, and no line exists
      without a settlement; no creator's lines on an order sum below zero;
    - the commission expense equals the positive lines still owed (pending + available);
    - the discount expense equals the coupon discounts of the sold orders (their payments
      booked them) less what sellers funded in the coupon lines still owed;
    - each creator's pending bucket equals their lines in pending orders;
    - what release, clawback and risk-void entries put in each creator's available bucket
      equals their lines in available orders (withdrawals and rewards move that bucket too, so
      only these kinds are summed);
    - a void line (risk, self-purchase) is exactly minus what its creator earned on the order
      otherwise, so the creator's lines on that order sum to zero."""
    problems: list[str] = []
    for order_id, payout, lines in execute(
            "SELECT st.order_id, st.payout_fen, COALESCE(SUM(c.amount_fen), 0) FROM settlement st "
            "LEFT JOIN commission c ON c.order_id = st.order_id "
            "GROUP BY st.order_id, st.payout_fen HAVING st.payout_fen <> COALESCE(SUM(c.amount_fen), 0) "
            "LIMIT 20").fetchall():
        problems.append(f"order {order_id}: settlement says {payout} fen, lines sum to {lines}")
    for order_id, state, payout in execute(
            "SELECT order_id, state, payout_fen FROM settlement st "
            "WHERE (state = %s AND payout_fen <> 0) OR payout_fen < 0 OR (state <> %s AND payout_fen = 0 "
            "AND NOT EXISTS (SELECT 1 FROM commission c WHERE c.order_id = st.order_id AND c.kind IN (%s, %s))) "
            "LIMIT 20", (SettleState.NONE.value, SettleState.NONE.value, _COUPON, _VOID)).fetchall():
        problems.append(f"order {order_id}: state {state} with a payout of {payout} fen")
    for (order_id,) in execute(
            "SELECT c.order_id FROM commission c JOIN settlement st ON st.order_id = c.order_id "
            "WHERE c.kind = %s AND st.state = %s LIMIT 20", (_COUPON, SettleState.NONE.value)).fetchall():
        problems.append(f"order {order_id}: state none with commission lines")
    for order_id, creator_id, net in execute(
            "SELECT order_id, creator_id, SUM(amount_fen) FROM commission WHERE order_id IN "
            "(SELECT order_id FROM commission WHERE kind = %s) GROUP BY order_id, creator_id "
            "HAVING SUM(amount_fen) < 0 LIMIT 20", (_COUPON,)).fetchall():
        problems.append(f"order {order_id}: creator {creator_id} earns {net} fen")
    for order_id, creator_id, net in execute(
            "SELECT c.order_id, c.creator_id, SUM(c.amount_fen) FROM commission c JOIN commission v "
            "ON v.order_id = c.order_id AND v.creator_id = c.creator_id AND v.kind = %s "
            "GROUP BY c.order_id, c.creator_id HAVING SUM(c.amount_fen) <> 0 LIMIT 20", (_VOID,)).fetchall():
        problems.append(f"order {order_id}: creator {creator_id} was voided but earns {net} fen")
    for (order_id,) in execute(
            "SELECT DISTINCT c.order_id FROM commission c LEFT JOIN settlement st ON st.order_id = c.order_id "
            "WHERE st.order_id IS NULL LIMIT 20").fetchall():
        problems.append(f"order {order_id}: commission lines without a settlement")
    by_state = dict(execute(
        "SELECT st.state, COALESCE(SUM(c.amount_fen), 0) FROM settlement st "
        "JOIN commission c ON c.order_id = st.order_id GROUP BY st.state").fetchall())
    live = int(by_state.get(SettleState.PENDING.value, 0)) + int(by_state.get(SettleState.AVAILABLE.value, 0))
    funded = int(execute(
        "SELECT COALESCE(SUM(c.amount_fen), 0) FROM commission c JOIN settlement st ON st.order_id = c.order_id "
        "WHERE c.kind = %s AND st.state IN (%s, %s)",
        (_COUPON, SettleState.PENDING.value, SettleState.AVAILABLE.value)).fetchone()[0])
    expense = ledger.balance(ledger.COMMISSION_EXPENSE)
    if expense != live - funded:
        problems.append(f"commission expense {expense} fen, but live commission lines sum to {live - funded}")
    discounts = ledger.balance(ledger.DISCOUNT_EXPENSE)
    booked = int(execute('SELECT COALESCE(SUM(discount_fen), 0) FROM "order" WHERE discount_fen <> 0 '
                         "AND status IN (%s, %s)", SOLD).fetchone()[0])
    if discounts != booked + funded:
        problems.append(f"discount expense {discounts} fen, but sold orders' discounts {booked} fen "
                        f"less {-funded} fen funded by sellers make {booked + funded}")
    for state, bucket, kinds in ((SettleState.PENDING, ledger.PENDING, None),
                                 (SettleState.AVAILABLE, ledger.AVAILABLE, ("release", "clawback", "risk_void"))):
        owed = execute(
            "SELECT c.creator_id, SUM(c.amount_fen) FROM commission c JOIN settlement st "
            "ON st.order_id = c.order_id WHERE st.state = %s GROUP BY c.creator_id", (state.value,)).fetchall()
        expected = {ledger.creator_account(c, bucket): -int(v) for c, v in owed}
        if kinds is None:
            actual = dict(execute("SELECT account, SUM(amount_fen) FROM posting WHERE account LIKE %s "
                                  "GROUP BY account", (f"creator:%:{bucket}",)).fetchall())
        else:
            actual = dict(execute(
                "SELECT p.account, SUM(p.amount_fen) FROM posting p JOIN ledger_transaction t ON t.id = p.txn_id "
                f"WHERE p.account LIKE %s AND t.kind IN ({placeholders(kinds)}) GROUP BY p.account",
                (f"creator:%:{bucket}", *kinds)).fetchall())
        for account in sorted(set(expected) | set(actual)):
            if int(actual.get(account) or 0) != expected.get(account, 0):
                problems.append(f"{account}: ledger {int(actual.get(account) or 0)}, "
                                f"{bucket} lines {expected.get(account, 0)}")
    return problems[:50]
