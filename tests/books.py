"""The books, as tests read and move them: settle and release as the jobs do, what a creator is
owed per bucket, an order's commission lines and settlement state, and the ledger checks every
money test ends with."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from models import ledger, settlement
from models.db import db, utcnow
from models.network import Creator
from models.settlement import Commission, Settlement


def settle(rt, **kwargs) -> settlement.SettleResult:  # noqa: ANN001, ANN003
    with db.connection_context():
        return settlement.settle(rt.payout, **kwargs)


def release(rt, days: float | None = None) -> int:  # noqa: ANN001
    """Release as if `days` (default: the refund window plus a second) had passed."""
    delta = dt.timedelta(days=rt.payout.refund_window_days, seconds=1) if days is None else dt.timedelta(days=days)
    with db.connection_context():
        return settlement.release_due(rt.payout, now=utcnow() + delta)


def bucket(creator: Creator, name: str) -> int:
    """What the platform owes the creator in a bucket, in fen (the ledger stores it negated)."""
    with db.connection_context():
        return -ledger.balance(ledger.creator_account(creator.id, name))


def lines_of(order_id: int) -> dict[tuple[int, str], int]:
    with db.connection_context():
        return {(c.creator_id, c.kind): c.amount_fen
                for c in Commission.select().where(Commission.order_id == order_id)}


def state_of(order_id: int) -> str | None:
    with db.connection_context():
        row = Settlement.get_or_none(Settlement.order_id == order_id)
        return row.state if row else None


def assert_books_clean() -> None:
    with db.connection_context():
        assert ledger.unbalanced_transactions() == []
        assert settlement.verify() == []


def snapshot() -> tuple:
    """Everything settlement writes: settlement rows, commission lines, ledger postings."""
    with db.connection_context():
        return (sorted(Settlement.select(Settlement.order_id, Settlement.state, Settlement.payout_fen).tuples()),
                Counter(Commission.select(Commission.order_id, Commission.creator_id, Commission.kind,
                                          Commission.amount_fen).tuples()),
                Counter(ledger.Posting.select(ledger.Posting.account, ledger.Posting.amount_fen).tuples()),
                ledger.LedgerTransaction.select().count())
