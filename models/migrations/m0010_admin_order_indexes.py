"""Indexes behind the admin's order list (models/order_search.py): each filter a page is an index
range scan of about 50 entries, on a million orders as on a hundred.

What the list already had: the primary key (no filter, a status or amount filter, the keyset
cursor), the unique order number, (user_id, idempotency_key) for a buyer's orders, and the
partial (live_id) index for a live session's. What it lacked, added here:

- (seller_id, id), attributed orders only: a creator's orders newest first. The existing
  (seller_id, status) index finds them but not in id order, so a top seller's page sorted all
  their orders.
- (sku_id, id): a SKU's orders newest first (a SKU with few orders would otherwise be a scan of
  the whole table backwards).
- (created_at, id): a date range, read newest first.
- (id) of refunded orders only: the one status rare enough that reading the primary key
  backwards for it could pass many rows per match; a refund is its only write.

Every index is paid for by each order write (an insert, and each status change, which is never
a HOT update since status and the paid/delivered times are indexed already), so nothing more:
pending, paid and delivered orders are found through the partial indexes of migration 0006 or
are dense enough for the primary key, and a buyer has few orders.

The indexes are built in the migration's transaction (CREATE INDEX, not CONCURRENTLY): on a
million orders that holds order writes for a few seconds, so apply it outside a sale.
"""

from __future__ import annotations

import peewee as pw

TABLES: list[type[pw.Model]] = []

INDEXES = (
    'CREATE INDEX IF NOT EXISTS order_admin_seller ON "order" (seller_id, id) WHERE seller_id IS NOT NULL',
    'CREATE INDEX IF NOT EXISTS order_admin_sku ON "order" (sku_id, id)',
    'CREATE INDEX IF NOT EXISTS order_admin_created ON "order" (created_at, id)',
    "CREATE INDEX IF NOT EXISTS order_admin_refunded ON \"order\" (id) WHERE status = 'refunded'",
)


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
    for ddl in INDEXES:
        db.execute_sql(ddl)
