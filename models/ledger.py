"""Double-entry, append-only ledger in integer fen.

A transaction has a unique business key (e.g. ``payment:QX..``) so posting it twice is a no-op,
and legs whose amounts sum to zero. Rows are never updated or deleted: the migration installs
triggers that refuse it, and corrections are new transactions.
"""

from __future__ import annotations

from dataclasses import dataclass

import peewee as pw

from models.db import BaseModel, execute, utcnow
from models.errors import InvalidInput

# Accounts used by the commerce backbone; later domains add their own.
CASH_WECHATPAY = "asset:wechatpay_clearing"
SALES = "income:sales"


class LedgerTransaction(BaseModel):
    key = pw.CharField(max_length=96, unique=True)
    kind = pw.CharField(max_length=32, index=True)
    order_id = pw.BigIntegerField(null=True, index=True)
    memo = pw.CharField(max_length=200, default="")
    created_at = pw.DateTimeField(default=utcnow)


class Posting(BaseModel):
    txn = pw.ForeignKeyField(LedgerTransaction, backref="postings", on_delete="RESTRICT")
    account = pw.CharField(max_length=64, index=True)
    amount_fen = pw.BigIntegerField()  # debit positive, credit negative


@dataclass(frozen=True)
class Leg:
    account: str
    amount_fen: int


def post(key: str, kind: str, legs: list[Leg], *, order_id: int | None = None, memo: str = "") -> bool:
    """Post one balanced transaction; False if a transaction with this key already exists.

    Must run inside the caller's transaction (the unique key is checked under it).
    Raises InvalidInput if the legs do not balance, are empty, or carry a non-integer amount.
    """
    header, postings = posting_statements(key, kind, legs, order_id=order_id, memo=memo)
    if execute(header[0] + " RETURNING id", header[1]).fetchone() is None:
        return False
    execute(*postings)
    return True


def posting_statements(key: str, kind: str, legs: list[Leg], *, order_id: int | None = None,
                       memo: str = "") -> list[tuple[str, list]]:
    """The two statements that post a transaction, for callers that batch them with others
    (one round trip on PostgreSQL). Together they are idempotent: the header is skipped on a
    duplicate key (even a concurrent one) and legs are only added to a header that has none.

    Raises InvalidInput if the legs do not balance, are empty, or carry a non-integer amount.
    """
    if not legs or any(not isinstance(leg.amount_fen, int) for leg in legs):
        raise InvalidInput("ledger legs must be integer fen")
    if sum(leg.amount_fen for leg in legs) != 0:
        raise InvalidInput(f"unbalanced ledger transaction {key}")
    header = ("INSERT INTO ledger_transaction (key, kind, order_id, memo, created_at) "
              "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
              [key, kind, order_id, memo, LedgerTransaction.created_at.db_value(utcnow())])
    rows = " UNION ALL ".join(["SELECT %s AS account, %s AS amount"] * len(legs))
    postings = ("INSERT INTO posting (txn_id, account, amount_fen) "
                f"SELECT t.id, x.account, x.amount FROM ledger_transaction t, ({rows}) x "
                "WHERE t.key = %s AND NOT EXISTS (SELECT 1 FROM posting p WHERE p.txn_id = t.id)",
                [*(v for leg in legs for v in (leg.account, leg.amount_fen)), key])
    return [header, postings]


def balance(account: str) -> int:
    total = Posting.select(pw.fn.COALESCE(pw.fn.SUM(Posting.amount_fen), 0)).where(
        Posting.account == account
    )
    return int(total.scalar())


def unbalanced_transactions() -> list[str]:
    """Keys of transactions whose legs do not sum to zero (always empty on a healthy ledger)."""
    rows = (
        LedgerTransaction.select(LedgerTransaction.key)
        .join(Posting)
        .group_by(LedgerTransaction.id, LedgerTransaction.key)
        .having(pw.fn.SUM(Posting.amount_fen) != 0)
    )
    return [r.key for r in rows]


APPEND_ONLY_TABLES = ("ledger_transaction", "posting")
