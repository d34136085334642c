"""Placing a shop order with what issue 14 adds to it: coupons (models/coupons.py) or a group-buy
seat (models/groupbuy.py). One entry point for every caller (the order route, chat commands,
benchmarks), so the combinations are decided in one place:

- no coupon and no group: `orders.place_order` unchanged (the PostgreSQL hot path);
- coupons: the order is placed at its normal price, then inside its transaction
  `coupons.reserve` takes each coupon's use and fixes the discount and who funds it, and
  `orders.set_amount` writes the price the buyer pays; any refusal rolls the order back;
- a group (start a team of an activity, or join a team): the order is placed at the
  activity's group price and `groupbuy` takes the seat inside its transaction;
- coupons together with a group, or with a live session (a live price is final), are refused
  before anything is written.
"""

from __future__ import annotations

from models import coupons, groupbuy, orders
from models.errors import InvalidInput
from models.orders import Order, OrderPolicy, OrderRequest
from models.users import User

MAX_COUPONS = 3


def place(user: User, req: OrderRequest, policy: OrderPolicy, *, client_ip: str,
          idempotency_key: str | None = None) -> tuple[Order, bool]:
    """Place an order with its coupons or group seat. Returns (order, created). Raises what
    `orders.place_order`, `coupons.reserve` and `groupbuy.prepare` raise; on any error nothing
    is written or reserved."""
    if len(req.coupons) > MAX_COUPONS or len(set(req.coupons)) != len(req.coupons):
        raise InvalidInput(f"at most {MAX_COUPONS} different coupons per order", code="invalid_coupons")
    if req.coupons and req.group is not None:
        raise InvalidInput("coupons do not apply to group-buy orders", code="coupon_not_with_group")
    if req.live is not None and (req.coupons or req.group is not None):
        raise InvalidInput("a live price is final: no coupon or group-buy with it", code="live_price_final")
    if req.group is not None:
        price, take_seat = groupbuy.prepare(user, req.group, sku_code=req.sku, quantity=req.quantity)
        return orders.place_order(user, req, policy, client_ip=client_ip, idempotency_key=idempotency_key,
                                  price_fen=price, within=take_seat, sku_checked=True)
    if req.coupons:
        grants = list(req.coupons)

        def reserve(order: Order) -> None:
            got = coupons.reserve(order, user.id, grants)
            orders.set_amount(order, amount_fen=got.amount_fen, unit_price_fen=got.unit_price_fen,
                              discount_fen=got.discount_fen, creator_discount_fen=got.creator_discount_fen)

        return orders.place_order(user, req, policy, client_ip=client_ip, idempotency_key=idempotency_key,
                                  within=reserve)
    return orders.place_order(user, req, policy, client_ip=client_ip, idempotency_key=idempotency_key)
