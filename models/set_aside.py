"""The orders batch jobs set aside (models/failures.py), for the admin's page of them: the open
failures newest first in keyset pages, and an operator's retry of one order's settlement (what
`qianxing settle --retry-set-aside` does, for that order). A delivery is retried the way
`qianxing orders redeliver` does it (miniapp_api/admin/order_actions.py)."""

from __future__ import annotations

from collections.abc import Sequence

from models import failures, settlement
from models.errors import InvalidState
from models.failures import ItemFailure
from models.settlement import PayoutPolicy

JOBS = (failures.DELIVERY, failures.SETTLEMENT)


def open_failures(*, job: str | None = None, before: int | None = None, limit: int = 50) -> list[ItemFailure]:
    """Open failures (resolved_at IS NULL), newest first; `before`: only ids below it (the next page)."""
    where = ItemFailure.resolved_at.is_null()
    if job is not None:
        where &= ItemFailure.job == job
    if before is not None:
        where &= ItemFailure.id < before
    return list(ItemFailure.select().where(where).order_by(ItemFailure.id.desc()).limit(limit))


def open_failure(job: str, order_id: int) -> ItemFailure | None:
    return ItemFailure.get_or_none((ItemFailure.job == job) & (ItemFailure.item_id == order_id)
                                   & ItemFailure.resolved_at.is_null())


def retry_settlement(order_id: int, policy: PayoutPolicy, intervals: Sequence[int]) -> bool:
    """Settle one order set aside by settlement now (its cause fixed); True when it settled and its
    failure is closed, False when it failed again (recorded as one more attempt)."""
    if open_failure(failures.SETTLEMENT, order_id) is None:
        raise InvalidState("this order's settlement is not set aside", code="not_set_aside")
    settlement.settle(policy, order_ids=[order_id], retry_set_aside=True, retry_intervals=intervals)
    return not failures.parked(failures.SETTLEMENT, [order_id])
