"""Loading a `risk_data.Plan` into the (scratch) database for `qianxing bench risk`: COPY on
PostgreSQL and executemany on SQLite (models/bulk.py), never the ORM per row. Signals carry
keyed hashes (models/risk_signals.hmac_hex) under the bench's own key, as the edges store them:
the plan's IPs, device ids and phone numbers are already in their normal form."""

from __future__ import annotations

import datetime as dt

from qianxing.bench.risk_data import SKUS, Plan, price

BENCH_KEY = "qianxing-bench-risk-key"  # the HMAC key of the scratch shop's signals (not a secret)


_ORDER_COLUMNS = ("id", "no", "user_id", "sku_id", "quantity", "unit_price_fen", "amount_fen", "status",
                  "ref_code", "seller_id", "markup_fen", "cost_fen", "client_ip", "risk_hold", "created_at",
                  "expires_at", "paid_at")
_SIGNAL_COLUMNS = ("at", "event", "user_id", "order_id", "ip_hash", "ip_net", "device_hash", "payer_hash")
CHUNK = 50_000


def write(p: Plan, *, postgres: bool, log: object = None) -> None:
    """Users, creators, SKUs, paid orders, their risk signals and phones (fresh database)."""
    from models.bulk import insert_rows
    from models.db import db, execute
    from models.risk_signals import hmac_hex

    now, key = p.now, BENCH_KEY
    cache: dict[str, str] = {}

    def h(value: str | None) -> str | None:
        if value is None:
            return None
        got = cache.get(value)
        if got is None:
            got = cache[value] = hmac_hex(key, value)
        return got

    true = True if postgres else 1
    with db.atomic():
        execute("SELECT 1")  # COPY bypasses peewee's lazy BEGIN: open the transaction first
        insert_rows('"user"', ("id", "openid", "nickname", "created_at"),
                    [(uid, f"bench-u{uid}", "bench", created) for uid, created in sorted(p.users.items())])
        insert_rows("creator", ("id", "user_id", "code", "name", "rank", "parent_id", "grandparent_id",
                                "bound_via", "bound_at", "active", "created_at"),
                    [(cid, cid, f"C{cid}", "bench", rank, par, grand, "typed" if par else None,
                      now if par else None, true, now) for cid, rank, par, grand in p.creators])
        for k in range(1, len(SKUS) + 1):
            retail, supply = price(k)
            execute("INSERT INTO product (id, title, description, active, created_at) VALUES (%s, %s, '', %s, %s)",
                    (k, f"bench risk product {k}", True, now))
            execute("INSERT INTO sku (id, product_id, code, name, kind, supply_price_fen, retail_price_fen, "
                    "stock, commission_bp, max_markup_bp, min_rank, active, low_stock_flag, created_at) "
                    "VALUES (%s, %s, %s, %s, 'serial', %s, %s, 0, %s, NULL, 0, %s, %s, %s)",
                    (k, k, f"RISK-{k}", f"bench risk sku {k}", supply, retail, 1500 + 200 * k, True, False, now))
        insert_rows("risk_user", ("user_id", "phone_hash", "phone_seg", "updated_at"),
                    [(uid, h(number), number[:3], now) for uid, number in sorted(p.phones.items())])
    for start in range(0, len(p.orders), CHUNK):
        rows, signals = [], []
        for oid, o in enumerate(p.orders[start:start + CHUNK], start=start + 1):
            retail, supply = price(o.sku)
            paid = o.at + dt.timedelta(seconds=o.pay_delay_s)
            rows.append((oid, f"BR{oid}", o.user, o.sku, o.qty, retail, retail * o.qty, "paid",
                         f"C{o.seller}" if o.seller else None, o.seller, 0, supply * o.qty, o.ip,
                         not true, o.at, o.at + dt.timedelta(minutes=15), paid))
            signals.append((o.at, "order", o.user, oid, h(o.ip), o.ip.rsplit(".", 1)[0], h(o.device), h(o.payer)))
        with db.atomic():
            execute("SELECT 1")
            insert_rows('"order"', _ORDER_COLUMNS, rows)
            insert_rows("risk_signal", _SIGNAL_COLUMNS, signals)
        if callable(log):
            log(f"orders: {start + len(rows)}/{len(p.orders)}")
    if postgres:
        for table in ("user", "creator", "product", "sku", "order"):
            execute(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), (SELECT max(id) FROM \"{table}\"))")


