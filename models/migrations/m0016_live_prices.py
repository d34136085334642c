"""Issue 13: the tiers of live price ladders (live_tier: units, price, places taken, unique per
pin and position) and the 1:1 price row of every live order (live_order_price, keyed by the
order id: its tier, price, assist unlock and whether its places were given back)."""

from __future__ import annotations

import peewee as pw

from models.live_prices import LiveOrderPrice, LiveTier

TABLES: list[type[pw.Model]] = [LiveTier, LiveOrderPrice]


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
