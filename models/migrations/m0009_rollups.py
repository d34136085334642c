"""Dashboard rollups (models/rollups.py, models/rollup_store.py) and the indexes their queries use.

- `daily_metric (metric, day, dim) -> value` (primary key in that order: the dashboard reads
  ranges of days of one metric) and `rollup_state` (one watermark row per source).
- `order_paid_at` / `order_refunded_at`: the rollup job recomputes a day from the orders paid
  (refunded) in it, and finds the days touched since its last run by MIN/MAX over the recent
  stamps. Partial (`IS NOT NULL`): an unpaid order is in neither, and each order enters each
  index once, when it is paid (refunded). The older `order_paid` holds only undelivered orders.
- `notification_failed`, `sku_low_stock`: the dashboard's live counts read only the failed
  notices and the flagged SKUs (failed chat messages use outbound_message (state, not_before),
  open item failures item_failure_open, waiting withdrawals withdrawal (state, due_at)).
Activity events and postings are read by id ranges (their primary keys): no index added.
The order indexes are built inside the migration's transaction (not CONCURRENTLY): on a million
orders that holds order writes for a few seconds, so apply it outside a sale.
"""

from __future__ import annotations

import peewee as pw

from models.rollup_store import DailyMetric, RollupState

TABLES: list[type[pw.Model]] = [DailyMetric, RollupState]

INDEXES = (
    'CREATE INDEX IF NOT EXISTS order_paid_at ON "order" (paid_at) WHERE paid_at IS NOT NULL',
    'CREATE INDEX IF NOT EXISTS order_refunded_at ON "order" (refunded_at) WHERE refunded_at IS NOT NULL',
    "CREATE INDEX IF NOT EXISTS notification_failed ON notification (channel) WHERE state = 'failed'",
    "CREATE INDEX IF NOT EXISTS sku_low_stock ON sku (id) WHERE low_stock_flag",
)


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
    for ddl in INDEXES:
        db.execute_sql(ddl)
