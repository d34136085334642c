"""Commerce backbone: users, catalog, vault, orders, payments, delivery, ledger, events."""

from __future__ import annotations

import peewee as pw

from models.catalog import BundleItem, Product, Sku
from models.delivery import TopupRequest, Voucher
from models.events import Event
from models.inventory import OrderItem
from models.ledger import APPEND_ONLY_TABLES, LedgerTransaction, Posting
from models.notifications import Notification, NotificationAttempt
from models.orders import Order
from models.payments import Payment, Refund
from models.users import User
from models.vault import CardKey

TABLES = [User, Product, Sku, BundleItem, CardKey, Order, OrderItem, Payment, Refund, Voucher,
          TopupRequest, Notification, NotificationAttempt, LedgerTransaction, Posting, Event]


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
    postgres = isinstance(db.obj if isinstance(db, pw.DatabaseProxy) else db, pw.PostgresqlDatabase)
    if postgres:
        # Claims scan only available keys; a partial index keeps that scan short.
        db.execute_sql(
            "CREATE INDEX IF NOT EXISTS card_key_available ON card_key (sku_id, id) "
            "WHERE state = 'available'"
        )
        db.execute_sql(
            "CREATE OR REPLACE FUNCTION qx_append_only() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'ledger rows are append-only'; END; $$ LANGUAGE plpgsql"
        )
        for table in APPEND_ONLY_TABLES:
            db.execute_sql(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            db.execute_sql(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION qx_append_only()"
            )
    else:
        db.execute_sql(
            "CREATE INDEX IF NOT EXISTS card_key_available ON card_key (sku_id, id) "
            "WHERE state = 'available'"
        )
        for table in APPEND_ONLY_TABLES:
            for op in ("UPDATE", "DELETE"):
                db.execute_sql(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'ledger rows are append-only'); END"
                )
