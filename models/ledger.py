"""Double-entry, append-only ledger in integer fen.

A transaction has a unique business key (e.g. ``payment:QX..``) so posting it twice is a no-op,
and legs whose amounts sum to zero. Rows are never updated or deleted: the migration installs
triggers that refuse it, and corrections are new transactions.
"""

from __future__ import annotations

from dataclasses import dataclass

import peewee as pw

from models.db import BaseModel, execute, placeholders, utcnow
from models.errors import InvalidInput

# Platform accounts. Debits are positive, credits negative; what the platform owes a creator
# sits in credit-balance (negative) accounts `creator:{id}:{bucket}`.
CASH_WECHATPAY = "asset:wechatpay_clearing"
SALES = "income:sales"
COMMISSION_EXPENSE = "expense:commission"
REWARD_EXPENSE = "expense:rewards"
PAYOUT_CLEARING = "asset:payout_clearing"  # money sent to creators' wallets
WITHDRAWAL_FEES = "income:withdrawal_fees"
# Coupons (issue 14): a sale is booked at its price before coupons; what the coupons took off
# is this expense. The part a creator funds out of their earnings on the order comes back
# into it at settlement (models/settlement.py), so its balance is what the platform funded.
DISCOUNT_EXPENSE = "expense:discounts"

PENDING, AVAILABLE, WITHDRAWING, CREDIT = "pending", "available", "withdrawing", "credit"
CREATOR_BUCKETS = (PENDING, AVAILABLE, WITHDRAWING, CREDIT)


def creator_account(creator_id: int, bucket: str) -> str:
    """`creator:{id}:pending|available|withdrawing|credit`."""
    return f"creator:{creator_id}:{bucket}"


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


def sale_legs(paid_into: str, amount_fen: int, discount_fen: int) -> list[Leg]:
    """The legs of a payment of `amount_fen` (what the buyer paid, net of coupons) into
    `paid_into` (WeChat Pay clearing, or the buyer's shopping credit) for an order whose coupons
    took `discount_fen` off: the account +net, `income:sales` -(net + discount), and
    `expense:discounts` +discount when there is one. A refund posts the same legs negated
    (`[Leg(l.account, -l.amount_fen) for l in sale_legs(...)]`). qx_confirm_payment (migration
    0020) writes the same legs in SQL."""
    legs = [Leg(paid_into, amount_fen), Leg(SALES, -(amount_fen + discount_fen))]
    if discount_fen:
        legs.append(Leg(DISCOUNT_EXPENSE, discount_fen))
    return legs


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


def post_bulk(key: str, kind: str, amounts: dict[str, int], *, memo: str = "",
              created_at: object = None) -> int | None:
    """Post one balanced transaction with any number of legs (one per account, amounts summed
    per account) in three statements whatever the leg count: for settlement batches, where a
    transaction carries one leg per creator paid. Returns the transaction id, or None when the
    key exists already or there is nothing to post.

    Must run inside the caller's transaction. Raises InvalidInput if the legs do not balance.
    """
    legs = {a: v for a, v in amounts.items() if v}
    if not legs:
        return None
    if any(not isinstance(v, int) for v in legs.values()) or sum(legs.values()) != 0:
        raise InvalidInput(f"unbalanced ledger transaction {key}")
    stamp = LedgerTransaction.created_at.db_value(created_at or utcnow())
    row = execute("INSERT INTO ledger_transaction (key, kind, order_id, memo, created_at) "
                  "VALUES (%s, %s, NULL, %s, %s) ON CONFLICT (key) DO NOTHING RETURNING id",
                  (key, kind, memo[:200], stamp)).fetchone()
    if row is None:
        return None
    items = list(legs.items())
    for start in range(0, len(items), 500):  # SQLite caps bound parameters per statement
        chunk = items[start:start + 500]
        execute("INSERT INTO posting (txn_id, account, amount_fen) VALUES "
                + ", ".join(["(%s, %s, %s)"] * len(chunk)),
                [v for account, amount in chunk for v in (row[0], account, amount)])
    return row[0]


def balances(accounts: list[str]) -> dict[str, int]:
    """Sum of postings per account (0 for accounts without postings): one query."""
    if not accounts:
        return {}
    found = dict(execute(
        f"SELECT account, SUM(amount_fen) FROM posting WHERE account IN ({placeholders(accounts)}) "
        "GROUP BY account", accounts).fetchall())
    return {a: int(found.get(a) or 0) for a in accounts}


def owed_to_creator(creator_id: int, buckets: tuple[str, ...] = CREATOR_BUCKETS) -> dict[str, int]:
    """What the platform owes a creator per bucket, in positive fen (the ledger stores these
    credit balances negated); a negative `available` is the creator's debt. One query."""
    accounts = {bucket: creator_account(creator_id, bucket) for bucket in buckets}
    sums = balances(list(accounts.values()))
    return {bucket: -sums[account] for bucket, account in accounts.items()}


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
