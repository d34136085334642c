"""Coupons in the mini-program API (issue 14): claim one by its code, and the wallet (my coupons,
usable ones first, each with why it cannot be used now). Applying coupons is part of placing an
order: POST /orders with `coupons` (the grant ids shown here)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field

from miniapp_api import throttle
from miniapp_api.api import BEARER, RATE_LIMITED, _iso, _json_object_body
from miniapp_api.auth import current_user
from miniapp_api.deps import runtime
from miniapp_api.errors import ErrorOut
from miniapp_api.risk_edge import request_edge
from miniapp_api.schemas import NO_NUL, CachedSchema
from models import coupons, risk_gate
from models.errors import InvalidInput

bp = APIBlueprint("shop_coupons", __name__, url_prefix="/api/v1")
bp.before_request(_json_object_body)
tag = Tag(name="coupons", description="coupons: claim by code, my coupons (apply them with POST /orders)")


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    code: str = Field(min_length=1, max_length=64, pattern=NO_NUL,
                      description="the coupon code (case, spaces, dashes and full-width characters do not matter)")


class WalletQuery(CachedSchema):
    sku: str | None = Field(default=None, min_length=1, max_length=64, pattern=NO_NUL,
                            description="judge each coupon against this SKU (scope) too")


class QuoteQuery(CachedSchema):
    sku: str = Field(min_length=1, max_length=64, pattern=NO_NUL, description="SKU code")
    quantity: int = Field(default=1, ge=1, le=1000)
    ref: str | None = Field(default=None, max_length=32, pattern=r"^[A-Za-z0-9_-]{1,32}$",
                            description="creator code the buyer came through")
    coupons: str = Field(default="", max_length=64, pattern=r"^(\d{1,15}(,\d{1,15}){0,2})?$",
                         description="up to 3 grant ids, comma-separated (e.g. 12,15)")


class QuoteOut(BaseModel):
    unit_price_fen: int
    amount_before_fen: int = Field(description="before coupons (retail + the creator's markup) x quantity")
    discount_fen: int
    amount_fen: int = Field(description="what the order would cost now")
    parts: list[int] = Field(description="each coupon's part, in the order given")


class CouponOut(BaseModel):
    id: int = Field(description="the grant id: pass it in POST /orders `coupons`")
    coupon_id: int
    name: str
    kind: Literal["amount_off", "percent_off", "fixed_price"]
    threshold_fen: int = Field(description="amount_off: the order amount it needs")
    amount_off_fen: int
    percent_bp: int = Field(description="percent_off: basis points off (1500 = 15% off)")
    cap_fen: int | None = Field(description="percent_off: at most this much off")
    fixed_price_fen: int | None = Field(description="fixed_price: the unit price it sets")
    creator_id: int | None = Field(description="a creator's coupon: applies only through that creator's link")
    stackable: bool
    starts_at: str
    expires_at: str
    state: Literal["available", "reserved", "expired"]
    usable: bool
    reason: Literal["expired", "not_started", "inactive", "exhausted", "in_use", "out_of_scope"] | None = Field(
        description="why it cannot be used now (null when usable)")


class WalletOut(BaseModel):
    coupons: list[CouponOut]


def _out(item: coupons.WalletItem) -> dict:
    data = dataclasses.asdict(item)
    data["id"] = data.pop("grant_id")
    data["starts_at"], data["expires_at"] = _iso(item.starts_at), _iso(item.expires_at)
    return CouponOut(**data).model_dump()


def _user_key(**_: object) -> str:
    return str(current_user().id)


@bp.post("/coupons/claim", tags=[tag], security=BEARER,
         responses={201: CouponOut, 400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut,
                    429: RATE_LIMITED})
@throttle.limit(
    throttle.Rule("coupon_claim:user", _user_key,
                  lambda s: (s.COUPON_CLAIM_RATE_PER_USER, s.COUPON_CLAIM_RATE_WINDOW_S)),
    throttle.Rule("coupon_claim:ip", throttle.by_client_ip,
                  lambda s: (s.COUPON_CLAIM_RATE_PER_IP, s.COUPON_CLAIM_RATE_WINDOW_S)),
)
def claim_coupon(body: ClaimIn):  # noqa: ANN201
    """Claim a coupon by its code into my wallet. 404 coupon_not_found (no such code), 409
    coupon_expired (ended or not started), coupon_inactive, coupon_exhausted (run out),
    coupon_limit (already claimed as often as allowed), 403 risk_refused (too many accounts
    claimed it from this device or network). Throttled per user and per client IP
    (`COUPON_CLAIM_RATE_*`): 429 rate_limited with Retry-After."""
    rt = runtime()
    ip, device = request_edge()
    grant = risk_gate.claim_coupon(rt.redis, rt.settings, current_user().id, body.code, ip=ip, device=device)
    return _out(coupons.describe(grant)), 201


@bp.get("/coupons/quote", tags=[tag], security=BEARER,
        responses={200: QuoteOut, 400: ErrorOut, 401: ErrorOut, 404: ErrorOut, 409: ErrorOut})
def quote_coupons(query: QuoteQuery):  # noqa: ANN201
    """What an order would cost with these coupons, checked as placing it would check them
    (the same 4xx refusals), without reserving anything."""
    grants = [int(g) for g in query.coupons.split(",") if g]
    if len(set(grants)) != len(grants):
        raise InvalidInput("a coupon is listed twice", code="invalid_coupons")
    got = coupons.quote(current_user().id, query.sku, query.quantity, ref=query.ref, grant_ids=grants)
    return QuoteOut(**{**dataclasses.asdict(got), "parts": list(got.parts)}).model_dump()


@bp.get("/me/coupons", tags=[tag], security=BEARER, responses={200: WalletOut, 400: ErrorOut, 401: ErrorOut,
                                                               404: ErrorOut})
def my_coupons(query: WalletQuery):  # noqa: ANN201
    """My coupons not used yet: usable ones first (soonest to expire first), then those held by
    an unpaid order (in_use), not started, run out, or expired in the last days, each with its
    reason. With `sku`, coupons that do not cover that SKU say out_of_scope (404 unknown_sku)."""
    return {"coupons": [_out(item) for item in coupons.wallet(current_user().id, usable_for_sku=query.sku)]}
