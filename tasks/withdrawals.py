"""Withdrawal payouts: every due wallet withdrawal goes to the payout adapter (periodic)."""

from __future__ import annotations

from models import payouts
from models.db import connection
from tasks.context import runtime

PAY_DUE_BATCH = 200


def pay_due_withdrawals(batch: int = PAY_DUE_BATCH) -> dict[str, int]:
    """Pay approved wallet withdrawals whose T+1 time has passed and settle unclear ones.
    Safe to run twice and concurrently: each withdrawal is claimed by a compare-and-set."""
    with connection():
        return payouts.pay_due(runtime().payouts, batch=batch).counts
