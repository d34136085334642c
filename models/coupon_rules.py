"""What coupons take off one order: one pure function, the only place the rule lives.

Inputs, all integer fen or basis points (100 bp = 1%): the order's unit price and quantity
(amount = unit x quantity, the price before coupons, the seller's markup included), and each
coupon's kind and figures.

Rule:
1. Kinds. 满减 AMOUNT_OFF: `amount_off_fen` off when what is left of the order reaches
   `threshold_fen`. PERCENT_OFF: floor(left x percent_bp / 10_000), at most `cap_fen` when set.
   FIXED_PRICE: the unit price becomes `fixed_price_fen` (SKU-scoped coupons only, checked when
   the coupon is created); the discount is (unit - fixed) x quantity, never negative.
2. Stacking: several coupons on one order only when every one of them is stackable, and never
   the same coupon twice (`can_stack`).
3. Order of application: fixed price, then amount off, then percent off (coupons of one kind
   in the order given); each works on what the ones before it left. A threshold is therefore
   checked against what is left when that coupon comes (the stricter reading: a fixed price
   that brings an order under a 满减 threshold leaves the 满减 out).
4. At least MIN_PAYABLE_FEN (1 fen) stays payable: WeChat Pay cannot charge 0, so a coupon
   never makes an order free; each coupon's part is cut so that the total discount stays
   within [0, amount - 1] (an order of 0 fen, a prize, has no discount at all).
5. Every product is rounded DOWN to whole fen (floor division): the platform never gives more
   than the coupon says.

A coupon whose part comes to 0 (threshold not reached, fixed price not below the price) does not
apply: `models/coupons.py` refuses it instead of spending a use on nothing.

Scope (`applies`): the whole shelf, or the listed products, or the listed SKUs; an exclusion
(product or SKU) wins over everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

BP = 10_000
MIN_PAYABLE_FEN = 1
AMOUNT_OFF, PERCENT_OFF, FIXED_PRICE = "amount_off", "percent_off", "fixed_price"
_ORDER_OF_KINDS = {FIXED_PRICE: 0, AMOUNT_OFF: 1, PERCENT_OFF: 2}


@dataclass(frozen=True)
class CouponFacts:
    kind: str  # amount_off | percent_off | fixed_price
    threshold_fen: int = 0
    amount_off_fen: int = 0
    percent_bp: int = 0
    cap_fen: int | None = None
    fixed_price_fen: int | None = None
    stackable: bool = False


@dataclass(frozen=True)
class OrderFacts:
    unit_price_fen: int
    quantity: int

    @property
    def amount_fen(self) -> int:
        return self.unit_price_fen * self.quantity


@dataclass(frozen=True)
class Discount:
    discount_fen: int  # all coupons together, within [0, amount - 1]
    unit_price_fen: int | None  # a fixed price's unit price, else None (unchanged)
    parts: tuple[int, ...]  # each coupon's part, in the order the coupons were given


def can_stack(coupon_ids: Sequence[int], stackable: Sequence[bool]) -> bool:
    """One coupon, or several different coupons that are all stackable."""
    if len(coupon_ids) <= 1:
        return True
    return len(set(coupon_ids)) == len(coupon_ids) and all(stackable)


def discount(coupons: Sequence[CouponFacts], order: OrderFacts) -> Discount:
    """The coupons' discount on the order (the module docstring has the rule)."""
    if order.unit_price_fen < 0 or order.quantity < 1:
        raise ValueError("an order has a unit price >= 0 and a quantity >= 1")
    amount = order.amount_fen
    left = amount
    unit = order.unit_price_fen
    fixed_unit: int | None = None
    parts = [0] * len(coupons)
    for i in sorted(range(len(coupons)), key=lambda k: (_ORDER_OF_KINDS.get(coupons[k].kind, 9), k)):
        c = coupons[i]
        room = max(left - MIN_PAYABLE_FEN, 0)
        if c.kind == FIXED_PRICE:
            fixed = c.fixed_price_fen if c.fixed_price_fen is not None else unit
            raw = max(unit - max(fixed, 0), 0) * order.quantity
            if 0 < raw <= room:  # a fixed price of 0 would make the order free: left out
                unit = max(fixed, 0)
                fixed_unit = unit
                parts[i] = raw
                left -= raw
            continue
        if c.kind == AMOUNT_OFF:
            raw = max(c.amount_off_fen, 0) if left >= max(c.threshold_fen, 0) else 0
        elif c.kind == PERCENT_OFF:
            raw = left * min(max(c.percent_bp, 0), BP) // BP
            if c.cap_fen is not None:
                raw = min(raw, max(c.cap_fen, 0))
        else:
            raise ValueError(f"unknown coupon kind {c.kind!r}")
        take = min(raw, room)
        parts[i] = take
        left -= take
    return Discount(discount_fen=amount - left, unit_price_fen=fixed_unit, parts=tuple(parts))


def applies(scope: str, targets: Iterable[tuple[str, int, bool]], *, sku_id: int, product_id: int) -> bool:
    """Whether a coupon of this scope (shelf | product | sku) and these targets (target kind,
    id, exclude) covers the SKU `sku_id` of the product `product_id`. Exclusions win."""
    included = False
    for target, target_id, exclude in targets:
        hit = (target == "sku" and target_id == sku_id) or (target == "product" and target_id == product_id)
        if hit and exclude:
            return False
        if hit and target == scope:
            included = True
    return scope == "shelf" or included
