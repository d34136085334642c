"""Two approvers for large withdrawals, and the index behind the admin's team tree.

- `withdrawal_approval (withdrawal_id, approver)`, unique: each operator's approval of a
  withdrawal under review; above WITHDRAW_SECOND_APPROVAL_ABOVE_FEN two different ones move it
  on (models/approvals.py).
- `order_seller_sold`: the sold orders (paid or delivered) by seller and paid time, carrying the
  amount, so a tree node's 30-day GMV (models/team.py) reads only the index entries of the
  shown sellers' last 30 days. Partial: unattributed and unpaid orders are not in it.
"""

from __future__ import annotations

import peewee as pw

from models.approvals import WithdrawalApproval

TABLES: list[type[pw.Model]] = [WithdrawalApproval]

_SOLD = "seller_id IS NOT NULL AND status IN ('paid', 'delivered')"
_INDEX = 'CREATE INDEX IF NOT EXISTS order_seller_sold ON "order" '
INDEX_POSTGRES = f"{_INDEX} (seller_id, paid_at) INCLUDE (amount_fen) WHERE {_SOLD}"
INDEX_SQLITE = f"{_INDEX} (seller_id, paid_at, amount_fen) WHERE {_SOLD}"


def _postgres(db: pw.Database) -> bool:
    return isinstance(db.obj if isinstance(db, pw.DatabaseProxy) else db, pw.PostgresqlDatabase)


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
    db.execute_sql(INDEX_POSTGRES if _postgres(db) else INDEX_SQLITE)
