"""The dashboard rollups' tables and how each source is recomputed into them (the public side,
`refresh` and `dashboard`, is models/rollups.py).

- `daily_metric (metric, day, dim) -> value`: one figure of one Asia/Shanghai day. `dim` is 0
  for a day's total, a SKU or creator id for a breakdown, or the id block a sum came from.
- `rollup_state`: one row per source with the watermark of the last run (a row under a name
  no longer in SOURCES is an old format's, ignored).

Orders (`ORDER_METRICS`) are rolled up by day: a day's rows are recomputed whole from the orders
(GROUP BYs over the `paid_at` and `refunded_at` indexes of migration 0009) and replace the rows
it had (writing only the rows that differ), so recomputing a day any number of times gives the
same numbers. GMV per SKU and per seller is kept for the dashboard's 30 days only (older days
keep their totals), and the best ten of each over those days are stored as rows of today.

Activity events and ledger postings are append-only, so their rollups are sums per block of
`BLOCK` consecutive ids (`dim` = the block number): a block is recomputed whole and upserted,
which is as idempotent as a day, and a run only recomputes the blocks holding ids above the
source's watermark. The watermark lags on purpose: PostgreSQL hands out ids when rows are
written, not when they commit, so a row with a lower id can become visible after a higher one.
A run notes the highest id it saw (`mark_id`, at `mark_at`); only a run starting COMMIT_LAG
later, which scans from the old watermark, moves the watermark (`safe_id`) up to that mark.
Every id at or below `safe_id` is counted for good, provided no writer keeps its transaction
open longer than COMMIT_LAG.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import peewee as pw

from models import ledger
from models.activity import EXPORT_TIMEZONE, ActivityKind
from models.db import BaseModel, execute, is_postgres, placeholders

TIMEZONE = EXPORT_TIMEZONE  # the dashboard's days are Asia/Shanghai days
ROLLUP_LOCK = 742013  # pg_advisory_xact_lock id shared by every rollup writer
BLOCK = 10_000  # ids per block of an append-only source
DAYS_PER_BATCH = 7  # order days recomputed per transaction
INSERT_CHUNK = 1000  # rows per INSERT (4 parameters each; SQLite caps parameters per statement)
ONE_DAY = dt.timedelta(days=1)

# Order metrics, by paid day (GMV, orders, per SKU and per seller) and refund day.
GMV, ORDERS, REFUNDS, REFUND_FEN = "gmv", "orders", "refunds", "refund_fen"
SKU_GMV, SELLER_GMV = "sku_gmv", "seller_gmv"
ORDER_METRICS = (GMV, ORDERS, REFUNDS, REFUND_FEN, SKU_GMV, SELLER_GMV)
# The best SKUs and sellers by GMV of the dashboard's window, as rows of its last day only.
TOP_SKUS, TOP_SELLERS = "top_sku", "top_seller"
TOP_OF = {SKU_GMV: TOP_SKUS, SELLER_GMV: TOP_SELLERS}
TOP_METRICS = (TOP_SKUS, TOP_SELLERS)
# Activity metrics, by the day the plays or entries happened.
PLAYS, LIVE_ENTRIES = "plays", "live_entries"
ACTIVITY_METRICS = {ActivityKind.VIDEO_PLAY.value: PLAYS, ActivityKind.LIVE_ENTRY.value: LIVE_ENTRIES}
# Ledger metrics, by the day of the ledger transaction: what the platform owes creators per
# bucket (the negated balance of `creator:X:bucket`), and wallet payouts with their fees.
OWED = {bucket: f"owed_{bucket}" for bucket in ledger.CREATOR_BUCKETS}
PAID_OUT, PAYOUT_FEES = "paid_out", "payout_fees"
LEDGER_METRICS = (*OWED.values(), PAID_OUT, PAYOUT_FEES)
# The platform accounts' own sums (debit positive), for the ledger page's balances
# (models/ledger_reading.py platform_balances): `bal_sales` is the block's income:sales postings.
PLATFORM_ACCOUNTS = (ledger.CASH_WECHATPAY, ledger.SALES, ledger.COMMISSION_EXPENSE, ledger.REWARD_EXPENSE,
                     ledger.PAYOUT_CLEARING, ledger.WITHDRAWAL_FEES, ledger.DISCOUNT_EXPENSE)
BALANCE = {account: "bal_" + account.split(":", 1)[1] for account in PLATFORM_ACCOUNTS}
BALANCE_METRICS = tuple(BALANCE.values())

# The ledger's state row is named after what a block stores: a block stored before the platform
# balances were added lacks them, so the name changed with them ("ledger" -> "ledger.2"). The first
# run after a deploy finds no watermark under the new name and recomputes every block, and until
# its watermark is safe platform_balances sums the postings directly. (RollupState.version is the
# compare-and-set counter of the runs, not a format.) Change the name again whenever a ledger
# block gains a metric or BLOCK changes ("ledger.3": expense:discounts, issue 14).
ORDERS_SOURCE, ACTIVITY_SOURCE, LEDGER_SOURCE = "orders", "activity", "ledger.3"
SOURCES = (ORDERS_SOURCE, ACTIVITY_SOURCE, LEDGER_SOURCE)


def _fixed_offset(zone_name: str) -> dt.timedelta:
    """The zone's UTC offset, which must not change with the seasons: the database buckets
    timestamps into days with this offset (Asia/Shanghai has had no daylight saving since 1991)."""
    zone = ZoneInfo(zone_name)
    seen = {zone.utcoffset(dt.datetime(year, month, 1)) for year in (2000, 2025, 2050) for month in (1, 7)}
    if len(seen) != 1:
        raise RuntimeError(f"{zone_name} changes its UTC offset; the rollups need a fixed one")
    return seen.pop()  # type: ignore[return-value]


OFFSET = _fixed_offset(TIMEZONE)


class DailyMetric(BaseModel):
    metric = pw.CharField(max_length=24)
    day = pw.DateField()
    dim = pw.BigIntegerField(default=0)
    value = pw.BigIntegerField(default=0)

    class Meta:
        table_name = "daily_metric"
        primary_key = pw.CompositeKey("metric", "day", "dim")


class RollupState(BaseModel):
    source = pw.CharField(max_length=16, primary_key=True)  # orders, activity, ledger
    safe_id = pw.BigIntegerField(default=0)  # ids at or below: counted for good
    mark_id = pw.BigIntegerField(default=0)  # the highest id a run saw, at mark_at
    mark_at = pw.DateTimeField(null=True)
    ran_at = pw.DateTimeField()  # when the last run that finished started (naive UTC)
    version = pw.IntegerField(default=1)  # compare-and-set: a slower concurrent run never writes back

    class Meta:
        table_name = "rollup_state"


# ---- days -------------------------------------------------------------------------------------

def local_day(moment: dt.datetime) -> dt.date:
    """The Asia/Shanghai day of a naive UTC timestamp."""
    return (moment + OFFSET).date()


def day_start(day: dt.date) -> dt.datetime:
    """The naive UTC moment an Asia/Shanghai day begins."""
    return dt.datetime.combine(day, dt.time()) - OFFSET


def day_sql(column: str) -> str:
    """SQL for the Asia/Shanghai day of a naive UTC timestamp column."""
    minutes = int(OFFSET.total_seconds()) // 60
    if is_postgres():
        return f"CAST({column} + INTERVAL '{minutes} minutes' AS DATE)"
    return f"date({column}, '{minutes:+d} minutes')"


def as_date(value: Any) -> dt.date:
    """A DATE read by raw SQL: a date on PostgreSQL, ISO text on SQLite."""
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def as_moment(value: Any) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


def lock() -> None:
    """Serialise rollup writers (SQLite transactions are IMMEDIATE already)."""
    if is_postgres():
        execute("SELECT pg_advisory_xact_lock(%s)", (ROLLUP_LOCK,))


# ---- writing ----------------------------------------------------------------------------------

Key = tuple[str, dt.date, int]  # (metric, day, dim)
# An unchanged value is not written again (no dead row for the vacuum).
_UPSERT = (" ON CONFLICT (metric, day, dim) DO UPDATE SET value = excluded.value "
           "WHERE daily_metric.value <> excluded.value")


class _Writer:
    """Upserts rows in chunks, so a batch never holds more than a chunk of statement text."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(self, key: Key, value: int) -> None:
        self.rows.append((*key, value))
        if len(self.rows) >= INSERT_CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            execute("INSERT INTO daily_metric (metric, day, dim, value) VALUES "
                    + ", ".join(["(%s, %s, %s, %s)"] * len(self.rows)) + _UPSERT,
                    [v for row in self.rows for v in row])
            self.rows = []


def replace(metrics: tuple[str, ...], first: dt.date, last: dt.date, new: dict[Key, int]) -> None:
    """Make the rows of these metrics on the days first..last exactly `new`, writing only what
    differs: a run that finds the same numbers writes nothing (no dead rows for the vacuum, and
    the minute-by-minute refresh of today writes only the sellers who sold since)."""
    old = {(metric, as_date(day), int(dim)): int(value) for metric, day, dim, value in execute(
        f"SELECT metric, day, dim, value FROM daily_metric WHERE metric IN ({placeholders(metrics)}) "
        "AND day >= %s AND day <= %s", (*metrics, first, last))}
    out = _Writer()
    for key, value in new.items():
        if old.get(key) != value:
            out.add(key, value)
    out.flush()
    gone: dict[tuple[str, dt.date], list[int]] = defaultdict(list)
    for metric, day, dim in old.keys() - new.keys():
        gone[metric, day].append(dim)
    for (metric, day), dims in gone.items():
        for start in range(0, len(dims), INSERT_CHUNK):
            chunk = dims[start:start + INSERT_CHUNK]
            execute(f"DELETE FROM daily_metric WHERE metric = %s AND day = %s AND dim IN ({placeholders(chunk)})",
                    (metric, day, *chunk))


_stamp = RollupState.ran_at.db_value


# ---- orders: whole days -----------------------------------------------------------------------

def order_days(since: dt.datetime | None) -> list[dt.date]:
    """The days holding a payment or refund stamped at or after `since` (every day of the
    history when None), from the earliest to the latest such day: two index lookups each."""
    days: set[dt.date] = set()
    for column in ("paid_at", "refunded_at"):
        sql, params = f'SELECT MIN({column}), MAX({column}) FROM "order" WHERE {column} IS NOT NULL', []
        if since is not None:
            sql, params = sql + f" AND {column} >= %s", [_stamp(since)]
        low, high = execute(sql, params).fetchone()
        if low is not None:
            day, last = local_day(as_moment(low)), local_day(as_moment(high))
            while day <= last:
                days.add(day)
                day += ONE_DAY
    return sorted(days)


def day_batches(days: list[dt.date], size: int | None = None) -> Iterator[tuple[dt.date, dt.date]]:
    """Runs of consecutive days, at most `size` (DAYS_PER_BATCH) long, as (first, last)."""
    size = size or DAYS_PER_BATCH
    run: list[dt.date] = []
    for day in days:
        if run and (day - run[-1] != ONE_DAY or len(run) >= size):
            yield run[0], run[-1]
            run = []
        run.append(day)
    if run:
        yield run[0], run[-1]


_PAID = ('SELECT {day}{dim}, COUNT(*), SUM(amount_fen) FROM "order" '
         "WHERE paid_at >= %s AND paid_at < %s AND paid_at IS NOT NULL{extra} GROUP BY {group}")
_REFUNDED = ('SELECT {day}, COUNT(*), SUM(amount_fen) FROM "order" '
             "WHERE refunded_at >= %s AND refunded_at < %s AND refunded_at IS NOT NULL GROUP BY 1")


def _window(first: dt.date, last: dt.date) -> tuple:
    return _stamp(day_start(first)), _stamp(day_start(last + ONE_DAY))


def recompute_days(first: dt.date, last: dt.date, breakdown_from: dt.date) -> None:
    """Make the order rows of the days first..last what the orders say now (the caller's
    transaction, locked): GMV and orders by paid day (a refunded order was paid: it stays in
    its paid day's GMV), refunds by refund day, and from `breakdown_from` on (the dashboard's
    30 days) GMV per SKU and per seller too; an older day's breakdown is dropped. GROUP BYs over
    the paid_at and refunded_at indexes: what they return grows with the days and with the SKUs
    and sellers of those days, never with their orders."""
    new: dict[Key, int] = defaultdict(int)
    paid_at = day_sql("paid_at")
    for day, count, fen in execute(_PAID.format(day=paid_at, dim="", extra="", group="1"), _window(first, last)):
        new[ORDERS, as_date(day), 0] = int(count)
        new[GMV, as_date(day), 0] = int(fen)
    for day, count, fen in execute(_REFUNDED.format(day=day_sql("refunded_at")), _window(first, last)):
        new[REFUNDS, as_date(day), 0] = int(count)
        new[REFUND_FEN, as_date(day), 0] = int(fen)
    if last >= breakdown_from:
        window = _window(max(first, breakdown_from), last)
        for metric, column, extra in ((SKU_GMV, "sku_id", ""), (SELLER_GMV, "seller_id", " AND seller_id IS NOT NULL")):
            query = _PAID.format(day=paid_at, dim=f", {column}", extra=extra, group="1, 2")
            for day, dim, _count, fen in execute(query, window):
                new[metric, as_date(day), dim] = int(fen)
    replace(ORDER_METRICS, first, last, new)


def top(metric: str, first: dt.date, last: dt.date, limit: int) -> list[tuple[int, int]]:
    """(dim, sum) of the `limit` dims of a metric with the largest sums over the days
    first..last, largest first (ties: the lower id first)."""
    return [(int(dim), int(total)) for dim, total in execute(
        "SELECT dim, SUM(value) FROM daily_metric WHERE metric = %s AND day >= %s AND day <= %s "
        "GROUP BY dim ORDER BY SUM(value) DESC, dim LIMIT %s", (metric, first, last, limit))]


def top_day() -> dt.date | None:
    """The last day the top lists were computed for (they are kept for one day at a time)."""
    found = execute(f"SELECT MAX(day) FROM daily_metric WHERE metric IN ({placeholders(TOP_METRICS)})",
                    TOP_METRICS).fetchone()[0]
    return None if found is None else as_date(found)


def recompute_top(first: dt.date, today: dt.date, limit: int) -> None:
    """The best SKUs and sellers by GMV over the days first..today, kept as rows of `today` (the
    caller's transaction, locked): the dashboard reads 2 x `limit` rows instead of summing
    every seller's days. Earlier days' lists, and the per-SKU and per-seller rows of the days
    before `first` (no longer shown), are dropped."""
    new = {(listed, today, dim): total for source, listed in TOP_OF.items()
           for dim, total in top(source, first, today, limit)}
    execute(f"DELETE FROM daily_metric WHERE metric IN ({placeholders(TOP_METRICS)}) AND day <> %s",
            (*TOP_METRICS, today))
    execute("DELETE FROM daily_metric WHERE metric IN (%s, %s) AND day < %s", (*TOP_OF, first))
    replace(TOP_METRICS, today, today, new)


# ---- append-only sources: id blocks -----------------------------------------------------------

@dataclass(frozen=True)
class BlockSource:
    name: str
    table: str
    recompute: Callable[[int], None]  # upsert one block's rows (the caller's transaction, locked)


def _activity_block(block: int) -> None:
    kinds = list(ACTIVITY_METRICS)
    out = _Writer()
    for day, kind, total in execute(
            f"SELECT {day_sql('occurred_at')}, kind, SUM(count) FROM activity_event "
            f"WHERE id >= %s AND id < %s AND kind IN ({placeholders(kinds)}) GROUP BY 1, 2",
            (block * BLOCK, (block + 1) * BLOCK, *kinds)):
        out.add((ACTIVITY_METRICS[kind], as_date(day), block), int(total))
    out.flush()


_BUCKET = ("CASE " + " ".join("WHEN p.account LIKE %s THEN %s" for _ in ledger.CREATOR_BUCKETS)
           + f" WHEN p.account IN ({placeholders(PLATFORM_ACCOUNTS)}) THEN p.account END")
_BUCKET_PARAMS = [*(v for bucket in ledger.CREATOR_BUCKETS for v in (f"creator:%:{bucket}", bucket)),
                  *PLATFORM_ACCOUNTS]


def _ledger_block(block: int) -> None:
    """Per day and block: the creator buckets (owed = the negated postings), the gross of wallet
    payouts (their `withdrawing` legs), the withdrawal fees, and each platform account's sum
    (`BALANCE`). The block's transactions are read by their id range too: without it PostgreSQL
    joins them by scanning every transaction. (`txn_id + 0`: a plain MIN/MAX would walk the
    txn_id index past every other posting.)"""
    ids = (block * BLOCK, (block + 1) * BLOCK)
    low, high = execute("SELECT MIN(txn_id + 0), MAX(txn_id + 0) FROM posting WHERE id >= %s AND id < %s",
                        ids).fetchone()
    if low is None:
        return
    sums: dict[Key, int] = defaultdict(int)
    for day, bucket, payout, total in execute(
            f"SELECT {day_sql('t.created_at')}, {_BUCKET}, CASE WHEN t.kind = %s THEN 1 ELSE 0 END, "
            "SUM(p.amount_fen) FROM posting p JOIN ledger_transaction t ON t.id = p.txn_id "
            "WHERE p.id >= %s AND p.id < %s AND t.id >= %s AND t.id <= %s "
            f"AND (p.account LIKE %s OR p.account IN ({placeholders(PLATFORM_ACCOUNTS)})) GROUP BY 1, 2, 3",
            (*_BUCKET_PARAMS, "payout", *ids, low, high, "creator:%", *PLATFORM_ACCOUNTS)):
        if bucket is None:  # an account named creator:... outside the buckets
            continue
        day, total = as_date(day), int(total)
        if bucket in BALANCE:
            sums[BALANCE[bucket], day, block] += total
            if bucket == ledger.WITHDRAWAL_FEES:
                sums[PAYOUT_FEES, day, block] -= total
            continue
        sums[OWED[bucket], day, block] -= total
        if payout and bucket == ledger.WITHDRAWING:
            sums[PAID_OUT, day, block] += total
    out = _Writer()
    for key, value in sums.items():
        out.add(key, value)
    out.flush()


BLOCK_SOURCES = (BlockSource(ACTIVITY_SOURCE, "activity_event", _activity_block),
                 BlockSource(LEDGER_SOURCE, "posting", _ledger_block))


def max_id(table: str) -> int:
    return int(execute(f"SELECT MAX(id) FROM {table}").fetchone()[0] or 0)


def blocks_above(safe_id: int, high: int) -> range:
    """The blocks holding ids in (safe_id, high]."""
    return range(safe_id // BLOCK, high // BLOCK + 1) if high > safe_id else range(0)


# ---- watermarks -------------------------------------------------------------------------------

def state(source: str) -> RollupState | None:
    return RollupState.get_or_none(RollupState.source == source)


def save_state(source: str, seen: RollupState | None, *, ran_at: dt.datetime, safe_id: int = 0,
               mark_id: int = 0, mark_at: dt.datetime | None = None) -> None:
    """Write the source's watermark unless another run wrote one since `seen` was read (the
    caller's transaction, locked): then that run's watermark stands, and the next run starts
    from it."""
    values = {"safe_id": safe_id, "mark_id": mark_id, "mark_at": mark_at, "ran_at": ran_at}
    if seen is None:
        RollupState.insert(source=source, version=1, **values).on_conflict_ignore().execute()
    else:
        RollupState.update(version=RollupState.version + 1, **values).where(
            (RollupState.source == source) & (RollupState.version == seen.version)).execute()
