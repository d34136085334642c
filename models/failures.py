"""Items a batch job could not process, set aside so they never hold back the rest.

Batch jobs (delivery, settlement) work on many items in one transaction, because that is what
makes them fast. One item that cannot be processed (a corrupt row, a constraint it violates,
a bug that only its data reaches) would roll the whole batch back on every run and stall
everything behind it. `isolate` runs a batch and, when it fails, splits it in halves until the
items that fail alone are found (about 2·log2(n) extra transactions per bad item); those are
parked here with their reason, the rest are processed. A parked item is left out of its job's
normal batches and retried on its own by `tasks.maintenance.retry_parked` on the
`ITEM_RETRY_INTERVALS` schedule; after the last interval it waits for an operator
(`qianxing orders show` lists it, `qianxing orders redeliver` retries it at once).

One row per (job, item): a later failure of an item that had recovered reopens its row.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import peewee as pw

from models import events
from models.db import BaseModel, db, utcnow

log = logging.getLogger(__name__)

DELIVERY = "delivery"
SETTLEMENT = "settlement"
SUBJECTS = {DELIVERY: "order", SETTLEMENT: "order"}
DEFAULT_INTERVALS = (10, 60, 300, 1800, 7200)  # the ITEM_RETRY_INTERVALS setting's default

T = TypeVar("T")


class ItemFailure(BaseModel):
    job = pw.CharField(max_length=32)
    item_id = pw.BigIntegerField()
    attempts = pw.IntegerField(default=1)
    error = pw.CharField(max_length=300)
    first_failed_at = pw.DateTimeField(default=utcnow)
    last_failed_at = pw.DateTimeField(default=utcnow)
    next_retry_at = pw.DateTimeField(null=True)  # None while open: retries are over, an operator acts
    resolved_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "item_failure"
        indexes = ((("job", "item_id"), True),)

    @property
    def open(self) -> bool:
        return self.resolved_at is None


def describe(exc: BaseException) -> str:
    """A one-line reason for operators: the exception's type and first line (constraint names
    and ids, never values: the batch jobs handle no secrets in their statements' text)."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:300]


def isolate(job: str, items: Sequence[T], run: Callable[[list[T]], object], *,
            intervals: Sequence[int], key: Callable[[T], int] = int,  # type: ignore[assignment]
            failed: BaseException | None = None) -> list[T]:
    """Run `run(items)` (one all-or-nothing transaction); if it raises, run the halves, down to
    single items, each of which is parked with its reason when it still fails. Returns the
    items parked. `failed`: the caller already ran all of `items` and got this error.

    Errors that are not about the items (the database unreachable, see `is_unavailable`) are
    re-raised at once: the caller's job fails and is retried as a whole."""
    items = list(items)
    if not items:
        return []
    if failed is None:
        try:
            run(items)
            return []
        except Exception as exc:  # noqa: BLE001 - any item's failure must be isolated, not spread
            if is_unavailable(exc):
                raise
            failed = exc
    if len(items) == 1:
        log.error("%s: item %s set aside: %s", job, key(items[0]), describe(failed))
        park(job, key(items[0]), describe(failed), intervals)
        return items
    middle = len(items) // 2
    return (isolate(job, items[:middle], run, intervals=intervals, key=key)
            + isolate(job, items[middle:], run, intervals=intervals, key=key))


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that say the database itself is unreachable or busy (no item is to
    blame): DB-API's OperationalError and InterfaceError, as peewee wraps them or as a driver
    raises them directly (psycopg2's COPY in settlement is not wrapped by peewee)."""
    return any(cls.__name__ in ("OperationalError", "InterfaceError") for cls in type(exc).__mro__)


def park(job: str, item_id: int, error: str, intervals: Sequence[int]) -> ItemFailure:
    """Record a failure of one item and when to retry it (None after the last interval)."""
    now = utcnow()
    with db.atomic():
        row = ItemFailure.get_or_none((ItemFailure.job == job) & (ItemFailure.item_id == item_id))
        attempts = 1 if row is None or not row.open else row.attempts + 1
        retry_at = (now + dt.timedelta(seconds=intervals[attempts - 1])
                    if attempts <= len(intervals) else None)
        if row is None:
            row = ItemFailure.create(job=job, item_id=item_id, attempts=1, error=error,
                                     first_failed_at=now, last_failed_at=now, next_retry_at=retry_at)
        else:
            ItemFailure.update(
                attempts=attempts, error=error, last_failed_at=now, next_retry_at=retry_at,
                resolved_at=None, first_failed_at=row.first_failed_at if row.open else now,
            ).where(ItemFailure.id == row.id).execute()
        events.record(f"{job}.failed", f"{SUBJECTS.get(job, job)}:{item_id}", "system",
                      error=error, attempts=attempts,
                      retry_at=retry_at.isoformat() + "Z" if retry_at else None)
    return ItemFailure.get_by_id(row.id)


def resolve(job: str, item_ids: Sequence[int]) -> int:
    """Close the open failures of items that have now been processed; returns how many."""
    if not item_ids:
        return 0
    now = utcnow()
    closed = 0
    for start in range(0, len(item_ids), 500):
        chunk = list(item_ids[start:start + 500])
        closed += ItemFailure.update(resolved_at=now, next_retry_at=None).where(
            (ItemFailure.job == job) & ItemFailure.item_id.in_(chunk)
            & ItemFailure.resolved_at.is_null()).execute()
    return closed


def parked(job: str, item_ids: Sequence[int]) -> set[int]:
    """The items among `item_ids` that are set aside (open failures): normal batches skip them.
    One range scan of the (job, item_id) index, however many ids a batch has."""
    if not item_ids:
        return set()
    wanted = set(item_ids)
    return {item_id for (item_id,) in ItemFailure.select(ItemFailure.item_id).where(
        (ItemFailure.job == job) & ItemFailure.item_id.between(min(wanted), max(wanted))
        & ItemFailure.resolved_at.is_null()).tuples() if item_id in wanted}


def parked_all(job: str) -> set[int]:
    """Every item of a job that is set aside (an operator's retry after fixing the cause)."""
    return {item_id for (item_id,) in ItemFailure.select(ItemFailure.item_id).where(
        (ItemFailure.job == job) & ItemFailure.resolved_at.is_null()).tuples()}


def due(job: str, *, now: dt.datetime | None = None, limit: int = 100) -> list[int]:
    """Items whose next retry is due."""
    now = now or utcnow()
    return [row.item_id for row in ItemFailure.select(ItemFailure.item_id).where(
        (ItemFailure.job == job) & ItemFailure.resolved_at.is_null()
        & (ItemFailure.next_retry_at <= now)).order_by(ItemFailure.next_retry_at).limit(limit)]


@dataclass(frozen=True)
class FailureView:
    job: str
    attempts: int
    error: str
    first_failed_at: dt.datetime
    next_retry_at: dt.datetime | None
    resolved_at: dt.datetime | None


def of_item(item_id: int, jobs: Sequence[str] = (DELIVERY, SETTLEMENT)) -> list[FailureView]:
    """Failures (open and resolved) recorded for one item, for `orders show` and the admin."""
    return [FailureView(r.job, r.attempts, r.error, r.first_failed_at, r.next_retry_at, r.resolved_at)
            for r in ItemFailure.select().where(
                ItemFailure.job.in_(list(jobs)) & (ItemFailure.item_id == item_id))
            .order_by(ItemFailure.id)]
