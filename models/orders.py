"""Orders: placing (idempotent, anti-hoarding, atomic reservation), expiry and queries."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import peewee as pw

from models import coupons, events, groupbuy, inventory, live_prices
from models.catalog import Kind, Sku, components
from models.db import BaseModel, db, execute, execute_batch, for_update, is_postgres, utcnow
from models.errors import (
    Conflict,
    InvalidInput,
    InvalidState,
    NotFound,
    OutOfStock,
    TooManyUnpaidOrders,
    Unauthenticated,
)
from models.network import attribute
from models.pricing import selling_price
from models.users import User

REF_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
ACCOUNT_PATTERN = re.compile(r"^[A-Za-z0-9_@.+-]{3,64}$")


class Status(StrEnum):
    PENDING = "pending"  # reserved, awaiting payment
    PAID = "paid"  # paid, delivery under way
    DELIVERED = "delivered"
    EXPIRED = "expired"  # not paid in time; stock released
    CANCELLED = "cancelled"  # cancelled unpaid by the buyer; stock, coupon and places released
    REFUNDED = "refunded"


class Order(BaseModel):
    no = pw.CharField(max_length=32, unique=True)  # out_trade_no towards WeChat Pay
    # FK columns without their own index: (user, ...) composites below lead with user_id, and
    # SKUs are never deleted. Every index here is paid for by each order write.
    user = pw.ForeignKeyField(User, backref="orders", on_delete="RESTRICT", index=False)
    sku = pw.ForeignKeyField(Sku, on_delete="RESTRICT", index=False)
    quantity = pw.IntegerField()
    unit_price_fen = pw.IntegerField()
    amount_fen = pw.IntegerField()
    status = pw.CharField(max_length=16, default=Status.PENDING.value)
    ref_code = pw.CharField(max_length=32, null=True)  # creator code as given
    seller_id = pw.BigIntegerField(null=True)  # the creator behind ref_code, when it is one
    markup_fen = pw.IntegerField(default=0)  # the seller's markup inside amount_fen
    cost_fen = pw.IntegerField(default=0)  # supply price x quantity, at order time
    live_id = pw.BigIntegerField(null=True)  # the seller's live session it was bought in
    recipient_account = pw.CharField(max_length=64, null=True)  # top-up target
    idempotency_key = pw.CharField(max_length=128, null=True)
    request_hash = pw.CharField(max_length=64, null=True)
    client_ip = pw.CharField(max_length=64, default="")
    risk_hold = pw.BooleanField(default=False)
    # Issue 14. Database defaults too: qx_place_order and _INSERT_ORDER do not name them.
    discount_fen = pw.IntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])  # coupons, all funders
    creator_discount_fen = pw.IntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])  # the seller's part
    group_hold = pw.BooleanField(default=False, constraints=[pw.SQL("DEFAULT FALSE")])  # awaits its team
    created_at = pw.DateTimeField(default=utcnow)
    expires_at = pw.DateTimeField()
    paid_at = pw.DateTimeField(null=True)
    delivered_at = pw.DateTimeField(null=True)
    refunded_at = pw.DateTimeField(null=True)

    class Meta:
        # The status queries (unpaid limits, expiry, delivery and notice sweeps) use partial
        # indexes, one per status they look for: migration 0006.
        indexes = ((("user", "idempotency_key"), True),)

    @property
    def subject(self) -> str:
        return f"order:{self.id}"


@dataclass(frozen=True)
class OrderPolicy:
    ttl_seconds: int
    max_unpaid_per_user: int
    max_unpaid_per_ip: int
    max_quantity: int


@dataclass(frozen=True)
class OrderRequest:
    sku: str
    quantity: int
    ref: str | None = None
    account: str | None = None
    live: int | None = None  # the seller's live session, when bought in a live room
    coupons: tuple[int, ...] = ()  # coupon grants the buyer applies (issue 14)
    group: tuple[str, int] | None = None  # ("start", activity id) or ("join", team id)

    def fingerprint(self) -> str:
        body = json.dumps([self.sku, self.quantity, self.ref, self.account]
                          + ([self.live] if self.live is not None else [])
                          + ([list(self.coupons)] if self.coupons else [])
                          + ([list(self.group)] if self.group is not None else []))
        return hashlib.sha256(body.encode()).hexdigest()


def new_order_no() -> str:
    return "QX" + utcnow().strftime("%Y%m%d") + secrets.token_hex(8).upper()


def _validate(req: OrderRequest, sku: Sku, policy: OrderPolicy) -> None:
    limit = sku.max_per_order or policy.max_quantity
    if not 1 <= req.quantity <= limit:
        raise InvalidInput(f"quantity must be between 1 and {limit}", code="invalid_quantity")
    if req.ref is not None and not REF_PATTERN.match(req.ref):
        raise InvalidInput("ref must be 1-32 letters, digits, '-' or '_'", code="invalid_ref")
    if sku.kind == Kind.TOPUP:
        if not req.account or not ACCOUNT_PATTERN.match(req.account):
            raise InvalidInput("a top-up needs the account to credit", code="invalid_account")
        if req.quantity != 1:
            raise InvalidInput("top-ups are bought one at a time", code="invalid_quantity")
    elif req.account is not None:
        raise InvalidInput("account is only for top-up products", code="invalid_account")


_SKU_BY_CODE = (
    "SELECT s.id, s.code, s.name, s.kind, s.retail_price_fen, s.max_per_order, s.product_id, "
    "s.supply_price_fen "
    "FROM sku s JOIN product p ON p.id = s.product_id WHERE s.code = %s AND s.active AND p.active"
)
_INSERT_ORDER = (
    'INSERT INTO "order" (no, user_id, sku_id, quantity, unit_price_fen, amount_fen, status, '
    "ref_code, seller_id, markup_fen, cost_fen, live_id, recipient_account, idempotency_key, "
    "request_hash, client_ip, risk_hold, created_at, expires_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "RETURNING id"
)
# Unpaid orders of this buyer and of this network, counted after the new order is written.
_UNPAID = (
    '(SELECT COUNT(*) FROM "order" WHERE status = %s AND expires_at > %s AND user_id = %s), '
    '(SELECT COUNT(*) FROM "order" WHERE status = %s AND expires_at > %s AND client_ip = %s)'
)
_LOCK_BUYER = 'SELECT id FROM "user" WHERE id = %s'


def _sku_for_sale(code: str) -> Sku:
    row = execute(_SKU_BY_CODE, (code,)).fetchone()
    if row is None:
        raise NotFound(f"unknown SKU {code!r}", code="unknown_sku")
    sku_id, code, name, kind, price, max_per_order, product_id, supply = row
    return Sku(id=sku_id, code=code, name=name, kind=kind, retail_price_fen=price,
               max_per_order=max_per_order, product=product_id, supply_price_fen=supply)


def _existing(user: User, key: str, req: OrderRequest) -> Order | None:
    row = execute('SELECT id, request_hash FROM "order" WHERE user_id = %s AND idempotency_key = %s',
                  (user.id, key)).fetchone()
    if row is None:
        return None
    if row[1] != req.fingerprint():
        raise Conflict(
            "this Idempotency-Key was used with a different request", code="idempotency_conflict"
        )
    return get_order(row[0])


def place_order(
    user: User,
    req: OrderRequest,
    policy: OrderPolicy,
    *,
    client_ip: str,
    idempotency_key: str | None = None,
    price_fen: int | None = None,
    within: Callable[[Order], None] | None = None,
    sku_checked: bool = False,
) -> tuple[Order, bool]:
    """Create an order and reserve its stock atomically. Returns (order, created), the order
    carrying its SKU.

    `price_fen` fixes the unit price when a rule of the caller decided it (a lottery prize is a
    zero-price order: models/lottery.py); the seller's markup does not apply then, and the
    order takes the statement path below on both backends (qx_place_order prices in SQL).

    The same idempotency key with the same request returns the first order (created=False).
    Raises NotFound (unknown SKU), InvalidInput, Conflict (key reused with another body),
    TooManyUnpaidOrders, OutOfStock. On any error nothing is written.

    `within(order)` runs inside the order's transaction after the order row, the stock
    reservation and the unpaid limits (the buyer's row is locked): a coupon reservation or a
    group-buy seat (models/checkout.py). It may lower the order's amount with `set_amount`;
    whatever it raises rolls the whole order back. With `within`, the statement path is taken on
    both backends (as with a fixed price).

    `sku_checked`: the caller's own query has just found the SKU for sale (groupbuy.prepare,
    with a fixed price), so on PostgreSQL its metadata may come from the few-seconds cache.
    """
    fixed = price_fen is not None or within is not None
    if price_fen is not None and (not isinstance(price_fen, int) or isinstance(price_fen, bool) or price_fen < 0):
        raise InvalidInput("a fixed price is a whole number of fen, not negative", code="invalid_price")
    if is_postgres() and (not fixed or (sku_checked and price_fen is not None)):
        sku, parts = _sku_metadata(req.sku)
    else:
        sku, parts = _sku_for_sale(req.sku), []
    _validate(req, sku, policy)
    who = attribute(req.ref, sku.id, req.live)
    if price_fen is not None:
        who = dataclasses.replace(who, markup_per_unit_fen=0)
    now = utcnow()
    # qx_place_order computes the same in SQL
    unit = price_fen if price_fen is not None else selling_price(sku, who.markup_per_unit_fen)
    order = Order(
        no=new_order_no(), user=user, sku=sku, quantity=req.quantity,
        unit_price_fen=unit, amount_fen=unit * req.quantity,
        status=Status.PENDING.value, ref_code=req.ref, seller_id=who.seller_id,
        markup_fen=who.markup_per_unit_fen * req.quantity,
        cost_fen=(sku.supply_price_fen or 0) * req.quantity, live_id=who.live_id,
        recipient_account=req.account,
        idempotency_key=idempotency_key, request_hash=req.fingerprint(), client_ip=client_ip,
        risk_hold=False, created_at=now, expires_at=now + dt.timedelta(seconds=policy.ttl_seconds),
    )
    try:
        if is_postgres() and not fixed:
            _place_on_postgres(order, sku, parts, policy)
            return order, True
        with db.atomic():
            # Lock the buyer so their concurrent requests count unpaid orders one at a time;
            # a replayed idempotency key fails the insert and is answered below.
            order.id = execute_batch([
                (_LOCK_BUYER + for_update("FOR NO KEY UPDATE"), (user.id,)),
                (_INSERT_ORDER, (
                    order.no, user.id, sku.id, order.quantity, order.unit_price_fen,
                    order.amount_fen, order.status, order.ref_code, order.seller_id,
                    order.markup_fen, order.cost_fen, order.live_id, order.recipient_account,
                    idempotency_key, order.request_hash, client_ip, False, _ts(now),
                    _ts(order.expires_at))),
            ]).fetchone()[0]
            pending, live = Status.PENDING.value, _ts(now)
            mine, network = inventory.reserve(order.id, sku, req.quantity, then=(
                _UNPAID, (pending, live, user.id, pending, live, client_ip)))
            if mine > policy.max_unpaid_per_user:
                raise TooManyUnpaidOrders("you have too many unpaid orders; pay or wait for them")
            if network > policy.max_unpaid_per_ip:
                raise TooManyUnpaidOrders("too many unpaid orders from this network")
            if within is not None:
                within(order)
    except pw.InternalError as exc:
        raise _hot_path_error(exc, sku) from None
    except pw.IntegrityError:
        # A concurrent or earlier request with the same idempotency key, or a stale session.
        if idempotency_key and (found := _existing(user, idempotency_key, req)):
            return found, False
        if execute(_LOCK_BUYER, (user.id,)).fetchone() is None:
            raise Unauthenticated("unknown user; log in again") from None
        raise
    return order, True


def _place_on_postgres(order: Order, sku: Sku, parts: list[tuple[Sku, int]],
                       policy: OrderPolicy) -> None:
    """The same steps in one round trip: the qx_place_order function (migration 0002), which
    also reads the current price and refuses an inactive SKU."""
    order.id, price = execute(
        "SELECT * FROM qx_place_order(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
        "%s::bigint[], %s::text[], %s::int[], %s, %s, %s)",
        (order.user.id, order.no, sku.id, order.quantity, order.ref_code,
         order.recipient_account, order.idempotency_key, order.request_hash, order.client_ip,
         order.created_at, order.expires_at, policy.max_unpaid_per_user, policy.max_unpaid_per_ip,
         [c.id for c, _ in parts], [c.kind for c, _ in parts],
         [per_unit * order.quantity for _, per_unit in parts],
         order.seller_id, order.markup_fen // order.quantity, order.live_id),
    ).fetchone()
    order.unit_price_fen, order.amount_fen = price, price * order.quantity


_SKU_TTL_S = 5.0
_sku_cache: dict[str, tuple[float, Sku, list[tuple[Sku, int]]]] = {}


def forget_cached_skus() -> None:
    """Drop the SKU metadata cache (after a catalog edit that must show at once, and in tests,
    which reuse SKU codes with new ids)."""
    _sku_cache.clear()


def _sku_metadata(code: str) -> tuple[Sku, list[tuple[Sku, int]]]:
    """A SKU's kind, name, limits and bundle parts, cached for a few seconds per process
    (PostgreSQL path only: qx_place_order reads price and active flags itself)."""
    now = time.monotonic()
    hit = _sku_cache.get(code)
    if hit is not None and hit[0] > now:
        return hit[1], hit[2]
    sku = _sku_for_sale(code)
    parts = components(sku)
    if len(_sku_cache) > 10_000:
        _sku_cache.clear()
    _sku_cache[code] = (now + _SKU_TTL_S, sku, parts)
    return sku, parts


def _hot_path_error(exc: Exception, sku: Sku) -> Exception:
    """Map the exceptions qx_place_order raises to domain errors."""
    message = str(exc).split("\n", 1)[0]
    if message == "qx:unknown_sku":
        _sku_cache.pop(sku.code, None)
        return NotFound(f"unknown SKU {sku.code!r}", code="unknown_sku")
    if message.startswith("qx:out_of_stock:"):
        parts = components(sku)
        index = int(message.rsplit(":", 1)[1])
        return OutOfStock(f"{parts[index][0].name} is sold out")
    if message == "qx:too_many_unpaid_user":
        return TooManyUnpaidOrders("you have too many unpaid orders; pay or wait for them")
    if message == "qx:too_many_unpaid_ip":
        return TooManyUnpaidOrders("too many unpaid orders from this network")
    return exc


def _ts(value: dt.datetime) -> object:
    return Order.created_at.db_value(value)


def expire_due(now: dt.datetime | None = None, batch: int = 200, *,
               expired_ids: list[int] | None = None) -> int:
    """Expire unpaid orders past their deadline and release their stock. Safe to run
    concurrently and repeatedly: each order flips pending -> expired exactly once. The ids of
    the orders expired are appended to `expired_ids` when given (the job reopens live gates)."""
    now = now or utcnow()
    expired = 0
    while True:
        ids = [
            o.id
            for o in Order.select(Order.id)
            .where((Order.status == Status.PENDING) & (Order.expires_at <= now))
            .order_by(Order.id)
            .limit(batch)
        ]
        if not ids:
            return expired
        with db.atomic():
            for order_id in ids:
                flipped = (
                    Order.update(status=Status.EXPIRED)
                    .where((Order.id == order_id) & (Order.status == Status.PENDING))
                    .execute()
                )
                if flipped:
                    release_extras([order_id])  # before the stock: tier rows, then SKU rows
                    inventory.release(order_id)
                    events.record("order.expired", f"order:{order_id}", "system")
                    expired += 1
                    if expired_ids is not None:
                        expired_ids.append(order_id)
        if len(ids) < batch:
            return expired


def cancel_order(order_id: int, user: User) -> Order:
    """The buyer cancels their own unpaid order (issue 14): pending -> cancelled, then what it
    held goes back exactly as on expiry (`release_extras`, then the stock), in one transaction
    with the order row locked. Idempotent: cancelling a cancelled order returns it unchanged.
    Someone else's order is NotFound (order_not_found); any other status is InvalidState
    (order_not_cancellable). A payment arriving later is refunded (models/payments.py). The
    caller reopens live gates after the commit (`live_orders.reopen_gates`)."""
    with db.atomic():
        row = execute(f'SELECT user_id, status FROM "order" WHERE id = %s{for_update()}', (order_id,)).fetchone()
        if row is None or row[0] != user.id:
            raise NotFound(f"order {order_id} not found", code="order_not_found")
        if row[1] == Status.PENDING:
            flipped = execute('UPDATE "order" SET status = %s WHERE id = %s AND status = %s',
                              (Status.CANCELLED.value, order_id, Status.PENDING.value)).rowcount
            if flipped:
                release_extras([order_id])  # before the stock: tier rows, then SKU rows
                inventory.release(order_id)
                events.record("order.cancelled", f"order:{order_id}", f"user:{user.id}")
        elif row[1] != Status.CANCELLED:
            raise InvalidState(f"order {order_id} is {row[1]}: only an unpaid order can be cancelled",
                               code="order_not_cancellable")
    return get_order(order_id, user=user)


def set_amount(order: Order, *, amount_fen: int, unit_price_fen: int | None = None,
               discount_fen: int = 0, creator_discount_fen: int = 0) -> None:
    """Inside `place_order`'s `within`: the order's price after a coupon (the amount the buyer
    pays, what came off it, and the seller's part of that)."""
    if not 0 <= creator_discount_fen <= discount_fen or amount_fen < 0:
        raise ValueError("discounts must satisfy 0 <= creator part <= discount, amount >= 0")
    order.amount_fen, order.discount_fen, order.creator_discount_fen = amount_fen, discount_fen, creator_discount_fen
    if unit_price_fen is not None:
        order.unit_price_fen = unit_price_fen
    execute('UPDATE "order" SET amount_fen = %s, unit_price_fen = %s, discount_fen = %s, '
            "creator_discount_fen = %s WHERE id = %s",
            (amount_fen, order.unit_price_fen, discount_fen, creator_discount_fen, order.id))


def release_extras(order_ids: list[int]) -> None:
    """What an unpaid order held besides stock, given back when it expires or is cancelled (in
    the caller's transaction, before the stock): live tier places, coupons, group-buy seats."""
    live_prices.released(order_ids)
    coupons.released(order_ids)
    groupbuy.released(order_ids)


def get_order(order_id: int, *, user: User | None = None) -> Order:
    """Raises NotFound when the order does not exist or belongs to someone else."""
    query = Order.select(Order, Sku).join(Sku).where(Order.id == order_id)
    if user is not None:
        query = query.where(Order.user == user)
    order = query.first()
    if order is None:
        raise NotFound(f"order {order_id} not found", code="order_not_found")
    return order


def list_orders(user: User, *, limit: int = 20, before_id: int | None = None) -> list[Order]:
    query = Order.select(Order, Sku).join(Sku).where(Order.user == user)
    if before_id:
        query = query.where(Order.id < before_id)
    return list(query.order_by(Order.id.desc()).limit(limit))
