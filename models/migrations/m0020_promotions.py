"""Issue 14: group-buy, coupons, dormant wake-up, shopper self-service.

New tables: category, coupon, coupon_scope, coupon_grant, coupon_redemption, group_activity,
group_team, group_member, refund_request, wakeup_sent, subscribe_consent. New columns (with
database defaults, as the PL/pgSQL hot paths of migration 2 do not name them): order.discount_fen,
order.creator_discount_fen, order.group_hold, refund.attempts, refund.next_attempt_at,
product.category_id.

On PostgreSQL, qx_confirm_payment is replaced by its coupon-aware version (below).

A fresh database already has the columns (migration 1 builds tables from today's model
classes), so columns are only added where missing.
"""

from __future__ import annotations

import peewee as pw
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, migrate

from models import coupons, groupbuy, refund_requests, wakeup
from models.catalog import Category, Product
from models.orders import Order
from models.payments import Refund

TABLES: list[type[pw.Model]] = [Category, *coupons.TABLES, *groupbuy.TABLES, *refund_requests.TABLES,
                                *wakeup.TABLES]

NEW_COLUMNS: list[tuple[type[pw.Model], str]] = [
    (Order, "discount_fen"), (Order, "creator_discount_fen"), (Order, "group_hold"),
    (Refund, "attempts"), (Refund, "next_attempt_at"), (Product, "category_id"),
]


def _postgres(db: pw.Database) -> bool:
    return isinstance(db.obj if isinstance(db, pw.DatabaseProxy) else db, pw.PostgresqlDatabase)


def up(db: pw.Database) -> None:
    postgres = _postgres(db)
    migrator = PostgresqlMigrator(db) if postgres else SqliteMigrator(db)
    operations = []
    for model, name in NEW_COLUMNS:
        table = model._meta.table_name
        if name not in {c.name for c in db.get_columns(table)}:
            operations.append(migrator.add_column(table, name, model._meta.fields[name]))
    migrate(*operations)
    db.execute_sql("CREATE INDEX IF NOT EXISTS product_category_id ON product (category_id)")
    db.create_tables(TABLES, safe=True)
    if postgres:  # 'cancelled' is 9 characters: order.status is varchar(16) already
        db.execute_sql(DROP_CONFIRM_PAYMENT_0002)
        db.execute_sql(CONFIRM_PAYMENT.replace("%", "%%"))


# qx_confirm_payment (migration 0002) with coupons: one more argument (the discount account), so
# the old signature is dropped first (CREATE OR REPLACE cannot change the arguments). Otherwise
# the same function, statement for statement, plus the order's discount read under its lock, the
# `expense:discounts` leg of `ledger.sale_legs` and the statements of `coupons.paid_statements`.
# 'cancelled' returns to Python like 'expired' (models/payments.py: paid, then refunded).
DROP_CONFIRM_PAYMENT_0002 = ("DROP FUNCTION IF EXISTS qx_confirm_payment(text, text, bigint, text, timestamp, "
                             "text, text, text, text)")

CONFIRM_PAYMENT = """
CREATE OR REPLACE FUNCTION qx_confirm_payment(
    p_no text, p_txn text, p_fee bigint, p_source text, p_now timestamp,
    p_cash text, p_sales text, p_discounts text, p_paid_payload text, p_second_payload text)
RETURNS TABLE (order_id bigint, outcome text) AS $$
DECLARE
    r record;
    v_txn bigint;
BEGIN
    SELECT o.id, o.status, o.amount_fen, o.discount_fen, p.id AS payment_id,
           p.state AS payment_state, p.transaction_id AS paid_txn
      INTO r
      FROM "order" o LEFT JOIN payment p ON p.order_id = o.id
     WHERE o.no = p_no
       FOR UPDATE OF o;
    IF NOT FOUND THEN
        RETURN QUERY SELECT NULL::bigint, 'unknown_order'::text;
        RETURN;
    END IF;
    IF r.amount_fen <> p_fee THEN
        RETURN QUERY SELECT r.id::bigint, 'amount_mismatch'::text;
        RETURN;
    END IF;
    IF r.payment_state = 'paid' THEN
        IF r.paid_txn IS DISTINCT FROM p_txn THEN
            INSERT INTO event (topic, subject, actor, payload, created_at)
            VALUES ('payment.second_transaction', 'order:' || r.id, p_source, p_second_payload, p_now);
        END IF;
        RETURN QUERY SELECT r.id::bigint, 'duplicate'::text;
        RETURN;
    END IF;
    IF r.status <> 'pending' THEN
        -- 'expired' and 'cancelled' go back to Python (it may re-reserve, or refunds);
        -- anything else is a duplicate.
        RETURN QUERY SELECT r.id::bigint, r.status::text;
        RETURN;
    END IF;
    UPDATE "order" SET status = 'paid', paid_at = p_now WHERE id = r.id;
    IF r.payment_id IS NULL THEN
        INSERT INTO payment (order_id, provider, amount_fen, transaction_id, state, created_at, paid_at)
        VALUES (r.id, p_source, p_fee, p_txn, 'paid', p_now, p_now);
    ELSE
        UPDATE payment SET transaction_id = p_txn, state = 'paid', paid_at = p_now
         WHERE id = r.payment_id;
    END IF;
    -- The order's coupons are consumed with it (coupons.paid_statements). Qualified columns:
    -- order_id is also this function's output column.
    UPDATE coupon_redemption cr SET state = 'consumed', updated_at = p_now
     WHERE cr.order_id = r.id AND cr.state = 'reserved';
    UPDATE coupon_grant cg SET state = 'used'
     WHERE cg.order_id = r.id AND cg.state = 'reserved';
    -- The legs ledger.sale_legs writes: cash in, sales out at the price before coupons, and
    -- what the coupons took off as the discount expense.
    INSERT INTO ledger_transaction (key, kind, order_id, memo, created_at)
    VALUES ('payment:' || p_no, 'payment', r.id, '', p_now)
    ON CONFLICT (key) DO NOTHING RETURNING id INTO v_txn;
    IF v_txn IS NOT NULL THEN
        INSERT INTO posting (txn_id, account, amount_fen)
        VALUES (v_txn, p_cash, p_fee), (v_txn, p_sales, -(p_fee + r.discount_fen));
        IF r.discount_fen <> 0 THEN
            INSERT INTO posting (txn_id, account, amount_fen) VALUES (v_txn, p_discounts, r.discount_fen);
        END IF;
    END IF;
    INSERT INTO event (topic, subject, actor, payload, created_at)
    VALUES ('order.paid', 'order:' || r.id, p_source, p_paid_payload, p_now);
    RETURN QUERY SELECT r.id::bigint, 'paid'::text;
END
$$ LANGUAGE plpgsql
"""
