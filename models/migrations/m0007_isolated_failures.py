"""A key returned to the pool can be sold again, and batch jobs set failing items aside.

- `voucher.card_key_id` was unique over every voucher ever written. A refund returns an
  unrevealed key to the pool while the refunded (revoked) voucher keeps pointing at it, so the
  next order that reserved that key could never be delivered: its voucher insert failed, the
  whole delivery batch rolled back, and every later delivery with it. The uniqueness now holds
  for live vouchers only (`WHERE revoked_at IS NULL`): a key is never in two live vouchers, and
  the refunded voucher keeps its history.
- `item_failure`: items a batch job could not process, with their reason and next retry
  (models/failures.py).
"""

from __future__ import annotations

import peewee as pw

from models.failures import ItemFailure

TABLES = [ItemFailure]

LIVE_KEY_INDEX = ("CREATE UNIQUE INDEX IF NOT EXISTS voucher_live_card_key ON voucher (card_key_id) "
                  "WHERE revoked_at IS NULL")
OPEN_FAILURES_INDEX = ("CREATE INDEX IF NOT EXISTS item_failure_open ON item_failure (job, next_retry_at) "
                       "WHERE resolved_at IS NULL")


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
    db.execute_sql(LIVE_KEY_INDEX)
    db.execute_sql('DROP INDEX IF EXISTS "voucher_card_key_id"')
    db.execute_sql(OPEN_FAILURES_INDEX)
