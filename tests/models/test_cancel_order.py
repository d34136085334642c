"""The buyer cancels an unpaid order (models/orders.py `cancel_order`, issue 14): stock and what
else the order held go back exactly once, in one transaction; other orders and states refused."""

from __future__ import annotations

import datetime as dt

import pytest

from models import orders
from models.db import db, utcnow
from models.errors import InvalidState, NotFound
from models.events import Event
from models.orders import Order, Status
from models.vault import CardKey, KeyState
from tests.factories import buyer, laddered, live_order, paid, tier_counts, unpaid


def key_counts(sku_id: int) -> dict[str, int]:
    with db.connection_context():
        return {s: CardKey.select().where((CardKey.sku == sku_id) & (CardKey.state == s)).count()
                for s in (KeyState.AVAILABLE, KeyState.RESERVED, KeyState.SOLD)}


def cancel(order_id: int, openid: str = "buyer-1") -> Order:
    with db.connection_context():
        return orders.cancel_order(order_id, buyer(openid))


def test_cancelling_an_unpaid_order_releases_its_keys_once(shop):
    # given a pending order holding 2 of 5 keys
    sku = shop.card_sku(keys=5)
    order = unpaid(sku, quantity=2)
    assert key_counts(sku.id)[KeyState.RESERVED] == 2
    # when its buyer cancels it, twice
    first = cancel(order.id)
    again = cancel(order.id)
    # then it is cancelled, both keys are for sale again, and one event was written
    assert first.status == again.status == Status.CANCELLED
    assert key_counts(sku.id) == {KeyState.AVAILABLE: 5, KeyState.RESERVED: 0, KeyState.SOLD: 0}
    with db.connection_context():
        assert Event.select().where(Event.topic == "order.cancelled").count() == 1
    # and the expiry job later leaves it alone (no second release)
    with db.connection_context():
        Order.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(Order.id == order.id).execute()
        assert orders.expire_due() == 0
    assert key_counts(sku.id)[KeyState.AVAILABLE] == 5


def test_the_released_keys_are_sold_to_the_next_buyer(shop):
    # given the only key held by an order its buyer cancels
    sku = shop.card_sku(keys=1)
    cancel(unpaid(sku, "a").id, "a")
    # when someone else buys it, then it is theirs
    order = paid(sku, "b")
    assert order.status == Status.PENDING  # the object as placed; the database says paid/delivered
    with db.connection_context():
        assert Order.get_by_id(order.id).status in (Status.PAID, Status.DELIVERED)
    assert key_counts(sku.id)[KeyState.AVAILABLE] == 0


def test_someone_elses_order_is_not_found_and_untouched(shop):
    # given Alice's pending order
    sku = shop.card_sku(keys=2)
    order = unpaid(sku, "alice")
    # when Bob tries to cancel it, then it is not found for him and stays pending with its key
    with pytest.raises(NotFound) as refused:
        cancel(order.id, "bob")
    assert refused.value.code == "order_not_found"
    with db.connection_context():
        assert Order.get_by_id(order.id).status == Status.PENDING
    assert key_counts(sku.id)[KeyState.RESERVED] == 1
    # and an order id that does not exist is not found either
    with pytest.raises(NotFound):
        cancel(10**9, "bob")


@pytest.mark.parametrize("state", ["paid", "expired"])
def test_a_paid_or_expired_order_cannot_be_cancelled(shop, state):  # noqa: ANN001
    # given an order that was paid, or expired
    sku = shop.card_sku(keys=3)
    if state == "paid":
        order = paid(sku, dispatch=False)
    else:
        order = unpaid(sku)
        with db.connection_context():
            Order.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(Order.id == order.id).execute()
            orders.expire_due()
    before = key_counts(sku.id)
    # when its buyer cancels it, then it is refused and nothing changes
    with pytest.raises(InvalidState) as refused:
        cancel(order.id)
    assert refused.value.code == "order_not_cancellable"
    assert key_counts(sku.id) == before
    with db.connection_context():
        assert Order.get_by_id(order.id).status == state


def test_a_cancelled_live_order_gives_its_tier_place_back(rt, shop):
    # given a ladder of 1 place at 9.90 then 1 at 19.90, the first place taken
    sku = shop.card_sku(keys=5, price=9900)
    session, pin = laddered(sku, ((1, 990), (1, 1990)))
    order, _created = live_order(sku, session.id, "a")
    assert order.amount_fen == 990
    # when its buyer cancels it
    cancel(order.id, "a")
    # then the place is free again: the next buyer gets 9.90
    assert tier_counts(pin.id)[0][1] == 0
    nxt, _created = live_order(sku, session.id, "b")
    assert nxt.amount_fen == 990


# A payment arriving after the cancellation: tests/miniapp_api/shop/test_self_service_api.py
# (through WeChat Pay's notification, the whole story).
