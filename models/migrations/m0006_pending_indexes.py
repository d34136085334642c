"""Order indexes that only hold the orders a query looks for, and a buyer lock that does not
wait for the delivery worker.

- (user_id, status), (client_ip, status) and (status, expires_at) held every order ever placed,
  and every status change (pending -> paid -> delivered) wrote a new entry into all three.
  The queries behind them only ever look for pending orders (the unpaid limits and the expiry
  sweep), paid orders (the delivery sweep) and recently delivered ones (the notice sweep), so
  each becomes a partial index: an order enters only the index of its current status, and the
  pending ones stay as small as the number of unpaid orders.
- qx_place_order serialised a buyer's concurrent orders with SELECT ... FOR UPDATE on the user
  row. FOR UPDATE also conflicts with the KEY SHARE locks that foreign-key checks take, so an
  order waited for any delivery batch inserting that buyer's vouchers or notices to commit
  (~0.8 ms per order on average in the flash-sale benchmark). FOR NO KEY UPDATE still
  serialises the buyer's own orders and leaves the foreign-key checks alone.
"""

from __future__ import annotations

import peewee as pw

from models.migrations.m0004_creator_network import PLACE_ORDER as PLACE_ORDER_0004

DROPPED = ("order_user_id_status", "order_client_ip_status", "order_status_expires_at")

INDEXES = (
    'CREATE INDEX IF NOT EXISTS order_pending_user ON "order" (user_id) WHERE status = \'pending\'',
    'CREATE INDEX IF NOT EXISTS order_pending_ip ON "order" (client_ip) WHERE status = \'pending\'',
    'CREATE INDEX IF NOT EXISTS order_pending_expiry ON "order" (expires_at) '
    "WHERE status = 'pending'",
    'CREATE INDEX IF NOT EXISTS order_paid ON "order" (paid_at) WHERE status = \'paid\'',
    'CREATE INDEX IF NOT EXISTS order_delivered ON "order" (delivered_at) '
    "WHERE status = 'delivered'",
)

_BUYER_LOCK_0004 = 'PERFORM 1 FROM "user" WHERE id = p_user FOR UPDATE;'
BUYER_LOCK = 'PERFORM 1 FROM "user" WHERE id = p_user FOR NO KEY UPDATE;'
PLACE_ORDER = PLACE_ORDER_0004.replace(_BUYER_LOCK_0004, BUYER_LOCK)


def up(db: pw.Database) -> None:
    for ddl in INDEXES:
        db.execute_sql(ddl)
    for name in DROPPED:
        db.execute_sql(f'DROP INDEX IF EXISTS "{name}"')
    if isinstance(db.obj if isinstance(db, pw.DatabaseProxy) else db, pw.PostgresqlDatabase):
        assert BUYER_LOCK in PLACE_ORDER, "migration 0004's qx_place_order changed"
        db.execute_sql(PLACE_ORDER.replace("%", "%%"))
