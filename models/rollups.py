"""The operator dashboard's figures: `refresh` keeps the rollups current (the periodic job
tasks.rollups.refresh_rollups, every minute) and `dashboard` reads them, so a page view reads a
few hundred rollup rows and never scans the orders or the ledger. `live_counts` gives the
figures that are cheap to count at view time (each an indexed query over the few rows it counts).

Days are Asia/Shanghai days (`TIMEZONE`). The rollups agree with the ledger: GMV is what the
payments posted to `income:sales`, refunds what the refunds took back from it, and the
commission totals are the balances of the creator buckets (`creator:X:pending|available|...`)
summed over every creator. How the tables are kept and recomputed: models/rollup_store.py.

What a run does, all of it idempotent (RQ runs a job at least once; two runs, even side by side,
leave the same numbers):
- orders: a payment stamps `paid_at`, a refund `refunded_at`, with the clock of that moment. The
  days touched since the last run are those holding such a stamp at or after the last run's
  start minus CLOCK_LAG (a transaction's commit delay, the clocks of different hosts); they are
  recomputed whole. Without a watermark (the first run after deploy, or `full=True`) every day
  of the history is, DAYS_PER_BATCH days per transaction.
- activity events and ledger postings: the id blocks above the source's watermark (see
  models/rollup_store.py for why it lags COMMIT_LAG behind), one block per transaction; the
  whole table without a watermark. The runs shortly after the first one (for COMMIT_LAG) scan
  from the start again, until the first watermark is safe.
Memory stays bounded by a batch's SKUs, sellers and days, whatever the number of orders.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import peewee as pw

from models import ledger
from models import rollup_store as store
from models.catalog import Sku
from models.db import db, execute, utcnow
from models.failures import DELIVERY, SETTLEMENT
from models.network import Creator
from models.rollup_store import DailyMetric, RollupState, day_batches, local_day
from models.withdrawals import WithdrawalState

TIMEZONE = store.TIMEZONE
CLOCK_LAG = dt.timedelta(minutes=10)  # payment/refund stamps are looked for this far before the last run
COMMIT_LAG = dt.timedelta(minutes=2)  # the longest a writer of postings or activity keeps a transaction open
SERIES_DAYS = 30
TOP_N = 10
WAITING = (WithdrawalState.REVIEW, WithdrawalState.APPROVED, WithdrawalState.PAYING)

__all__ = ["TIMEZONE", "CommissionTotals", "Dashboard", "DailyMetric", "LiveCounts", "Period",
           "RollupState", "dashboard", "live_counts", "local_day", "refresh"]


# ---- keeping the rollups current --------------------------------------------------------------

def refresh(now: dt.datetime | None = None, *, full: bool = False,
            progress: Callable[[], None] | None = None) -> int:
    """Bring the rollups up to date; returns the number of order days recomputed.

    `now` (naive UTC, default the clock) is when this run starts; `full` recomputes the whole
    history (what the first run does by itself); `progress` is called after each batch (the
    job renews its lease there). Needs an open connection; each batch is its own transaction."""
    now = now or utcnow()
    tick = progress or (lambda: None)
    today = local_day(now)
    first = today - dt.timedelta(days=SERIES_DAYS - 1)
    days = _refresh_orders(now, first, full, tick)
    if days or store.top_day() != today:
        with db.atomic():
            store.lock()
            store.recompute_top(first, today, TOP_N)
    for source in store.BLOCK_SOURCES:
        _refresh_blocks(source, now, full, tick)
    return days


def _refresh_orders(now: dt.datetime, breakdown_from: dt.date, full: bool, tick: Callable[[], None]) -> int:
    seen = store.state(store.ORDERS_SOURCE)
    since = None if seen is None or full else seen.ran_at - CLOCK_LAG
    days = store.order_days(since)
    for first, last in day_batches(days):
        with db.atomic():
            store.lock()
            store.recompute_days(first, last, breakdown_from)
        tick()
    with db.atomic():
        store.lock()
        store.save_state(store.ORDERS_SOURCE, seen, ran_at=now)
    return len(days)


def _refresh_blocks(source: store.BlockSource, now: dt.datetime, full: bool, tick: Callable[[], None]) -> int:
    seen = store.state(source.name)
    safe = seen.safe_id if seen is not None else 0
    high = store.max_id(source.table)
    blocks = store.blocks_above(0 if full else safe, high)
    for block in blocks:
        with db.atomic():
            store.lock()
            source.recompute(block)
        tick()
    # The mark a run COMMIT_LAG ago saw is safe now: this run scanned everything above the
    # old watermark after every transaction that had taken an id below the mark had ended.
    if seen is not None and seen.mark_at is not None and seen.mark_at <= now - COMMIT_LAG:
        safe, mark = max(safe, seen.mark_id), (high, now)
    elif seen is None or seen.mark_at is None:
        mark = (high, now)
    else:
        mark = (seen.mark_id, seen.mark_at)
    with db.atomic():
        store.lock()
        store.save_state(source.name, seen, ran_at=now, safe_id=safe, mark_id=mark[0], mark_at=mark[1])
    return len(blocks)


# ---- reading ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Period:
    """Sales of the days first_day..last_day: GMV and orders by paid day, refunds by refund day."""

    first_day: dt.date
    last_day: dt.date
    gmv_fen: int
    orders: int
    refunds: int
    refund_fen: int
    refund_rate_bp: int | None  # refunds per paid order, in basis points (None: no orders)


@dataclass(frozen=True)
class CommissionTotals:
    """What the platform owes all creators together, per ledger bucket (a creator's debt, a
    negative `available`, nets against the others), and what wallet payouts sent out."""

    pending_fen: int  # settled, inside the refund window
    available_fen: int  # released, withdrawable
    withdrawing_fen: int  # withdrawals requested, not paid out yet
    credit_fen: int  # shopping credit not yet spent
    paid_out_fen: int  # wallet withdrawals paid, gross (fees included)
    payout_fees_fen: int  # of which the platform kept as withdrawal fees


@dataclass(frozen=True)
class LiveCounts:
    """Figures counted at view time: each query reads only the rows it counts, through an index."""

    withdrawals_waiting: tuple[tuple[str, int, int], ...]  # (state, count, fen): review, approved, paying
    low_stock_skus: int  # active SKUs flagged low on stock
    failed_deliveries: int  # orders delivery set aside, not yet recovered (models/failures.py)
    failed_settlements: int  # orders settlement set aside
    failed_notifications: int  # buyer notices given up on (notification.state = failed)
    failed_messages: int  # outbound chat messages given up on (outbound_message.state = failed)


@dataclass(frozen=True)
class Dashboard:
    day: dt.date  # today, in Asia/Shanghai
    as_of: dt.datetime | None  # when the last refresh started (naive UTC); None: never refreshed
    today: Period
    last_7_days: Period  # today and the 6 days before
    last_30_days: Period
    series: tuple[tuple[dt.date, int, int], ...]  # (day, gmv_fen, orders), the 30 days, oldest first
    top_skus: tuple[tuple[str, int], ...]  # (SKU name, gmv_fen) over 30 days, best first
    top_creators: tuple[tuple[str, int], ...]  # (creator name or code, gmv_fen) of their sales
    funnel: tuple[int, int, int]  # video plays -> live-room entries -> paid orders, over 30 days
    commission: CommissionTotals
    live: LiveCounts

    def chart(self) -> dict[str, list]:
        """The series as JSON for a chart: ISO days, GMV in fen and orders, oldest first."""
        return {"days": [d.isoformat() for d, _, _ in self.series],
                "gmv_fen": [g for _, g, _ in self.series], "orders": [o for _, _, o in self.series]}


def dashboard(now: dt.datetime | None = None) -> Dashboard:
    """Every figure of the operator dashboard, read from the rollups (as of their last refresh)
    and `live_counts()`. `now` (naive UTC) picks today; the days are Asia/Shanghai days."""
    now = now or utcnow()
    today = local_day(now)
    first = today - dt.timedelta(days=SERIES_DAYS - 1)
    wanted = (store.GMV, store.ORDERS, store.REFUNDS, store.REFUND_FEN)
    per_day: dict[dt.date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for day, metric, value in (DailyMetric.select(DailyMetric.day, DailyMetric.metric, DailyMetric.value)
                               .where(DailyMetric.metric.in_(wanted) & (DailyMetric.dim == 0)
                                      & DailyMetric.day.between(first, today)).tuples()):
        per_day[store.as_date(day)][metric] = int(value)
    days = [first + dt.timedelta(days=i) for i in range(SERIES_DAYS)]
    month = _period(days, per_day)
    activity = _sums((store.PLAYS, store.LIVE_ENTRIES), first, today)
    return Dashboard(
        day=today, as_of=_as_of(), today=_period(days[-1:], per_day), last_7_days=_period(days[-7:], per_day),
        last_30_days=month,
        series=tuple((d, per_day[d][store.GMV], per_day[d][store.ORDERS]) for d in days),
        top_skus=_labelled(_top(store.SKU_GMV, today), _sku_labels),
        top_creators=_labelled(_top(store.SELLER_GMV, today), _creator_labels),
        funnel=(activity[store.PLAYS], activity[store.LIVE_ENTRIES], month.orders),
        commission=_commission(), live=live_counts())


def _period(days: list[dt.date], per_day: dict[dt.date, dict[str, int]]) -> Period:
    total: dict[str, int] = defaultdict(int)
    for day in days:
        for metric, value in per_day[day].items():
            total[metric] += value
    orders, refunds = total[store.ORDERS], total[store.REFUNDS]
    return Period(days[0], days[-1], total[store.GMV], orders, refunds, total[store.REFUND_FEN],
                  refunds * 10_000 // orders if orders else None)


def _sums(metrics: tuple[str, ...], first: dt.date | None = None, last: dt.date | None = None) -> dict[str, int]:
    """SUM(value) per metric, over the days first..last (every day when None)."""
    where = DailyMetric.metric.in_(metrics)
    if first is not None:
        where &= DailyMetric.day.between(first, last)
    found = dict(DailyMetric.select(DailyMetric.metric, pw.fn.SUM(DailyMetric.value))
                 .where(where).group_by(DailyMetric.metric).tuples())
    return {m: int(found.get(m) or 0) for m in metrics}


def _commission() -> CommissionTotals:
    owed = _sums(store.LEDGER_METRICS)
    return CommissionTotals(
        pending_fen=owed[store.OWED[ledger.PENDING]], available_fen=owed[store.OWED[ledger.AVAILABLE]],
        withdrawing_fen=owed[store.OWED[ledger.WITHDRAWING]], credit_fen=owed[store.OWED[ledger.CREDIT]],
        paid_out_fen=owed[store.PAID_OUT], payout_fees_fen=owed[store.PAYOUT_FEES])


def _top(metric: str, today: dt.date) -> list[tuple[int, int]]:
    """(id, fen) of the TOP_N best of the 30 days ending today, best first: the job's list for
    today (2 x TOP_N rows), or, before its first run of the day, summed from the days' rows."""
    if store.top_day() == today:
        return [(int(dim), int(fen)) for dim, fen in (
            DailyMetric.select(DailyMetric.dim, DailyMetric.value)
            .where((DailyMetric.metric == store.TOP_OF[metric]) & (DailyMetric.day == today))
            .order_by(DailyMetric.value.desc(), DailyMetric.dim).tuples())]
    return store.top(metric, today - dt.timedelta(days=SERIES_DAYS - 1), today, TOP_N)


def _labelled(top: list[tuple[int, int]], labels: Callable[[list[int]], dict[int, str]]) -> tuple[tuple[str, int], ...]:
    names = labels([dim for dim, _ in top]) if top else {}
    return tuple((names.get(dim) or f"#{dim}", fen) for dim, fen in top)


def _sku_labels(ids: list[int]) -> dict[int, str]:
    return {i: name or code for i, name, code in Sku.select(Sku.id, Sku.name, Sku.code).where(Sku.id.in_(ids)).tuples()}


def _creator_labels(ids: list[int]) -> dict[int, str]:
    return {i: name or code for i, name, code in
            Creator.select(Creator.id, Creator.name, Creator.code).where(Creator.id.in_(ids)).tuples()}


def _as_of() -> dt.datetime | None:
    ran = [r for (r,) in RollupState.select(RollupState.ran_at).where(RollupState.source.in_(store.SOURCES)).tuples()]
    return min(ran) if len(ran) == len(store.SOURCES) else None


def live_counts() -> LiveCounts:
    """Counts read at view time, each through an index over only the rows it counts:
    withdrawal(state, due_at); item_failure_open (open failures); sku_low_stock,
    notification_failed (migration 0009); outbound_message(state, not_before)."""
    states = [s.value for s in WAITING]
    waiting = {state: (int(n), int(fen or 0)) for state, n, fen in execute(
        "SELECT state, COUNT(*), SUM(amount_fen) FROM withdrawal WHERE state IN (%s, %s, %s) GROUP BY state",
        states).fetchall()}
    failures = dict(execute("SELECT job, COUNT(*) FROM item_failure WHERE resolved_at IS NULL GROUP BY job").fetchall())
    return LiveCounts(
        withdrawals_waiting=tuple((s, *waiting.get(s, (0, 0))) for s in states),
        low_stock_skus=_count("SELECT COUNT(*) FROM sku WHERE low_stock_flag AND active"),
        failed_deliveries=int(failures.get(DELIVERY, 0)), failed_settlements=int(failures.get(SETTLEMENT, 0)),
        # The state is written literally: SQLite uses a partial index only for the same literal.
        failed_notifications=_count("SELECT COUNT(*) FROM notification WHERE state = 'failed'"),
        failed_messages=_count("SELECT COUNT(*) FROM outbound_message WHERE state = 'failed'"))


def _count(sql: str, params: Any = ()) -> int:
    return int(execute(sql, params).fetchone()[0] or 0)
