"""Coupons (issue 14, seed 002): full reduction (满减), percentage off with a cap, a fixed price
for a SKU; scoped to the shelf, products or SKUs with exclusions; funded by the platform or by a
creator (then only through that creator's link, out of that creator's earnings on the order).

The one entry for every caller (names below are re-exported): the tables are
models/coupon_tables.py, the pure rule (what coupons take off an order) models/coupon_rules.py,
making and handing out coupons (create_coupon, claim, issue, campaign_coupon, wallet,
expire_grants) models/coupon_issue.py; the redemption life cycle is here:

    reserve   in the order's transaction: checks, one conditional UPDATE per coupon takes a use
              (uses < max_uses, spent + discount <= budget), the grant AVAILABLE -> RESERVED by a
              conditional UPDATE, a redemption row RESERVED with its discount and funder
    paid_statements   on payment: redemption CONSUMED, grant USED
    released  expired or cancelled unpaid order: RELEASED, use and budget back, grant AVAILABLE
              (or EXPIRED when past its end)
    reclaim   a late payment of an expired order: the use taken back when there is still room
    on_refund refunded: RETURNED, use and budget back, the grant AVAILABLE if restored and valid

Each step flips the redemption's state with a conditional UPDATE ... RETURNING and moves the
counters only for the rows it flipped, so a step run twice (RQ runs jobs at least once) or two
racing callers move them exactly once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from models import coupon_rules, network
from models.catalog import Sku
from models.coupon_issue import (
    CAMPAIGNS,
    CouponSpec,
    WalletItem,
    campaign_coupon,
    claim,
    create_coupon,
    describe,
    expire_grants,
    grant_expiry,
    issue,
    normalize_code,
    wallet,
)
from models.coupon_tables import (
    TABLES,
    Coupon,
    CouponGrant,
    CouponKind,
    CouponRedemption,
    CouponScope,
    GrantState,
    RedemptionState,
    Scope,
)
from models.db import db, execute, placeholders, utcnow
from models.errors import Conflict, InvalidInput, NotFound
from models.pricing import selling_price

if TYPE_CHECKING:
    from models.orders import Order

__all__ = [
    "CAMPAIGNS", "TABLES", "Applied", "Coupon", "CouponGrant", "CouponKind", "CouponRedemption", "CouponScope",
    "CouponSpec", "GrantState", "RedemptionState", "Scope", "WalletItem", "campaign_coupon", "claim",
    "create_coupon", "describe", "expire_grants", "grant_expiry", "issue", "normalize_code", "on_refund",
    "paid_statements", "Quote", "quote", "reclaim", "released", "reserve", "wallet",
]

_BOUGHT_BEFORE = ('SELECT 1 FROM "order" WHERE user_id = %s AND status IN (%s, %s, %s) LIMIT 1')
# One use of a coupon, taken only while there is room: the count and the budget are the limits.
_TAKE_USE = ("UPDATE coupon SET uses = uses + 1, spent_fen = spent_fen + %s WHERE id = %s AND active "
             "AND (max_uses IS NULL OR uses < max_uses) AND (budget_fen IS NULL OR spent_fen + %s <= budget_fen)")
_GIVE_USE = "UPDATE coupon SET uses = uses - 1, spent_fen = spent_fen - %s WHERE id = %s"


def _ts(value: dt.datetime) -> object:
    return CouponGrant.expires_at.db_value(value)


@dataclass(frozen=True)
class Applied:
    """What the coupons of one order come to (models/coupon_rules.py decides it)."""

    amount_fen: int  # what the buyer pays
    unit_price_fen: int | None  # a fixed-price coupon's unit price, else None (unchanged)
    discount_fen: int  # amount before coupons - amount_fen
    creator_discount_fen: int  # the part funded by the order's seller (a creator's coupon)


def _facts(c: Coupon) -> coupon_rules.CouponFacts:
    return coupon_rules.CouponFacts(kind=c.kind, threshold_fen=c.threshold_fen, amount_off_fen=c.amount_off_fen,
                                    percent_bp=c.percent_bp, cap_fen=c.cap_fen, fixed_price_fen=c.fixed_price_fen,
                                    stackable=c.stackable)


@dataclass(frozen=True)
class _Draft:
    """The order facts `_checked` reads, for a quote (no order row)."""

    sku: Sku
    seller_id: int | None
    unit_price_fen: int
    quantity: int


def _checked(order: Order | _Draft, user_id: int, grant_ids: list[int], now: dt.datetime) -> list[CouponGrant]:
    """The grants, each checked against the order (no write). Raises the refusal."""
    if not grant_ids or any(not isinstance(g, int) or isinstance(g, bool) or g < 1 for g in grant_ids):
        raise InvalidInput("coupons are grant ids from your wallet", code="invalid_coupons")
    found = {g.id: g for g in CouponGrant.select(CouponGrant, Coupon).join(Coupon)
             .where(CouponGrant.id.in_(grant_ids) & (CouponGrant.user_id == user_id))}
    if len(found) != len(set(grant_ids)):
        raise NotFound("no such coupon in your wallet", code="coupon_not_found")  # never someone else's
    grants = [found[g] for g in grant_ids]
    targets: dict[int, list[tuple[str, int, bool]]] = {}
    for row in CouponScope.select().where(CouponScope.coupon.in_([g.coupon_id for g in grants])):
        targets.setdefault(row.coupon_id, []).append((row.target, row.target_id, row.exclude))
    for g in grants:
        c = g.coupon
        if g.state in (GrantState.RESERVED, GrantState.USED):
            raise Conflict("this coupon is already used by another order", code="coupon_in_use")
        if g.state == GrantState.REVOKED or not c.active:
            raise Conflict("this coupon has been withdrawn", code="coupon_inactive")
        if g.state == GrantState.EXPIRED or g.expires_at <= now or not c.starts_at <= now < c.ends_at:
            raise Conflict("this coupon is not valid now", code="coupon_expired")
        if not coupon_rules.applies(c.scope, targets.get(c.id, []), sku_id=order.sku.id,
                                    product_id=order.sku.product_id):
            raise InvalidInput(f"the coupon {c.name} does not cover this product", code="coupon_out_of_scope")
        if c.owner_creator_id is not None and order.seller_id != c.owner_creator_id:
            raise Conflict(f"the coupon {c.name} applies only through its creator's link", code="coupon_wrong_seller")
    if not coupon_rules.can_stack([g.coupon_id for g in grants], [g.coupon.stackable for g in grants]):
        raise InvalidInput("these coupons cannot be used together", code="coupon_not_stackable")
    if any(g.coupon.new_buyers_only for g in grants) and execute(_BOUGHT_BEFORE, (
            user_id, "paid", "delivered", "refunded")).fetchone() is not None:
        raise Conflict("this coupon is for a first order only", code="coupon_new_buyers_only")
    return grants


def reserve(order: Order, user_id: int, grant_ids: list[int]) -> Applied:
    """Inside the order's transaction (models/checkout.py): check each grant and take its use.
    Raises a DomainError (nothing kept: the order rolls back) when a coupon does not apply:
    NotFound coupon_not_found (not in the buyer's wallet), Conflict coupon_in_use, coupon_expired,
    coupon_inactive, coupon_wrong_seller, coupon_new_buyers_only, coupon_exhausted (the count
    or the budget is used up: one conditional UPDATE, so never over-redeemed), InvalidInput
    coupon_out_of_scope, coupon_not_stackable, coupon_not_applicable (it takes nothing off)."""
    now = utcnow()
    grants = _checked(order, user_id, list(grant_ids), now)
    got = coupon_rules.discount([_facts(g.coupon) for g in grants],
                                coupon_rules.OrderFacts(order.unit_price_fen, order.quantity))
    for g, part in zip(grants, got.parts, strict=True):
        if part <= 0:
            raise InvalidInput(f"the coupon {g.coupon.name} takes nothing off this order (threshold not reached)",
                               code="coupon_not_applicable")
    creator_part = 0
    # coupon rows in id order: two orders taking the same coupons lock them in one order
    for g, part in sorted(zip(grants, got.parts, strict=True), key=lambda pair: pair[0].coupon_id):
        if execute(_TAKE_USE, (part, g.coupon_id, part)).rowcount != 1:
            raise Conflict(f"the coupon {g.coupon.name} has run out", code="coupon_exhausted")
        if execute("UPDATE coupon_grant SET state = %s, order_id = %s WHERE id = %s AND state = %s",
                   (GrantState.RESERVED.value, order.id, g.id, GrantState.AVAILABLE.value)).rowcount != 1:
            raise Conflict("this coupon is already used by another order", code="coupon_in_use")
        creator = g.coupon.owner_creator_id
        creator_part += part if creator is not None else 0
        execute("INSERT INTO coupon_redemption (coupon_id, grant_id, order_id, user_id, discount_fen, creator_id, "
                "state, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (g.coupon_id, g.id, order.id, user_id, part, creator, RedemptionState.RESERVED.value,
                 _ts(now), _ts(now)))
    return Applied(amount_fen=order.amount_fen - got.discount_fen, unit_price_fen=got.unit_price_fen,
                   discount_fen=got.discount_fen, creator_discount_fen=creator_part)


@dataclass(frozen=True)
class Quote:
    """What an order would cost with these coupons (nothing reserved)."""

    unit_price_fen: int  # after a fixed price
    amount_before_fen: int  # retail + the creator's markup, times the quantity
    discount_fen: int
    amount_fen: int  # what the buyer would pay
    parts: tuple[int, ...]  # each coupon's part, in the order given


def quote(user_id: int, sku_code: str, quantity: int, *, ref: str | None, grant_ids: list[int]) -> Quote:
    """The price of an order of `quantity` x `sku_code` through `ref` with these coupons, under
    the same checks as `reserve` (and the same refusals), without writing or reserving anything.
    A coupon with no room left now is refused (coupon_exhausted); the order itself may still
    meet a refusal later (stock, limits), and the room may be gone by then."""
    sku = Sku.get_or_none((Sku.code == sku_code) & Sku.active)
    if sku is None:
        raise NotFound(f"unknown SKU {sku_code!r}", code="unknown_sku")
    if not isinstance(quantity, int) or not 1 <= quantity <= 1000:
        raise InvalidInput("quantity must be between 1 and 1000", code="invalid_quantity")
    who = network.attribute(ref, sku.id, None)
    draft = _Draft(sku, who.seller_id, selling_price(sku, who.markup_per_unit_fen), quantity)
    amount = draft.unit_price_fen * quantity
    if not grant_ids:
        return Quote(draft.unit_price_fen, amount, 0, amount, ())
    grants = _checked(draft, user_id, list(grant_ids), utcnow())
    got = coupon_rules.discount([_facts(g.coupon) for g in grants], coupon_rules.OrderFacts(draft.unit_price_fen,
                                                                                             quantity))
    for g, part in zip(grants, got.parts, strict=True):
        c = g.coupon
        if part <= 0:
            raise InvalidInput(f"the coupon {c.name} takes nothing off this order (threshold not reached)",
                               code="coupon_not_applicable")
        if (c.max_uses is not None and c.uses >= c.max_uses) or (
                c.budget_fen is not None and c.spent_fen + part > c.budget_fen):
            raise Conflict(f"the coupon {c.name} has run out", code="coupon_exhausted")
    return Quote(got.unit_price_fen or draft.unit_price_fen, amount, got.discount_fen, amount - got.discount_fen,
                 got.parts)


def _flip(order_ids: list[int], from_states: tuple[str, ...], to: str) -> list[tuple[int, int, int | None, int]]:
    """Redemptions of these orders moved from `from_states` to `to`, each by exactly one caller:
    (order id, coupon id, grant id, discount) of the rows this call flipped."""
    if not order_ids:
        return []
    return execute(
        f"UPDATE coupon_redemption SET state = %s, updated_at = %s WHERE order_id IN ({placeholders(order_ids)}) "
        f"AND state IN ({placeholders(from_states)}) RETURNING order_id, coupon_id, grant_id, discount_fen",
        (to, _ts(utcnow()), *order_ids, *from_states)).fetchall()


def released(order_ids: list[int]) -> int:
    """Give back the coupons of these unpaid orders (expired or cancelled): called by
    models/orders.py inside its transaction. Each redemption RESERVED -> RELEASED once; its
    coupon's use and budget given back; the grant back to AVAILABLE while still valid, else
    EXPIRED. Returns how many redemptions were released."""
    rows = _flip(list(order_ids), (RedemptionState.RESERVED.value,), RedemptionState.RELEASED.value)
    now = _ts(utcnow())
    for order_id, coupon_id, grant_id, part in sorted(rows, key=lambda r: r[1]):
        execute(_GIVE_USE, (part, coupon_id))
        if grant_id is not None:
            execute("UPDATE coupon_grant SET state = CASE WHEN expires_at > %s THEN %s ELSE %s END, order_id = NULL "
                    "WHERE id = %s AND state = %s AND order_id = %s",
                    (now, GrantState.AVAILABLE.value, GrantState.EXPIRED.value, grant_id,
                     GrantState.RESERVED.value, order_id))
    return len(rows)


class _NoRoom(Exception):
    pass


def reclaim(order_id: int) -> bool:
    """A late payment of an expired order whose coupons were released: take each use back
    (while the coupon still has room and the grant is not held by another order). True when
    the order's coupons are all back (or it had none): the payment may stand; False when one
    could not be taken back (nothing changed): the payment is to be refunded. In the payment's
    transaction; its own changes roll back to a savepoint on False."""
    try:
        with db.atomic():
            rows = _flip([order_id], (RedemptionState.RELEASED.value,), RedemptionState.RESERVED.value)
            for _order, coupon_id, grant_id, part in sorted(rows, key=lambda r: r[1]):
                if execute(_TAKE_USE, (part, coupon_id, part)).rowcount != 1:
                    raise _NoRoom
                if grant_id is not None and execute(
                        "UPDATE coupon_grant SET state = %s, order_id = %s WHERE id = %s AND state IN (%s, %s)",
                        (GrantState.RESERVED.value, order_id, grant_id, GrantState.AVAILABLE.value,
                         GrantState.EXPIRED.value)).rowcount != 1:
                    raise _NoRoom
    except _NoRoom:
        return False
    return True


def paid_statements(order_id: int) -> list[tuple[str, tuple]]:
    """The statements that consume the order's coupons when it is paid (for the payment
    transaction's execute_batch): redemptions RESERVED -> CONSUMED, grants RESERVED -> USED."""
    return [
        ("UPDATE coupon_redemption SET state = %s, updated_at = %s WHERE order_id = %s AND state = %s",
         (RedemptionState.CONSUMED.value, _ts(utcnow()), order_id, RedemptionState.RESERVED.value)),
        ("UPDATE coupon_grant SET state = %s WHERE order_id = %s AND state = %s",
         (GrantState.USED.value, order_id, GrantState.RESERVED.value)),
    ]


def on_refund(order_id: int, *, restore: bool) -> None:
    """Inside refund_order's transaction: the order's redemptions RETURNED (once), each
    coupon's use and budget given back; each grant back to AVAILABLE when `restore` (the
    COUPON_RESTORE_ON_REFUND setting) and still valid, else it stays USED."""
    rows = _flip([order_id], (RedemptionState.RESERVED.value, RedemptionState.CONSUMED.value),
                 RedemptionState.RETURNED.value)
    now = _ts(utcnow())
    for _order, coupon_id, grant_id, part in sorted(rows, key=lambda r: r[1]):
        execute(_GIVE_USE, (part, coupon_id))
        if grant_id is None:
            continue
        if restore:
            execute("UPDATE coupon_grant SET state = CASE WHEN expires_at > %s THEN %s ELSE %s END, "
                    "order_id = CASE WHEN expires_at > %s THEN NULL ELSE order_id END "
                    "WHERE id = %s AND order_id = %s AND state IN (%s, %s)",
                    (now, GrantState.AVAILABLE.value, GrantState.USED.value, now, grant_id, order_id,
                     GrantState.RESERVED.value, GrantState.USED.value))
        else:
            execute("UPDATE coupon_grant SET state = %s WHERE id = %s AND order_id = %s AND state = %s",
                    (GrantState.USED.value, grant_id, order_id, GrantState.RESERVED.value))
