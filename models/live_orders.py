"""Placing an order in a live room for a pinned product with a live price (a ladder, an assist
offer, or both): the sold-out gate first, then one transaction that decides the price.

`place(...)` is what the order route calls for every order naming a live session. Orders for a
product that is not pinned in that session, or pinned without a ladder or assist offer, go to
`orders.place_order` unchanged. For the others:

1. the pin's route facts (pin, SKU, seller, whether it has a ladder / an assist offer) come from
   a per-process cache (`cache_s`, a second or two): a refused request runs no query;
2. a ladder pin asks the sold-out gate (models/live_gate.py); sold out -> 409 sold_out without
   touching the database. Redis unreachable -> the database decides alone;
3. one transaction: lock the buyer (unpaid limits), the session must be live (a ladder pin:
   409 live_not_on_air; an assist-only pin is then an ordinary order), E's
   `assist.unlocked_for_order` hook, `live_prices.claim` takes the places in the first tier
   with room (none left -> 409 sold_out), the order row at the decided unit
   price (markup 0: a live price is final; the seller is the session's creator and `live_id`
   the session), its 1:1 `live_order_price` row, `assist.consume` (False -> 409 assist_used,
   nothing written), the stock reservation and the unpaid limits, as `orders.place_order`.

Price: the tier's price; with an unlocked assist (quantity 1) the lower of the tier price and
the assist price. An assist buyer of a ladder pin takes a place like anyone: the ladder's units
are the session's allocation of the product.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

import peewee as pw

from models import assist, inventory, live_gate, live_prices, orders
from models.catalog import Sku
from models.db import db, execute, execute_batch, for_update, placeholders, utcnow
from models.errors import Conflict, OutOfStock, TooManyUnpaidOrders, Unauthenticated
from models.live import LiveState
from models.orders import Order, OrderPolicy, OrderRequest, Status
from models.users import User

log = logging.getLogger(__name__)


class SoldOut(OutOfStock):
    """Every place of the live price ladder is taken (409 sold_out)."""

    code = "sold_out"

    def __init__(self, message: str = "sold out at the live price", *, left: int = 0) -> None:
        super().__init__(message)
        self.left = left


class _OffAir(Exception):  # noqa: N818 - a signal inside this module, never raised out of it
    """The session is not live and the pin has no ladder: the catalog path applies."""


@dataclass(frozen=True)
class PinFacts:
    pin_id: int
    session_id: int
    creator_id: int
    sku: Sku
    ladder: bool
    assist: bool


_PIN = (
    "SELECT p.id, ls.creator_id, s.id, s.code, s.name, s.kind, s.retail_price_fen, s.max_per_order, "
    "s.product_id, s.supply_price_fen, "
    "EXISTS (SELECT 1 FROM live_tier t WHERE t.pin_id = p.id), "
    "EXISTS (SELECT 1 FROM assist_offer a WHERE a.pin_id = p.id) "
    "FROM live_pin p JOIN live_session ls ON ls.id = p.session_id JOIN sku s ON s.id = p.sku_id "
    "JOIN product pr ON pr.id = s.product_id WHERE p.session_id = %s AND s.code = %s AND s.active AND pr.active"
)
_pins: dict[tuple[int, str], tuple[float, PinFacts | None]] = {}
_PINS_MAX = 10_000


def forget_cached_pins() -> None:
    """Drop the per-process pin cache and forget a Redis outage (tests; after a pin changed and
    must show at once)."""
    global _gate_down_until
    _pins.clear()
    _gate_down_until = 0.0


def pin_facts(session_id: int, sku_code: str, cache_s: float) -> PinFacts | None:
    """The pin of `sku_code` in the session with its route facts; None when not pinned (or the
    SKU is inactive). Cached per process for `cache_s` seconds, misses too."""
    now = time.monotonic()
    hit = _pins.get((session_id, sku_code)) if cache_s > 0 else None
    if hit is not None and hit[0] > now:
        return hit[1]
    row = execute(_PIN, (session_id, sku_code)).fetchone()
    facts = None
    if row is not None:
        pin_id, creator_id, sku_id, code, name, kind, price, max_per_order, product_id, supply, ladder, offer = row
        facts = PinFacts(pin_id, session_id, creator_id,
                         Sku(id=sku_id, code=code, name=name, kind=kind, retail_price_fen=price,
                             max_per_order=max_per_order, product=product_id, supply_price_fen=supply),
                         bool(ladder), bool(offer))
    if cache_s > 0:
        if len(_pins) >= _PINS_MAX:
            _pins.clear()
        _pins[(session_id, sku_code)] = (now + cache_s, facts)
    return facts


def place(user: User, req: OrderRequest, policy: OrderPolicy, *, client_ip: str,
          idempotency_key: str | None = None, redis: Any = None, gate_ttl_s: int = 5,
          cache_s: float = 2.0) -> tuple[Order, bool]:
    """Place an order that may name a live session (see the module docstring). Returns
    (order, created) as `orders.place_order`, whose errors it raises too, plus SoldOut (409
    sold_out), Conflict live_not_on_air / assist_used. `redis` None: no gate."""
    facts = pin_facts(req.live, req.sku, cache_s) if req.live is not None else None
    if facts is None or not (facts.ladder or facts.assist):
        return orders.place_order(user, req, policy, client_ip=client_ip, idempotency_key=idempotency_key)
    orders._validate(req, facts.sku, policy)
    held = facts.ladder and redis is not None and _pass_gate(redis, facts, req.quantity, user.id,
                                                              idempotency_key, gate_ttl_s)
    try:
        order, created = _place(user, req, facts, policy, client_ip, idempotency_key)
    except _OffAir:  # an assist-only pin outside the session: an ordinary order
        return orders.place_order(user, req, policy, client_ip=client_ip, idempotency_key=idempotency_key)
    except SoldOut as exc:
        if held:
            _quietly(live_gate.settle, redis, facts.pin_id, exc.left)
        raise
    except OutOfStock:  # the shelf is empty before the ladder: nothing to sell until restocked
        if held:
            _quietly(live_gate.settle, redis, facts.pin_id, 0)
        raise
    except BaseException:
        if held:
            _quietly(live_gate.give, redis, facts.pin_id, req.quantity)
        raise
    if held and not created:
        _quietly(live_gate.give, redis, facts.pin_id, req.quantity)
    if created and redis is not None and facts.ladder:
        _quietly(live_gate.remember, redis, user.id, idempotency_key, order.id, policy.ttl_seconds)
    return order, created


def _pass_gate(redis: Any, facts: PinFacts, quantity: int, user_id: int,
               idempotency_key: str | None, ttl_s: int) -> bool:
    """True when a place is held at the gate; raises SoldOut when there is none; False when
    the database must decide alone (Redis unreachable, or a replay of a placed order). After a
    Redis error this process asks the database alone for GATE_RETRY_S (no wait per request)."""
    global _gate_down_until
    if _gate_down_until and time.monotonic() < _gate_down_until:
        return False
    try:
        answer = live_gate.take(redis, facts.pin_id, quantity, user_id=user_id, idempotency_key=idempotency_key)
        if answer is live_gate.Gate.MISSING:
            live_gate.load(redis, facts.pin_id, live_prices.left_of(facts.pin_id), ttl_s)
            answer = live_gate.take(redis, facts.pin_id, quantity, user_id=user_id,
                                    idempotency_key=idempotency_key)
    except Exception as exc:  # noqa: BLE001 - models/ cannot name redis' errors; the database decides
        log.warning("live gate unavailable (%s); the database decides alone for %s s", type(exc).__name__,
                    GATE_RETRY_S)
        _gate_down_until = time.monotonic() + GATE_RETRY_S
        return False
    _gate_down_until = 0.0
    if answer is live_gate.Gate.SOLD_OUT:
        raise SoldOut()
    return answer is live_gate.Gate.HELD


GATE_RETRY_S = 5.0
_gate_down_until = 0.0


def _quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - the counter errs high or reloads after its TTL
        log.warning("live gate update failed: %s", type(exc).__name__)


def _place(user: User, req: OrderRequest, facts: PinFacts, policy: OrderPolicy, client_ip: str,
           idempotency_key: str | None) -> tuple[Order, bool]:
    if idempotency_key and (found := orders._existing(user, idempotency_key, req)):
        return found, False
    sku, quantity, now = facts.sku, req.quantity, utcnow()
    order = Order(
        no=orders.new_order_no(), user=user, sku=sku, quantity=quantity, status=Status.PENDING.value,
        ref_code=req.ref, seller_id=facts.creator_id, markup_fen=0,
        cost_fen=(sku.supply_price_fen or 0) * quantity, live_id=facts.session_id,
        recipient_account=req.account, idempotency_key=idempotency_key, request_hash=req.fingerprint(),
        client_ip=client_ip, risk_hold=False, created_at=now,
        expires_at=now + dt.timedelta(seconds=policy.ttl_seconds),
    )
    try:
        with db.atomic():
            state = execute_batch([
                (orders._LOCK_BUYER + for_update("FOR NO KEY UPDATE"), (user.id,)),
                ("SELECT state FROM live_session WHERE id = %s", (facts.session_id,)),
            ]).fetchone()
            if (state is None or state[0] != LiveState.LIVE) and not facts.ladder:
                raise _OffAir()
            if state is None or state[0] != LiveState.LIVE:
                raise Conflict("this live session is not on air; live prices apply while it is",
                               code="live_not_on_air")
            unlocked = (assist.unlocked_for_order(user.id, facts.session_id, sku.id, now)
                        if facts.assist and quantity == 1 else None)
            claim = None
            if facts.ladder:
                claim = live_prices.claim(facts.pin_id, quantity)
                if claim is None:
                    raise SoldOut(left=live_prices.left_of(facts.pin_id))
            prices = [p for p in (claim.price_fen if claim else None, unlocked[1] if unlocked else None)
                      if p is not None]
            if not prices:  # an assist-only pin without an unlocked assist: the catalog price
                prices = [sku.retail_price_fen]
            order.unit_price_fen = min(prices)
            order.amount_fen = order.unit_price_fen * quantity
            used = unlocked if unlocked and unlocked[1] <= order.unit_price_fen else None
            order.id = execute(orders._INSERT_ORDER, (
                order.no, user.id, sku.id, quantity, order.unit_price_fen, order.amount_fen, order.status,
                order.ref_code, order.seller_id, 0, order.cost_fen, order.live_id, order.recipient_account,
                idempotency_key, order.request_hash, client_ip, False, orders._ts(now),
                orders._ts(order.expires_at))).fetchone()[0]
            live_prices.record(order.id, facts.session_id, facts.pin_id, claim, order.unit_price_fen,
                               quantity, used[0] if used else None)
            if used and not assist.consume(used[0], order.id, now=now):
                raise Conflict("this assist was just used by another order", code="assist_used")
            pending, at = Status.PENDING.value, orders._ts(now)
            mine, network = inventory.reserve(order.id, sku, quantity, then=(
                orders._UNPAID, (pending, at, user.id, pending, at, client_ip)))
            if mine > policy.max_unpaid_per_user:
                raise TooManyUnpaidOrders("you have too many unpaid orders; pay or wait for them")
            if network > policy.max_unpaid_per_ip:
                raise TooManyUnpaidOrders("too many unpaid orders from this network")
    except pw.IntegrityError:
        if idempotency_key and (found := orders._existing(user, idempotency_key, req)):
            return found, False
        if execute(orders._LOCK_BUYER, (user.id,)).fetchone() is None:
            raise Unauthenticated("unknown user; log in again") from None
        raise
    return order, True


def reopen_gates(redis: Any, order_ids: list[int]) -> None:
    """After orders expired or were refunded (committed): drop the sold-out gates of the live
    pins they gave places back to, so the next buyer reloads them from the database at once
    instead of after their TTL. Never raises (the TTL is the fallback)."""
    if not order_ids or redis is None:
        return
    pins: set[int] = set()
    for start in range(0, len(order_ids), 500):
        chunk = order_ids[start:start + 500]
        pins.update(r[0] for r in execute(
            f"SELECT DISTINCT pin_id FROM live_order_price WHERE order_id IN ({placeholders(chunk)}) "
            "AND tier_id IS NOT NULL", chunk).fetchall())
    _quietly(live_gate.forget, redis, sorted(pins))
