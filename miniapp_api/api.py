"""The mini-program API (/api/v1). Views parse, authenticate, call one service, map errors."""

from __future__ import annotations

import dataclasses
import functools
import logging

import requests
from flask import current_app, request
from flask_openapi3 import APIBlueprint, Tag
from redis import Redis
from redis.exceptions import RedisError
from wechatpy.exceptions import WeChatClientException

from miniapp_api import risk_edge, throttle
from miniapp_api.auth import current_user, issue_token
from miniapp_api.deps import runtime
from miniapp_api.errors import ErrorOut
from miniapp_api.schemas import (
    CreateOrderIn,
    DevLoginIn,
    IdempotencyHeader,
    ListQuery,
    LoginIn,
    LoginOut,
    OrderList,
    OrderOut,
    OrderPath,
    PayOut,
    PingOut,
    ProductPath,
    VoucherList,
    VoucherOut,
    VoucherPath,
)
from miniapp_api.shelf_schemas import ShelfPage, ShelfProductOut, ShelfQuery, ShelfSkuOut
from miniapp_api.webhooks import process_payment_notification
from models import (
    checkout,
    delivery,
    groupbuy,
    live_dashboard,
    live_orders,
    orders,
    payments,
    risk_gate,
    shelf,
    users,
)
from models.db import once_more_if_lost
from models.errors import DomainError, Forbidden, InvalidInput, NotFound
from models.orders import Order
from tasks import queues

log = logging.getLogger(__name__)

BEARER = [{"bearer": []}]
ERRORS = {400: ErrorOut, 401: ErrorOut, 404: ErrorOut, 409: ErrorOut, 429: ErrorOut}

api = APIBlueprint("api", __name__, url_prefix="/api/v1")
auth_tag, shop_tag, me_tag = Tag(name="auth"), Tag(name="catalog"), Tag(name="orders")


class LoginFailed(DomainError):
    code = "login_failed"
    status = 401


@api.before_request
def _json_object_body() -> None:
    """A JSON body must be one JSON object. flask-openapi3 would otherwise decode a JSON string
    a second time (so '"{\\"sku\\": ...}"' passed as an order) and report bad JSON as a type
    error."""
    if request.method not in ("POST", "PUT", "PATCH") or not request.is_json:
        return
    raw = request.get_data(cache=True)
    if not raw.strip():
        return
    try:
        data = current_app.json.loads(raw)
    except ValueError:  # also UnicodeDecodeError and nesting too deep (see JSONProvider)
        raise InvalidInput("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidInput("the request body must be a JSON object", code="invalid_request")
    if _has_nul(data):  # PostgreSQL refuses NUL in text: it would surface as a 500
        raise InvalidInput("strings must not contain NUL (\\u0000) characters", code="invalid_request")


def _has_nul(value: object) -> bool:
    """Any string (key or value) with a NUL, walked without recursion (bodies may nest deep)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _iso(value) -> str | None:  # noqa: ANN001
    return value.isoformat() + "Z" if value else None


def _order_out(order: Order) -> dict:
    return OrderOut(
        id=order.id, no=order.no, sku=order.sku.code, product=order.sku.name,
        quantity=order.quantity, amount_fen=order.amount_fen, discount_fen=order.discount_fen,
        status=order.status, group_team=groupbuy.team_of_order(order.id) if order.group_hold else None,
        ref=order.ref_code, created_at=_iso(order.created_at), expires_at=_iso(order.expires_at),
        paid_at=_iso(order.paid_at), delivered_at=_iso(order.delivered_at),
    ).model_dump()


def client_ip() -> str:
    return (request.remote_addr or "unknown")[:64]


@api.get("/ping", tags=[shop_tag], responses={200: PingOut})
def ping():  # noqa: ANN201
    """Liveness of the API itself; also the benchmark's baseline endpoint."""
    return {"ok": True}


RATE_LIMITED = {  # 429 with the seconds to wait (miniapp_api.throttle)
    "description": "Too Many Requests",
    "headers": {"Retry-After": {"description": "seconds until the limit lets this request through",
                                "schema": {"type": "integer", "minimum": 1}, "required": True}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
}


@api.post("/auth/login", tags=[auth_tag], responses={200: LoginOut, **ERRORS, 429: RATE_LIMITED})
@throttle.limit(
    throttle.Rule("login:ip", throttle.by_client_ip,
                  lambda s: (s.LOGIN_RATE_PER_IP, s.LOGIN_RATE_WINDOW_S)),
    throttle.Rule("login:code", lambda body, **_: body.code,
                  lambda s: (s.LOGIN_RATE_PER_CODE, s.LOGIN_RATE_WINDOW_S)),
)
def login(body: LoginIn):  # noqa: ANN201
    """Exchange a wx.login() code for a session token (jscode2session). Throttled per client IP
    and per code (`LOGIN_RATE_*`): 429 `rate_limited` with Retry-After, before WeChat is asked."""
    try:
        session = runtime().wechat.code_to_session(body.code)
    except WeChatClientException as exc:
        raise LoginFailed(f"WeChat rejected the login code (errcode {exc.errcode})") from None
    except requests.RequestException:
        raise LoginFailed("WeChat could not be reached; try again") from None
    # the code is spent at WeChat now: a lost database connection must not waste it
    user = once_more_if_lost(users.get_or_create_by_openid, session["openid"], session.get("unionid"))
    return {"token": issue_token(user), "user": {"id": user.id, "nickname": user.nickname}}


@api.post("/auth/dev-login", tags=[auth_tag], responses={200: LoginOut, **ERRORS})
def dev_login(body: DevLoginIn):  # noqa: ANN201
    """Development only (QIANXING_ENV=dev): log in as any openid."""
    if current_app.config["QIANXING_ENV"] != "dev":
        raise NotFound("not found")
    user = users.get_or_create_by_openid(body.openid)
    return {"token": issue_token(user), "user": {"id": user.id, "nickname": user.nickname}}


def _product_out(item: shelf.ShelfProduct) -> dict:
    return ShelfProductOut(
        id=item.product.id, title=item.product.title, description=item.product.description,
        category=item.category_id,
        skus=[ShelfSkuOut(id=s.sku.id, code=s.sku.code, name=s.sku.name, kind=s.sku.kind,
                          price_fen=s.sku.retail_price_fen, stock_state=s.state, available=s.available)
              for s in item.skus],
    ).model_dump()


def _stock_rule() -> dict[str, int]:
    settings = runtime().settings
    return {"default_threshold": settings.LOW_STOCK_THRESHOLD, "exact_from": settings.SHELF_EXACT_STOCK_FROM}


@api.get("/products", tags=[shop_tag], responses={200: ShelfPage, 400: ErrorOut, 404: ErrorOut})
def list_products(query: ShelfQuery):  # noqa: ANN201
    """Active products with their SKUs and their stock state, a page at a time in shelf order
    (category, then product). `category` filters (404 category_not_found), `q` searches titles
    and SKU names, `after` continues from the previous page's `next`. `available` is the exact
    count only from SHELF_EXACT_STOCK_FROM units up; below it, null, and `stock_state` says
    in_stock, low or sold_out. Without parameters: the first 50 products, as before."""
    parsed = shelf.parse_query(category=query.category, q=query.q, after=query.after, limit=query.limit)
    found = shelf.page(parsed, **_stock_rule())
    return {"products": [_product_out(p) for p in found.products], "next": found.next}


@api.get("/products/<int:product_id>", tags=[shop_tag], responses={200: ShelfProductOut, 404: ErrorOut})
def get_product(path: ProductPath):  # noqa: ANN201
    """One product with its SKUs' stock state (as in the list)."""
    return _product_out(shelf.product(path.product_id, **_stock_rule()))


@api.post("/orders", tags=[me_tag], security=BEARER,
          responses={200: OrderOut, 201: OrderOut, 403: ErrorOut, **ERRORS})
def create_order(body: CreateOrderIn, header: IdempotencyHeader):  # noqa: ANN201
    """Place an order and reserve its stock. 201 when created, 200 for an idempotent replay.
    An order naming a live session (`live`) for a product pinned there with a live price gets
    the price of the first tier with room (or an unlocked assist's); 409 `sold_out` when every
    place of the ladder is taken, 409 `live_not_on_air` outside the session.
    `coupons` applies the buyer's coupons (reserved with the order, given back if it expires or
    is cancelled); `group_activity` starts a group-buy team and `team` joins one, at the group
    price (the order is delivered when the team fills, refunded if it does not). 403
    risk_refused: joining a team from the opener's device or network (or, with
    RISK_BLOCK_ORDERS, too many orders from one device or network)."""
    user = current_user()
    if body.group_activity is not None and body.team is not None:
        raise InvalidInput("start a team (group_activity) or join one (team), not both", code="invalid_group")
    group = (("start", body.group_activity) if body.group_activity is not None
             else ("join", body.team) if body.team is not None else None)
    req = orders.OrderRequest(sku=body.sku, quantity=body.quantity, ref=body.ref,
                              account=body.account, live=body.live, coupons=tuple(body.coupons), group=group)
    rt = runtime()
    ip, device = risk_edge.request_edge()
    risk_gate.check_order(rt.redis, rt.settings, user.id, group, ip=ip, device=device)
    if req.live is not None:  # the live branch (models/live_orders.py): the sold-out gate first
        order, created = live_orders.place(
            user, req, rt.policy, client_ip=client_ip(), idempotency_key=header.idempotency_key,
            redis=rt.redis, gate_ttl_s=rt.settings.LIVE_GATE_TTL_S, cache_s=rt.settings.LIVE_PIN_CACHE_S)
    else:
        order, created = checkout.place(user, req, rt.policy, client_ip=client_ip(),
                                        idempotency_key=header.idempotency_key)
    if created:
        risk_edge.order_placed(order)  # the risk engine's signal (never fails the order)
        risk_gate.order_placed(rt.redis, rt.settings, order, group, ip=ip, device=device)
    if created and order.live_id is not None:
        _count_live_order(rt.redis, order)
    return _order_out(order), 201 if created else 200


def _count_live_order(redis: Redis, order: Order) -> None:
    """The live dashboard's "orders placed" counter (models/live_dashboard.py); a Redis outage
    costs the counter until the session's reconcile, never the order."""
    try:
        live_dashboard.order_placed(redis, order.live_id, order.sku.id, order.amount_fen)
    except RedisError:
        log.warning("live dashboard: order %s not counted (Redis unreachable)", order.id)


@api.get("/orders", tags=[me_tag], security=BEARER, responses={200: OrderList, 401: ErrorOut})
def my_orders(query: ListQuery):  # noqa: ANN201
    found = orders.list_orders(current_user(), limit=query.limit, before_id=query.before_id)
    return {"orders": [_order_out(o) for o in found]}


@api.get("/orders/<int:order_id>", tags=[me_tag], security=BEARER,
         responses={200: OrderOut, 401: ErrorOut, 404: ErrorOut})
def my_order(path: OrderPath):  # noqa: ANN201
    return _order_out(orders.get_order(path.order_id, user=current_user()))


@api.post("/orders/<int:order_id>/pay", tags=[me_tag], security=BEARER,
          responses={200: PayOut, **ERRORS, 502: ErrorOut})
def pay_order(path: OrderPath):  # noqa: ANN201
    """Payment parameters for wx.requestPayment (WeChat Pay unified order)."""
    user = current_user()
    order = orders.get_order(path.order_id, user=user)
    rt = runtime()
    params = payments.prepare_payment(order, rt.gateway, user.openid, client_ip())
    return {"provider": rt.gateway.name, "params": {k: str(v) for k, v in params.items()}}


@api.post("/orders/<int:order_id>/sandbox-pay", tags=[me_tag], security=BEARER,
          responses={200: OrderOut, **ERRORS, 403: ErrorOut})
def sandbox_pay(path: OrderPath):  # noqa: ANN201
    """Sandbox payments only: pay the order with the signed notification WeChat Pay would send,
    run in-process through the notify endpoint's own code (no HTTP call to ourselves)."""
    user = current_user()
    gateway = runtime().gateway
    if gateway.name != "sandbox" or current_app.config["QIANXING_ENV"] == "prod":
        raise Forbidden("sandbox payments are switched off here", code="sandbox_disabled")
    order = orders.get_order(path.order_id, user=user)
    if order.status != orders.Status.PENDING:
        raise payments.InvalidState("this order can no longer be paid", code="order_not_payable")
    gateway.pay(order, user.openid,  # type: ignore[attr-defined]
                functools.partial(process_payment_notification, sender="sandbox-pay", source=gateway.name))
    return _order_out(orders.get_order(order.id))


@api.post("/orders/<int:order_id>/pay-with-credit", tags=[me_tag], security=BEARER,
          responses={200: OrderOut, **ERRORS})
def pay_with_credit(path: OrderPath):  # noqa: ANN201
    """Pay the order with the creator's shopping credit (409 insufficient_credit when it does
    not cover the order); delivery follows as for any payment. Repeating it is harmless."""
    order = payments.pay_with_credit(path.order_id, current_user())
    if order.status == orders.Status.PAID:
        queues.deliver(order.id)
    return _order_out(orders.get_order(order.id))


@api.get("/vouchers", tags=[me_tag], security=BEARER, responses={200: VoucherList, 401: ErrorOut})
def my_vouchers():  # noqa: ANN201
    """My vouchers, masked. Reveal one to see its code."""
    return {"vouchers": [dataclasses.asdict(v) for v in delivery.my_vouchers(current_user())]}


@api.get("/vouchers/<int:voucher_id>", tags=[me_tag], security=BEARER,
         responses={200: VoucherOut, 401: ErrorOut, 404: ErrorOut})
def reveal_voucher(path: VoucherPath):  # noqa: ANN201
    """Reveal one voucher's code to its owner (recorded; affects refunds)."""
    return dataclasses.asdict(delivery.reveal(current_user(), path.voucher_id))
