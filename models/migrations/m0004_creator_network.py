"""Creator network and money (issue 3): creators, star levels, creator prices, live sessions,
settlement and commission lines, activity, traffic tiers and withdrawals; order attribution
columns (seller, markup, cost, live session) and SKU commission terms; qx_place_order learns
the seller's markup.

A fresh database already has the new columns (migration 1 builds tables from today's model
classes), so columns are only added where missing.
"""

from __future__ import annotations

import peewee as pw
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, migrate

from models.activity import ActivityEvent, TrafficTier, seed_tiers
from models.catalog import Sku
from models.levels import StarLevel, seed_defaults
from models.live import LiveSession
from models.network import Creator, CreatorPrice
from models.orders import Order
from models.settlement import Commission, Settlement
from models.withdrawals import Withdrawal

TABLES = [Creator, StarLevel, CreatorPrice, LiveSession, Settlement, Commission, ActivityEvent,
          TrafficTier, Withdrawal]
APPEND_ONLY = ("commission",)

NEW_COLUMNS = {
    Order: ("seller_id", "markup_fen", "cost_fen", "live_id"),
    Sku: ("commission_bp", "max_markup_bp", "min_rank"),
}

INDEXES = (
    # Only attributed orders are indexed: the flash sale's anonymous orders pay nothing for it.
    'CREATE INDEX IF NOT EXISTS order_seller ON "order" (seller_id, status) WHERE seller_id IS NOT NULL',
    'CREATE INDEX IF NOT EXISTS order_live ON "order" (live_id) WHERE live_id IS NOT NULL',
    "CREATE INDEX IF NOT EXISTS creator_parent ON creator (parent_id) WHERE parent_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS creator_grandparent ON creator (grandparent_id) "
    "WHERE grandparent_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS settlement_pending ON settlement (order_id) WHERE state = 'pending'",
)

PLACE_ORDER = """
CREATE OR REPLACE FUNCTION qx_place_order(
    p_user bigint, p_no text, p_sku bigint, p_qty int, p_ref text, p_account text,
    p_key text, p_hash text, p_ip text, p_now timestamp, p_expires timestamp,
    p_max_user int, p_max_ip int, p_parts bigint[], p_kinds text[], p_needs int[],
    p_seller bigint, p_markup int, p_live bigint)
RETURNS TABLE (order_id bigint, unit_price int) AS $$
DECLARE
    v_price int;
    v_supply int;
    v_order bigint;
    v_got bigint;
    v_count bigint;
BEGIN
    -- The price is read here, in the order's transaction; the caller may hold cached metadata.
    SELECT s.retail_price_fen + p_markup, s.supply_price_fen INTO v_price, v_supply
      FROM sku s JOIN product p ON p.id = s.product_id
     WHERE s.id = p_sku AND s.active AND p.active;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'qx:unknown_sku';
    END IF;
    -- The buyer's row lock makes their concurrent orders count unpaid orders one at a time.
    PERFORM 1 FROM "user" WHERE id = p_user FOR UPDATE;
    INSERT INTO "order" (no, user_id, sku_id, quantity, unit_price_fen, amount_fen, status,
                         ref_code, seller_id, markup_fen, cost_fen, live_id, recipient_account,
                         idempotency_key, request_hash, client_ip, risk_hold, created_at, expires_at)
    VALUES (p_no, p_user, p_sku, p_qty, v_price, v_price * p_qty, 'pending', p_ref, p_seller,
            p_markup * p_qty, v_supply * p_qty, p_live, p_account, p_key, p_hash, p_ip, false,
            p_now, p_expires)
    RETURNING id INTO v_order;
    FOR i IN 1 .. coalesce(array_length(p_parts, 1), 0) LOOP
        IF p_kinds[i] = 'card_key' THEN
            UPDATE card_key SET state = 'reserved', order_id = v_order, reserved_at = p_now
             WHERE id IN (SELECT id FROM card_key WHERE sku_id = p_parts[i] AND state = 'available'
                          LIMIT p_needs[i] FOR UPDATE SKIP LOCKED);
            GET DIAGNOSTICS v_got = ROW_COUNT;
        ELSE
            UPDATE sku SET stock = stock - p_needs[i] WHERE id = p_parts[i] AND stock >= p_needs[i];
            GET DIAGNOSTICS v_got = ROW_COUNT;
            v_got := v_got * p_needs[i];
        END IF;
        IF v_got < p_needs[i] THEN
            RAISE EXCEPTION 'qx:out_of_stock:%', i - 1;
        END IF;
        INSERT INTO order_item (order_id, sku_id, kind, quantity)
        VALUES (v_order, p_parts[i], p_kinds[i], p_needs[i]);
    END LOOP;
    SELECT count(*) INTO v_count FROM "order"
     WHERE status = 'pending' AND expires_at > p_now AND user_id = p_user;
    IF v_count > p_max_user THEN
        RAISE EXCEPTION 'qx:too_many_unpaid_user';
    END IF;
    SELECT count(*) INTO v_count FROM "order"
     WHERE status = 'pending' AND expires_at > p_now AND client_ip = p_ip;
    IF v_count > p_max_ip THEN
        RAISE EXCEPTION 'qx:too_many_unpaid_ip';
    END IF;
    RETURN QUERY SELECT v_order, v_price;
END
$$ LANGUAGE plpgsql
"""


def _postgres(db: pw.Database) -> bool:
    return isinstance(db.obj if isinstance(db, pw.DatabaseProxy) else db, pw.PostgresqlDatabase)


def install_append_only(db: pw.Database) -> None:
    for table in APPEND_ONLY:
        if _postgres(db):
            db.execute_sql(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            db.execute_sql(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                           "FOR EACH ROW EXECUTE FUNCTION qx_append_only()")
        else:
            for op in ("UPDATE", "DELETE"):
                db.execute_sql(f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} "
                               f"ON {table} BEGIN SELECT RAISE(ABORT, 'ledger rows are append-only'); END")


def up(db: pw.Database) -> None:
    postgres = _postgres(db)
    migrator = PostgresqlMigrator(db) if postgres else SqliteMigrator(db)
    for model, names in NEW_COLUMNS.items():
        have = {c.name for c in db.get_columns(model._meta.table_name)}
        ops = [migrator.add_column(model._meta.table_name, name, model._meta.fields[name])
               for name in names if name not in have]
        if ops:
            migrate(*ops)
    db.create_tables(TABLES, safe=True)
    for ddl in INDEXES:
        db.execute_sql(ddl)
    install_append_only(db)
    seed_defaults()
    seed_tiers()
    if postgres:
        db.execute_sql("DROP FUNCTION IF EXISTS qx_place_order(bigint, text, bigint, int, text, "
                       "text, text, text, text, timestamp, timestamp, int, int, bigint[], text[], int[])")
        db.execute_sql(PLACE_ORDER.replace("%", "%%"))
