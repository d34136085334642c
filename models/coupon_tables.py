"""The coupon tables (issue 14) and their states; the services are models/coupons.py, which
re-exports everything here (import from there)."""

from __future__ import annotations

from enum import StrEnum

import peewee as pw

from models.db import BaseModel, utcnow


class CouponKind(StrEnum):
    AMOUNT_OFF = "amount_off"  # 满减: amount_off_fen off when the order reaches threshold_fen
    PERCENT_OFF = "percent_off"  # percent_bp off (1500 = 15% off), at most cap_fen
    FIXED_PRICE = "fixed_price"  # the unit price becomes fixed_price_fen (SKU scope only)


class Scope(StrEnum):
    SHELF = "shelf"
    PRODUCT = "product"
    SKU = "sku"


class GrantState(StrEnum):
    AVAILABLE = "available"
    RESERVED = "reserved"  # held by an unpaid order
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"


class RedemptionState(StrEnum):
    RESERVED = "reserved"  # in the order's transaction
    CONSUMED = "consumed"  # the order was paid
    RELEASED = "released"  # the unpaid order expired or was cancelled
    RETURNED = "returned"  # refunded; the use (and the grant, when still valid) given back


class Coupon(BaseModel):
    code = pw.CharField(max_length=40, null=True, unique=True)  # normalized claim code; None: issued only
    name = pw.CharField(max_length=60)
    kind = pw.CharField(max_length=16)
    threshold_fen = pw.IntegerField(default=0)
    amount_off_fen = pw.IntegerField(default=0)
    percent_bp = pw.IntegerField(default=0)
    cap_fen = pw.IntegerField(null=True)
    fixed_price_fen = pw.IntegerField(null=True)
    scope = pw.CharField(max_length=8, default=Scope.SHELF.value)
    owner_creator_id = pw.BigIntegerField(null=True)  # None: the platform funds it
    campaign = pw.CharField(max_length=24, null=True)  # group_welcome | lottery_loser | wakeup
    starts_at = pw.DateTimeField()
    ends_at = pw.DateTimeField()
    grant_valid_days = pw.IntegerField(null=True)  # a grant expires N days after issue (or at ends_at)
    max_uses = pw.IntegerField(null=True)  # total redemptions (reserved + consumed)
    budget_fen = pw.BigIntegerField(null=True)  # total discount (reserved + consumed)
    per_user_limit = pw.IntegerField(default=1)
    new_buyers_only = pw.BooleanField(default=False)
    stackable = pw.BooleanField(default=False)
    uses = pw.IntegerField(default=0)  # reserved + consumed redemptions: the max_uses counter
    spent_fen = pw.BigIntegerField(default=0)  # their discount: the budget counter
    active = pw.BooleanField(default=True)
    created_by = pw.CharField(max_length=64, default="system")
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "coupon"
        indexes = ((("campaign", "active"), False), (("owner_creator_id",), False))
        constraints = [pw.SQL("CHECK (uses >= 0 AND spent_fen >= 0)")]


class CouponScope(BaseModel):
    """A product or SKU the coupon covers (scope product/sku) or excludes (any scope)."""

    coupon = pw.ForeignKeyField(Coupon, backref="targets", on_delete="CASCADE", index=False)
    target = pw.CharField(max_length=8)  # product | sku
    target_id = pw.BigIntegerField()
    exclude = pw.BooleanField(default=False)

    class Meta:
        table_name = "coupon_scope"
        indexes = ((("coupon", "target", "target_id"), True),)


class CouponGrant(BaseModel):
    """A coupon in a user's wallet. One row per grant; `source_key` makes every way of handing
    one out idempotent (claim:1..per_user_limit, wakeup:<period>, operator:<batch>, ...)."""

    coupon = pw.ForeignKeyField(Coupon, backref="grants", on_delete="RESTRICT", index=False)
    user_id = pw.BigIntegerField()
    source = pw.CharField(max_length=24)  # code | group_welcome | lottery_loser | wakeup | operator
    source_key = pw.CharField(max_length=64)
    state = pw.CharField(max_length=12, default=GrantState.AVAILABLE.value)
    order_id = pw.BigIntegerField(null=True, index=True)  # the order holding or using it
    granted_at = pw.DateTimeField(default=utcnow)
    expires_at = pw.DateTimeField()

    class Meta:
        table_name = "coupon_grant"
        indexes = ((("coupon", "user_id", "source_key"), True), (("user_id", "state"), False))


class CouponRedemption(BaseModel):
    """One coupon on one order; the discount and who funds it are fixed when the order is placed."""

    coupon = pw.ForeignKeyField(Coupon, on_delete="RESTRICT", index=False)
    grant = pw.ForeignKeyField(CouponGrant, on_delete="RESTRICT", null=True, index=False)
    order_id = pw.BigIntegerField()
    user_id = pw.BigIntegerField()
    discount_fen = pw.IntegerField()
    creator_id = pw.BigIntegerField(null=True)  # funded by this creator (a creator's coupon)
    state = pw.CharField(max_length=12, default=RedemptionState.RESERVED.value)
    created_at = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "coupon_redemption"
        indexes = ((("order_id", "coupon"), True), (("coupon", "user_id"), False))


TABLES: list[type[pw.Model]] = [Coupon, CouponScope, CouponGrant, CouponRedemption]
