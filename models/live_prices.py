"""Tiered live prices: a price ladder per pinned product per session (seed 001: "first 100 at
9.9", "every 100 buyers -10 yuan").

Rule (one place): a pin's ladder is an ordered list of tiers, each `units` places at
`price_fen`. An order for `q` units takes its places in the FIRST tier that still has room for
all `q` (`taken + q <= units`), and pays that tier's price; the tier is decided when the order
is placed and recorded on the order's 1:1 `live_order_price` row. A tier price is final: no
creator markup is added (the order's markup_fen is 0; commission is computed on what was paid).
An order that expires or is refunded gives its places back to ITS tier exactly once (the 1:1
row's `released` flag flips by a conditional update); a late payment of an expired order takes
its places back only if its tier still has room (else the payment is refunded).

Two spec forms (JSON, from scheduling), validated whole by `parse_ladder`:
- {"tiers": [{"units": 50, "price_fen": 990}, {"units": 50, "price_fen": 1990}]}: in order;
  a tier may instead name its buyer numbers, {"first": 1, "last": 50, "price_fen": 990}
  (1-based, inclusive): such ranges must follow one another without gap or overlap.
- {"step": {"start_fen": 9900, "drop_fen": 1000, "every": 100, "floor_fen": 5900,
  "units": 500}}: the price falls by drop_fen every `every` buyers down to floor_fen; the step
  rule is materialised into tier rows (the floor tier takes all remaining units).

Exactness: claims are conditional UPDATEs on the tier rows inside the order's transaction (the
pin's tier rows are locked first on PostgreSQL; SQLite transactions are IMMEDIATE). The sold-out
gate in Redis (models/live_gate.py) only spares refused requests the database: every accepted
order is re-checked here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import peewee as pw

from models import assist
from models.db import BaseModel, execute, for_update, placeholders, utcnow
from models.errors import Conflict, InvalidInput
from models.live import LivePin

MAX_TIERS = 20
MAX_UNITS = 1_000_000  # all tiers of one ladder together


class LiveTier(BaseModel):
    pin = pw.ForeignKeyField(LivePin, backref="tiers", on_delete="CASCADE", index=False)
    seq = pw.IntegerField()  # 0 = the first tier
    units = pw.IntegerField()
    price_fen = pw.IntegerField()
    taken = pw.IntegerField(default=0)  # places held by pending or paid orders

    class Meta:
        table_name = "live_tier"
        indexes = ((("pin", "seq"), True),)
        constraints = [pw.SQL("CHECK (taken >= 0 AND taken <= units)")]


class LiveOrderPrice(BaseModel):
    """What a live order was priced at: its tier (or an assist unlock), 1:1 with the order."""

    order_id = pw.BigIntegerField(primary_key=True)
    session_id = pw.BigIntegerField()
    pin_id = pw.BigIntegerField()
    tier_id = pw.BigIntegerField(null=True)  # None: a pin without ladder (assist price only)
    tier_seq = pw.IntegerField(null=True)
    price_fen = pw.IntegerField()  # unit price paid
    quantity = pw.IntegerField()
    assist_id = pw.BigIntegerField(null=True)  # the assist unlock the price came from
    released = pw.BooleanField(default=False)  # places given back (expired / refunded)
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "live_order_price"
        indexes = ((("session_id", "pin_id"), False),)


@dataclass(frozen=True)
class TierSpec:
    units: int
    price_fen: int


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"ladder: {name} must be a whole number", code="invalid_ladder")
    return value


def _check_price(price: int, retail_fen: int) -> None:
    if price < 0:
        raise InvalidInput("ladder: a price cannot be negative", code="negative_price")
    if price == 0:
        raise InvalidInput("ladder: a price must be at least 1 fen (free prizes go through the lottery)",
                           code="zero_price")
    if price > retail_fen:
        raise InvalidInput(f"ladder: a price of {price} fen is over the retail price ({retail_fen} fen)",
                           code="price_over_retail")


def parse_ladder(spec: dict | None, retail_fen: int) -> list[TierSpec]:
    """The tiers of a ladder spec (see the module docstring), validated whole; [] for None.

    Raises InvalidInput with code invalid_ladder (shape), negative_price, zero_price,
    price_over_retail, zero_units, overlapping_tiers (ranges that overlap or leave a gap),
    duplicate_tiers (two neighbouring tiers at one price), too_many_tiers, too_many_units.
    """
    if spec is None:
        return []
    if not isinstance(spec, dict) or len(spec) != 1 or not ({"tiers", "step"} & set(spec)):
        raise InvalidInput('ladder: give either {"tiers": [...]} or {"step": {...}}', code="invalid_ladder")
    tiers = _steps(spec["step"], retail_fen) if "step" in spec else _tiers(spec["tiers"], retail_fen)
    if not tiers:
        raise InvalidInput("ladder: at least one tier", code="invalid_ladder")
    if len(tiers) > MAX_TIERS:
        raise InvalidInput(f"ladder: at most {MAX_TIERS} tiers", code="too_many_tiers")
    if sum(t.units for t in tiers) > MAX_UNITS:
        raise InvalidInput(f"ladder: at most {MAX_UNITS} units in all", code="too_many_units")
    for before, after in zip(tiers, tiers[1:], strict=False):
        if before.price_fen == after.price_fen:
            raise InvalidInput("ladder: two neighbouring tiers have the same price; make them one",
                               code="duplicate_tiers")
    return tiers


def _tiers(items: Any, retail_fen: int) -> list[TierSpec]:
    if not isinstance(items, list) or len(items) > MAX_TIERS * 5:
        raise InvalidInput("ladder: tiers must be a list", code="invalid_ladder")
    tiers: list[TierSpec] = []
    next_first = 1
    for item in items:
        if not isinstance(item, dict) or "price_fen" not in item:
            raise InvalidInput("ladder: each tier needs price_fen and units (or first and last)",
                               code="invalid_ladder")
        price = _int(item["price_fen"], "price_fen")
        if set(item) == {"units", "price_fen"}:
            units = _int(item["units"], "units")
        elif set(item) == {"first", "last", "price_fen"}:
            first, last = _int(item["first"], "first"), _int(item["last"], "last")
            if last < first:
                raise InvalidInput("ladder: a tier's last buyer comes before its first", code="zero_units")
            if first != next_first:
                raise InvalidInput(f"ladder: tier starting at buyer {first} should start at {next_first} "
                                   "(tiers overlap or leave a gap)", code="overlapping_tiers")
            units = last - first + 1
        else:
            raise InvalidInput("ladder: a tier is {units, price_fen} or {first, last, price_fen}",
                               code="invalid_ladder")
        _check_price(price, retail_fen)
        if units <= 0:
            raise InvalidInput("ladder: every tier needs at least one unit", code="zero_units")
        next_first += units
        tiers.append(TierSpec(units, price))
    return tiers


_STEP_KEYS = {"start_fen", "drop_fen", "every", "floor_fen", "units"}


def _steps(step: Any, retail_fen: int) -> list[TierSpec]:
    if not isinstance(step, dict) or set(step) != _STEP_KEYS:
        raise InvalidInput("ladder: step needs start_fen, drop_fen, every, floor_fen and units",
                           code="invalid_ladder")
    start, drop, every, floor, units = (_int(step[k], k) for k in
                                        ("start_fen", "drop_fen", "every", "floor_fen", "units"))
    _check_price(start, retail_fen)
    _check_price(floor, retail_fen)
    if every <= 0 or units <= 0:
        raise InvalidInput("ladder: every and units must be at least 1", code="zero_units")
    if drop <= 0 or floor > start:
        raise InvalidInput("ladder: the price must drop (drop_fen >= 1, floor_fen <= start_fen)",
                           code="invalid_ladder")
    if units > MAX_UNITS:
        raise InvalidInput(f"ladder: at most {MAX_UNITS} units in all", code="too_many_units")
    tiers: list[TierSpec] = []
    left, price = units, start
    while left > 0:
        if len(tiers) >= MAX_TIERS:
            raise InvalidInput(f"ladder: the step rule makes more than {MAX_TIERS} tiers", code="too_many_tiers")
        size = left if price == floor else min(every, left)
        tiers.append(TierSpec(size, price))
        left -= size
        price = max(price - drop, floor)
    return tiers


def save_ladder(pin: LivePin, tiers: list[TierSpec]) -> None:
    """Write a pin's tiers (in the caller's transaction). A ladder may be replaced while none
    of its places is taken; Conflict (ladder_in_use) after that."""
    pin_id = pin.id if isinstance(pin, LivePin) else int(pin)
    if LiveTier.select().where((LiveTier.pin == pin_id) & (LiveTier.taken > 0)).exists():
        raise Conflict("this product's live prices already have buyers", code="ladder_in_use")
    LiveTier.delete().where(LiveTier.pin == pin_id).execute()
    if tiers:
        LiveTier.insert_many([{"pin": pin_id, "seq": i, "units": t.units, "price_fen": t.price_fen}
                              for i, t in enumerate(tiers)]).execute()


def tiers_of(pin_id: int) -> list[LiveTier]:
    return list(LiveTier.select().where(LiveTier.pin == pin_id).order_by(LiveTier.seq))


def current_offer(tiers: list[tuple[int, int, int, int]]) -> dict:
    """What a ladder offers now, from its tiers as (seq, units, taken, price_fen) in order: the
    price and 1-based number of the first tier with room, the places left there and in all, and
    whether it is sold out (then the last tier's price is shown)."""
    left_total = sum(units - taken for _, units, taken, _ in tiers)
    for seq, units, taken, price in tiers:
        if taken < units:
            return {"price_fen": price, "tier": seq + 1, "left_at_tier": units - taken,
                    "left_total": left_total, "sold_out": False}
    last = tiers[-1]
    return {"price_fen": last[3], "tier": last[0] + 1, "left_at_tier": 0, "left_total": 0, "sold_out": True}


def offers(session_id: int) -> dict[int, dict]:
    """Per pin id of the session that has a ladder: {"price_fen", "tier", "left_at_tier",
    "left_total", "sold_out"} as of now (one query)."""
    rows = execute("SELECT t.pin_id, t.seq, t.units, t.taken, t.price_fen FROM live_tier t "
                   "JOIN live_pin p ON p.id = t.pin_id WHERE p.session_id = %s ORDER BY t.pin_id, t.seq",
                   (session_id,)).fetchall()
    by_pin: dict[int, list[tuple[int, int, int, int]]] = {}
    for pin_id, seq, units, taken, price in rows:
        by_pin.setdefault(pin_id, []).append((seq, units, taken, price))
    return {pin_id: current_offer(tiers) for pin_id, tiers in by_pin.items()}


def left_of(pin_id: int) -> int:
    """Places left at all tiers of a pin (what the sold-out gate is loaded with)."""
    return int(execute("SELECT COALESCE(SUM(units - taken), 0) FROM live_tier WHERE pin_id = %s",
                       (pin_id,)).fetchone()[0])


@dataclass(frozen=True)
class Claim:
    tier_id: int
    seq: int
    price_fen: int


def claim(pin_id: int, quantity: int) -> Claim | None:
    """Take `quantity` places in the first tier of the pin with room for all of them, inside the
    caller's transaction; None when no tier has room (sold out at live prices).

    The pin's tier rows are locked (PostgreSQL) before the first tier with room is chosen, and
    the UPDATE is conditional anyway: two buyers never take the same last place."""
    rows = execute("SELECT id, seq, units, taken, price_fen FROM live_tier WHERE pin_id = %s ORDER BY seq"
                   + for_update(), (pin_id,)).fetchall()
    for tier_id, seq, units, taken, price in rows:
        if taken + quantity > units:
            continue
        if execute("UPDATE live_tier SET taken = taken + %s WHERE id = %s AND taken + %s <= units",
                   (quantity, tier_id, quantity)).rowcount:
            return Claim(tier_id, seq, price)
    return None


def record(order_id: int, session_id: int, pin_id: int, claim_: Claim | None, price_fen: int,
           quantity: int, assist_id: int | None) -> None:
    """The order's 1:1 price row (in the order's transaction)."""
    execute("INSERT INTO live_order_price (order_id, session_id, pin_id, tier_id, tier_seq, price_fen, "
            "quantity, assist_id, released, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (order_id, session_id, pin_id, claim_.tier_id if claim_ else None,
             claim_.seq if claim_ else None, price_fen, quantity, assist_id, False,
             LiveOrderPrice.created_at.db_value(utcnow())))


def give_back(order_ids: list[int]) -> list[int]:
    """Give the places of these (expired or refunded) orders back to their tiers, exactly once
    per order: the 1:1 row's `released` flag flips by a conditional update first. Runs in the
    caller's transaction; returns the pin ids that got places back. Orders without a live price
    row cost one indexed lookup."""
    if not order_ids:
        return []
    marks = placeholders(order_ids)
    rows = execute(f"SELECT order_id, tier_id, quantity, pin_id FROM live_order_price "
                   f"WHERE order_id IN ({marks}) AND NOT released", list(order_ids)).fetchall()
    pins: list[int] = []
    for order_id, tier_id, quantity, pin_id in rows:
        flipped = execute("UPDATE live_order_price SET released = %s WHERE order_id = %s AND NOT released",
                          (True, order_id)).rowcount
        if flipped and tier_id is not None:
            execute("UPDATE live_tier SET taken = taken - %s WHERE id = %s", (quantity, tier_id))
            pins.append(pin_id)
    return pins


def released(order_ids: list[int]) -> list[int]:
    """The hook of every path that ends an order without a sale (expiry, refund), in its
    transaction: places back to their tiers (`give_back`) and an assist used by the order freed
    while its window lasts (models/assist.py). Returns the pin ids that got places back."""
    pins = give_back(order_ids)
    if order_ids:
        assist.release_for_orders(order_ids)
    return pins


def reclaim(order_id: int) -> bool:
    """A late payment for an expired order: take its places back in ITS tier if that tier still
    has room (never another tier: the price is the order's), and its assist back if it paid an
    assist price. True when the order holds them again (or never had any); False when the tier
    filled up or the assist is gone meanwhile (the caller's savepoint undoes the rest)."""
    row = execute("SELECT tier_id, quantity, released, assist_id FROM live_order_price WHERE order_id = %s",
                  (order_id,)).fetchone()
    if row is None or not row[2]:
        return True
    tier_id, quantity, _, assist_id = row
    if assist_id is not None and not assist.consume(assist_id, order_id):
        return False  # its assist was freed and used by another order (or its window closed)
    if tier_id is not None and not execute(
            "UPDATE live_tier SET taken = taken + %s WHERE id = %s AND taken + %s <= units",
            (quantity, tier_id, quantity)).rowcount:
        return False
    execute("UPDATE live_order_price SET released = %s WHERE order_id = %s", (False, order_id))
    return True


def price_of(order_id: int) -> LiveOrderPrice | None:
    return LiveOrderPrice.get_or_none(LiveOrderPrice.order_id == order_id)

