"""Reading the ledger for operators (read-only): platform account balances, one creator's
buckets, transactions with their entries a page at a time, and the checks of `qianxing ledger
verify`.

Sized by what is shown: the platform accounts' balances are the ledger rollup's per-block sums
(models/rollup_store.py) plus the few postings above its safe watermark, never their millions of
postings; creator accounts are only ever summed for the one creator asked about (never all
creators per page view); transactions come newest first by keyset (`id < before`) with the
entries of the page's transactions in one query.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from models import ledger, settlement
from models import rollup_store as store
from models.db import execute, placeholders
from models.ledger import LedgerTransaction, Posting

PLATFORM_ACCOUNTS = store.PLATFORM_ACCOUNTS  # whose sums the ledger rollup keeps per block of postings

_BALANCES = (f"SELECT metric, SUM(value) FROM daily_metric WHERE metric IN ({placeholders(store.BALANCE_METRICS)}) "
             "AND dim < %s GROUP BY metric UNION ALL "
             f"SELECT account, SUM(amount_fen) FROM posting WHERE id >= %s "
             f"AND account IN ({placeholders(PLATFORM_ACCOUNTS)}) GROUP BY account")


def platform_balances() -> dict[str, int]:
    """Balance of each platform account (debit positive, credit negative), exactly what
    `ledger.balances` says at this moment, without summing their millions of postings: the
    ledger rollup's sums of the id blocks wholly at or below its safe watermark (final: every
    posting there has committed, and postings are never changed) plus a direct sum of the
    postings above those blocks (a range of the posting primary key: the last block or two, and
    every posting until the rollup's first watermark is safe). One statement, so both halves are
    read from the same snapshot."""
    seen = store.state(store.LEDGER_SOURCE)
    blocks = ((seen.safe_id + 1) // store.BLOCK) if seen is not None else 0  # blocks 0..blocks-1 are final
    metric_of = store.BALANCE
    account_of = {metric: account for account, metric in metric_of.items()}
    totals = dict.fromkeys(PLATFORM_ACCOUNTS, 0)
    for name, total in execute(_BALANCES, (*store.BALANCE_METRICS, blocks, blocks * store.BLOCK,
                                           *PLATFORM_ACCOUNTS)).fetchall():
        totals[account_of.get(name, name)] += int(total or 0)
    return totals


def creator_balances(creator_id: int) -> dict[str, int]:
    """Balance of each of a creator's accounts as the ledger holds it (credit balances negative)."""
    return ledger.balances([ledger.creator_account(creator_id, b) for b in ledger.CREATOR_BUCKETS])


@dataclass
class Txn:
    id: int
    key: str
    kind: str
    order_id: int | None
    memo: str
    created_at: dt.datetime
    entries: list[tuple[str, int]] = field(default_factory=list)  # (account, amount_fen), maybe the first few
    more_entries: bool = False  # a list shows the first few; a settlement batch has one entry per creator paid
    entry_count: int | None = None  # counted on the transaction's own page


ENTRIES_SHOWN = 12  # per transaction in a list; a transaction's own page shows them all, by page
ENTRIES_PAGE = 200


def _txn(row: LedgerTransaction) -> Txn:
    return Txn(row.id, row.key, row.kind, row.order_id, row.memo, row.created_at)


def _first_entries(txns: list[Txn]) -> None:
    """Fill in each transaction's first ENTRIES_SHOWN entries (in the order they were written)
    and whether it has more: one query reading at most ENTRIES_SHOWN + 1 postings per
    transaction, however many it has (batches of a clawback or release have thousands)."""
    by_id = {t.id: t for t in txns}
    if not by_id:
        return
    one = "SELECT * FROM (SELECT id, txn_id, account, amount_fen FROM posting WHERE txn_id = %s LIMIT %s) p"
    rows = execute(" UNION ALL ".join([one] * len(by_id)),
                   [v for i in by_id for v in (i, ENTRIES_SHOWN + 1)]).fetchall()
    for _, txn_id, account, amount in sorted(rows):
        txn = by_id[txn_id]
        if len(txn.entries) < ENTRIES_SHOWN:
            txn.entries.append((account, int(amount)))
        else:
            txn.more_entries = True


def transactions(*, kind: str = "", order_id: int | None = None, key: str = "", before_id: int | None = None,
                 limit: int = 50) -> tuple[list[Txn], int | None]:
    """Transactions newest first, optionally of one kind, one order, or the one with `key`;
    returns the page and the id to pass as `before_id` for the next (None: last page)."""
    limit = max(1, min(limit, 200))
    query = LedgerTransaction.select()
    if kind:
        query = query.where(LedgerTransaction.kind == kind[:32])
    if order_id is not None:
        query = query.where(LedgerTransaction.order_id == order_id)
    if key:
        query = query.where(LedgerTransaction.key == key[:96])
    if before_id:
        query = query.where(LedgerTransaction.id < before_id)
    rows = list(query.order_by(LedgerTransaction.id.desc()).limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    txns = [_txn(r) for r in rows]
    _first_entries(txns)
    return txns, (txns[-1].id if more and txns else None)


def transaction(txn_id: int, *, after_id: int = 0) -> tuple[Txn, int | None] | None:
    """One transaction with ENTRIES_PAGE of its entries after posting `after_id`; the posting id
    to continue after (None: the last page). None when there is no such transaction."""
    row = LedgerTransaction.get_or_none(LedgerTransaction.id == txn_id)
    if row is None:
        return None
    txn = _txn(row)
    txn.entry_count = Posting.select().where(Posting.txn == txn_id).count()
    rows = list(Posting.select(Posting.id, Posting.account, Posting.amount_fen)
                .where((Posting.txn == txn_id) & (Posting.id > after_id)).order_by(Posting.id).limit(ENTRIES_PAGE + 1))
    more = len(rows) > ENTRIES_PAGE
    rows = rows[:ENTRIES_PAGE]
    txn.entries = [(p.account, p.amount_fen) for p in rows]
    return txn, (rows[-1].id if more and rows else None)


def entries_of(keys: list[str]) -> list[Txn]:
    """The transactions with these keys and their first entries, oldest first (e.g. a withdrawal's)."""
    if not keys:
        return []
    txns = [_txn(r) for r in LedgerTransaction.select().where(LedgerTransaction.key.in_(keys))
            .order_by(LedgerTransaction.id)]
    _first_entries(txns)
    return txns


@dataclass(frozen=True)
class Verification:
    unbalanced: list[str]  # keys of transactions whose entries do not sum to zero
    problems: list[str]  # settlement.verify's findings

    @property
    def ok(self) -> bool:
        return not self.unbalanced and not self.problems


def verify() -> Verification:
    """The checks of `qianxing ledger verify`: every transaction balances, and the commission
    lines, settlement states and creators' balances agree with the ledger."""
    return Verification(ledger.unbalanced_transactions(), settlement.verify())
