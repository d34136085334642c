"""Drop indexes that every order, claim, sale or event write paid for but no query used, and
add (status, expires_at) for the expiry sweep. The model classes declare the same set, so a
fresh database created by migration 0001 already matches; this brings older ones in line."""

from __future__ import annotations

import peewee as pw

DROPPED = (
    "order_status", "order_expires_at", "order_user_id", "order_sku_id",
    "card_key_sku_id_state", "event_created_at", "notification_user_id",
    "voucher_order_id", "voucher_sku_id", "order_item_order_id", "order_item_sku_id",
)


def up(db: pw.Database) -> None:
    for name in DROPPED:
        db.execute_sql(f'DROP INDEX IF EXISTS "{name}"')
    db.execute_sql('CREATE INDEX IF NOT EXISTS "order_status_expires_at" ON "order" (status, expires_at)')
