"""Orders and stock: reservation, expiry, counter stock, bundles, and a no-oversell property."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as h_settings
from hypothesis import strategies as st

from models import catalog, delivery, inventory, orders, payments, vault
from models.catalog import Kind, Sku
from models.db import db, utcnow
from models.errors import OutOfStock
from models.events import Event
from models.inventory import OrderItem
from models.orders import Order, OrderRequest, Status
from models.vault import CardKey, KeyState
from tests.factories import POLICY, buyer, unpaid


def overdue(*order_ids: int) -> None:
    with db.connection_context():
        Order.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(
            Order.id.in_(order_ids)).execute()


def counts(sku: Sku) -> dict[str, int]:
    with db.connection_context():
        return vault.key_counts(sku)


def stock(sku: Sku) -> int:
    with db.connection_context():
        return Sku.get_by_id(sku.id).stock


def test_placing_an_order_reserves_keys_for_it(shop):
    # given a pool of 5 keys
    sku = shop.card_sku(keys=5, price=1990)
    # when a buyer orders 3
    order = unpaid(sku, quantity=3)
    # then 3 keys are reserved for that order and 2 remain available
    assert order.amount_fen == 5970 and order.status == Status.PENDING
    assert counts(sku)[KeyState.RESERVED] == 3 and counts(sku)[KeyState.AVAILABLE] == 2
    with db.connection_context():
        assert CardKey.select().where(CardKey.order_id == order.id).count() == 3
        assert inventory.available([sku])[sku.id] == 2


def test_expiry_returns_keys_exactly_once(shop):
    # given two pending orders, one overdue
    sku = shop.card_sku(keys=5)
    late = unpaid(sku, "a", 2)
    fresh = unpaid(sku, "b", 1)
    overdue(late.id)
    # when the expiry job runs twice
    with db.connection_context():
        first = orders.expire_due()
        second = orders.expire_due()
    # then only the overdue order expired, once, and its keys went back to the shelf once
    assert (first, second) == (1, 0)
    assert counts(sku)[KeyState.AVAILABLE] == 4 and counts(sku)[KeyState.RESERVED] == 1
    with db.connection_context():
        assert Order.get_by_id(late.id).status == Status.EXPIRED
        assert Order.get_by_id(fresh.id).status == Status.PENDING
        assert CardKey.select().where(CardKey.order_id == late.id).count() == 0
        assert not CardKey.select().where((CardKey.state == KeyState.AVAILABLE)
                                          & CardKey.reserved_at.is_null(False)).exists()
        assert OrderItem.select().where(OrderItem.order_id == late.id).count() == 0
        assert Event.select().where(Event.topic == "order.expired").count() == 1


def test_expired_keys_can_be_bought_again(shop):
    # given a pool of 2 keys fully reserved by an order that then expires
    sku = shop.card_sku(keys=2)
    first = unpaid(sku, "a", 2)
    with db.connection_context(), pytest.raises(OutOfStock):
        orders.place_order(buyer("b"), OrderRequest(sku.code, 1), POLICY, client_ip="x")
    overdue(first.id)
    with db.connection_context():
        orders.expire_due()
    # when another buyer orders both
    second = unpaid(sku, "b", 2)
    # then they hold the same two keys
    with db.connection_context():
        assert CardKey.select().where(CardKey.order_id == second.id).count() == 2


def test_counter_stock_expiry_restores_units_once(shop):
    # given a serial SKU with 5 units and an overdue order for 3
    sku = shop.counter_sku(Kind.SERIAL, stock=5)
    order = unpaid(sku, quantity=3)
    assert stock(sku) == 2
    overdue(order.id)
    # when expiry runs twice
    with db.connection_context():
        orders.expire_due()
        orders.expire_due()
    # then the units came back exactly once
    assert stock(sku) == 5


@pytest.mark.parametrize("kind", [Kind.SERIAL, Kind.TOPUP])
def test_counter_stock_never_goes_below_zero(shop, kind):
    # given a counter SKU with 2 units left
    sku = shop.counter_sku(kind, stock=2)
    extra = {"account": "13800000000"} if kind == Kind.TOPUP else {}
    quantity = 1 if kind == Kind.TOPUP else 2
    placed = [unpaid(sku, f"u{i}", quantity, **extra) for i in range(2 // quantity)]
    # when one more is ordered
    with db.connection_context(), pytest.raises(OutOfStock):
        orders.place_order(buyer("late"), OrderRequest(sku.code, quantity, **extra), POLICY,
                           client_ip="x")
    # then stock is 0, not negative, and the failed attempt left no order behind
    assert stock(sku) == 0
    with db.connection_context():
        assert Order.select().count() == len(placed)
        assert OrderItem.select().count() == len(placed)


def test_a_request_larger_than_the_stock_reserves_nothing(shop):
    sku = shop.card_sku(keys=3)
    with db.connection_context(), pytest.raises(OutOfStock):
        orders.place_order(buyer(), OrderRequest(sku.code, 4), POLICY, client_ip="x")
    assert counts(sku)[KeyState.AVAILABLE] == 3
    with db.connection_context():
        assert Order.select().count() == 0 and Event.select().count() == 0


def test_bundles_are_all_or_nothing(shop):
    # given a bundle of 2 keys of A + 1 serial B, where B has just run out
    a = shop.card_sku(keys=5, code="A")
    b = shop.counter_sku(Kind.SERIAL, stock=1, code="B")
    bundle = shop.bundle([(a, 2), (b, 1)])
    unpaid(b, "first", 1)
    # when the bundle is ordered
    with db.connection_context(), pytest.raises(OutOfStock):
        orders.place_order(buyer(), OrderRequest(bundle.code, 1), POLICY, client_ip="x")
    # then nothing of A was reserved either, and no order exists for it
    assert counts(a)[KeyState.AVAILABLE] == 5 and stock(b) == 0
    with db.connection_context():
        assert Order.select().where(Order.sku == bundle.id).count() == 0
        assert inventory.available([bundle])[bundle.id] == 0


def test_bundle_reservation_and_expiry_cover_every_component(shop):
    # given a bundle of 2 keys of A + 1 serial B
    a = shop.card_sku(keys=5, code="A")
    b = shop.counter_sku(Kind.SERIAL, stock=3, code="B")
    bundle = shop.bundle([(a, 2), (b, 1)])
    with db.connection_context():
        assert inventory.available([bundle])[bundle.id] == 2
    # when 2 bundles are ordered
    order = unpaid(bundle, quantity=2)
    # then 4 keys and 2 units are reserved
    assert counts(a)[KeyState.RESERVED] == 4 and stock(b) == 1
    with db.connection_context():
        assert {(i.sku_id, i.quantity) for i in inventory.items_of(order.id)} == {
            (a.id, 4), (b.id, 2)}
    # and expiry returns all of it
    overdue(order.id)
    with db.connection_context():
        orders.expire_due()
    assert counts(a)[KeyState.AVAILABLE] == 5 and stock(b) == 3


def test_a_bundle_whose_second_key_component_runs_short_releases_the_first(shop):
    # given a bundle of keys from two pools where the second pool has only 1 key
    a = shop.card_sku(keys=4, code="A")
    c = shop.card_sku(keys=1, code="C")
    bundle = shop.bundle([(a, 1), (c, 2)])
    # when it is ordered
    with db.connection_context(), pytest.raises(OutOfStock):
        orders.place_order(buyer(), OrderRequest(bundle.code, 1), POLICY, client_ip="x")
    # then neither pool holds a reservation
    assert counts(a)[KeyState.RESERVED] == 0 and counts(c)[KeyState.RESERVED] == 0


# ---- property: random buying, paying and expiring never oversells ----------------------------

_run = itertools.count()

ops = st.lists(
    st.one_of(
        st.tuples(st.just("place"), st.integers(0, 2), st.integers(1, 3), st.integers(0, 2)),
        st.tuples(st.just("expire"), st.integers(0, 20)),
        st.tuples(st.just("pay"), st.integers(0, 20)),
        st.tuples(st.just("deliver"), st.integers(0, 20)),
    ),
    min_size=1, max_size=25,
)


@h_settings(max_examples=30, deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=ops)
def test_random_orders_payments_and_expiry_never_oversell(rt, steps):
    # given a fresh small pool per example: 4 keys of A, 3 units of serial B, bundle A+B
    n = next(_run)
    pool, units = 4, 3
    with db.connection_context():
        product = catalog.create_product(f"prop {n}")
        a = catalog.create_sku(product, code=f"P{n}-A", name="A", kind=Kind.CARD_KEY,
                               supply_price_fen=100, retail_price_fen=300)
        vault.import_keys(a, [(i, f"P{n}-A-KEY-{i:04d}-XYZ") for i in range(pool)])
        b = catalog.create_sku(product, code=f"P{n}-B", name="B", kind=Kind.SERIAL,
                               supply_price_fen=100, retail_price_fen=200, stock=units)
        vault.seal_serial(b, f"P{n}-SERIAL")
        bundle = catalog.create_sku(product, code=f"P{n}-AB", name="AB", kind=Kind.BUNDLE,
                                    supply_price_fen=200, retail_price_fen=450,
                                    bundle=[(a, 1), (b, 1)])
        skus = [a, b, bundle]
        users = [orders_user(f"prop-{n}-{i}") for i in range(3)]
        placed: list[int] = []
        # when a random sequence of operations runs
        for step in steps:
            if step[0] == "place":
                _, s, q, u = step
                try:
                    order, _ = orders.place_order(users[u], OrderRequest(skus[s].code, q), POLICY,
                                                  client_ip=f"ip-{u}")
                    placed.append(order.id)
                except OutOfStock:
                    pass
            elif placed and step[0] == "expire":
                Order.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(
                    (Order.id == placed[step[1] % len(placed)])
                    & (Order.status == Status.PENDING)).execute()
                orders.expire_due()
            elif placed and step[0] == "pay":
                order = Order.get_by_id(placed[step[1] % len(placed)])
                payments.confirm_payment(order.no, f"tx-{order.no}", order.amount_fen,
                                         source="test")
            elif placed and step[0] == "deliver":
                delivery.fulfil_order(placed[step[1] % len(placed)])
            # then after every step the stock adds up
            _check_conservation(a, b, pool, units, placed)


def orders_user(openid: str):  # noqa: ANN201
    from models.users import get_or_create_by_openid

    return get_or_create_by_openid(openid)


def _check_conservation(a: Sku, b: Sku, pool: int, units: int, placed: list[int]) -> None:
    keys = list(CardKey.select().where(CardKey.sku == a.id))
    assert len(keys) == pool
    by_order: dict[int, int] = {}
    for k in keys:
        if k.state == KeyState.AVAILABLE:
            assert k.order_id is None
        else:
            assert k.order_id is not None
            by_order[k.order_id] = by_order.get(k.order_id, 0) + 1
    b_stock = Sku.get_by_id(b.id).stock
    assert b_stock >= 0
    b_held = 0
    for order in Order.select().where(Order.id.in_(placed)):
        items = {i.sku_id: i.quantity for i in OrderItem.select().where(OrderItem.order_id == order.id)}
        held_keys = by_order.get(order.id, 0)
        if order.status == Status.EXPIRED:
            assert held_keys == 0 and not items
        # an order holds exactly the keys its items say; a paid-late order that found the
        # shelf empty holds nothing and is waiting for its refund
        assert held_keys == items.get(a.id, 0)
        b_held += items.get(b.id, 0)
        vouchers = delivery.Voucher.select().where(delivery.Voucher.order == order.id).count()
        if order.status == Status.DELIVERED:
            assert vouchers == sum(items.values()) > 0
            assert all(k.state == KeyState.SOLD for k in keys if k.order_id == order.id)
        else:
            assert vouchers == 0
            assert all(k.state == KeyState.RESERVED for k in keys if k.order_id == order.id)
    # every key is in at most one order (one order_id column) and keys+units are conserved
    assert sum(by_order.values()) + sum(k.state == KeyState.AVAILABLE for k in keys) == pool
    assert b_stock + b_held == units


def test_price_changes_and_deactivation_apply_to_the_very_next_order(shop):
    # given a SKU that was just ordered (its metadata may now be cached by this process)
    sku = shop.card_sku(keys=5, price=1000)
    with db.connection_context():
        first, _ = orders.place_order(buyer("p1"), OrderRequest(sku.code, 1), POLICY, client_ip="ip")
        # when the operator raises the price
        Sku.update(retail_price_fen=1500).where(Sku.id == sku.id).execute()
        second, _ = orders.place_order(buyer("p2"), OrderRequest(sku.code, 2), POLICY, client_ip="ip")
        # then the next order is charged the new price, as stored
        assert first.amount_fen == 1000
        assert second.unit_price_fen == 1500 and second.amount_fen == 3000
        assert Order.get_by_id(second.id).amount_fen == 3000
        # and when the SKU is switched off, the next order is refused and writes nothing
        Sku.update(active=False).where(Sku.id == sku.id).execute()
        before = Order.select().count()
        with pytest.raises(orders.NotFound):
            orders.place_order(buyer("p3"), OrderRequest(sku.code, 1), POLICY, client_ip="ip")
        assert Order.select().count() == before


def test_an_order_does_not_wait_for_a_foreign_key_check_on_its_buyer(rt, shop):
    """PostgreSQL: the delivery worker's voucher and notice inserts hold KEY SHARE locks on
    their buyers' rows until their batch commits; placing an order must not wait for them."""
    if not rt.settings.DATABASE_URL.startswith("postgres"):
        pytest.skip("row-lock modes are PostgreSQL's")
    import psycopg2

    sku, user = shop.card_sku(keys=2), buyer()
    # given another transaction holding the lock a foreign-key check takes on the buyer's row
    other = psycopg2.connect(rt.settings.DATABASE_URL)
    try:
        with other.cursor() as cur:
            cur.execute('SELECT 1 FROM "user" WHERE id = %s FOR KEY SHARE', (user.id,))
            # when the buyer places an order meanwhile (a lock wait fails at once)
            with db.connection_context():
                db.execute_sql("SET lock_timeout = '2s'")
                try:
                    order = unpaid(sku, user=user)
                finally:
                    db.execute_sql("RESET lock_timeout")
    finally:
        other.rollback()
        other.close()
    # then it went through while the other transaction was still open
    assert order.status == Status.PENDING
    assert counts(sku)[KeyState.RESERVED] == 1
