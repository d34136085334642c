"""Placing and reading orders through the API: idempotency, anti-hoarding, stock, listing."""

from __future__ import annotations

import threading
import time
from collections import Counter

import requests

from models.catalog import Kind, Sku
from models.db import db
from models.inventory import OrderItem
from models.orders import Order
from models.users import User
from models.vault import CardKey
from tests.factories import api_pay
from tests.miniapp_api.asserts import assert_error, snapshot

ORDERS = "/api/v1/orders"


def key_states(sku: Sku) -> Counter:
    with db.connection_context():
        return Counter(k.state for k in CardKey.select().where(CardKey.sku == sku.id))


def stock_of(sku: Sku) -> int:
    with db.connection_context():
        return Sku.get_by_id(sku.id).stock


# -- idempotency ------------------------------------------------------------------------------

def test_same_idempotency_key_and_body_returns_the_same_order(client, rt, login, shop):
    # given a shopper and a SKU
    sku = shop.card_sku(keys=5)
    auth = {**login("alice"), "Idempotency-Key": "checkout-7f3a9c"}
    body = {"sku": sku.code, "quantity": 2, "ref": "star42"}
    # when the same order is posted twice with the same key (a retried tap)
    first = client.post(ORDERS, json=body, headers=auth)
    second = client.post(ORDERS, json=body, headers=auth)
    # then 201 then 200 with the same order, and only two keys are reserved
    assert first.status_code == 201, first.json
    assert second.status_code == 200, second.json
    assert second.json == first.json
    assert key_states(sku) == {"reserved": 2, "available": 3}
    with db.connection_context():
        assert Order.select().count() == 1


def test_same_idempotency_key_with_another_body_is_409(client, rt, login, shop):
    # given an order placed with a key
    sku = shop.card_sku(keys=5)
    other = shop.card_sku(keys=5)
    auth = {**login("alice"), "Idempotency-Key": "checkout-7f3a9c"}
    assert client.post(ORDERS, json={"sku": sku.code, "quantity": 1}, headers=auth).status_code == 201
    before = snapshot(rt)
    # when the key is reused with another quantity, SKU, ref or account
    for body in ({"sku": sku.code, "quantity": 2}, {"sku": other.code, "quantity": 1},
                 {"sku": sku.code, "quantity": 1, "ref": "someone"}):
        resp = client.post(ORDERS, json=body, headers=auth)
        # then 409 idempotency_conflict and nothing more is written
        assert_error(resp, 409, "idempotency_conflict")
    assert snapshot(rt) == before


def test_idempotency_keys_are_per_user(client, rt, login, shop):
    # given Alice used a key
    sku = shop.card_sku(keys=5)
    body = {"sku": sku.code}
    alice = client.post(ORDERS, json=body, headers={**login("alice"), "Idempotency-Key": "shared-key-1"})
    # when Bob happens to use the same key
    bob = client.post(ORDERS, json=body, headers={**login("bob"), "Idempotency-Key": "shared-key-1"})
    # then Bob gets his own order, not Alice's
    assert alice.status_code == bob.status_code == 201
    assert alice.json["id"] != bob.json["id"]


def test_without_a_key_each_post_is_a_new_order(client, rt, login, shop):
    sku = shop.card_sku(keys=5)
    auth = login("alice")
    ids = {client.post(ORDERS, json={"sku": sku.code}, headers=auth).json["id"] for _ in range(2)}
    assert len(ids) == 2


def test_concurrent_requests_with_one_key_make_one_order(client, rt, login, shop, live_port):
    # given a shopper who taps "buy" on three devices at once with the same key
    sku = shop.card_sku(keys=10)
    headers = {**login("alice"), "Idempotency-Key": "race-key-0001"}
    url = f"http://127.0.0.1:{live_port}{ORDERS}"
    results: list[tuple[int, dict]] = []
    start = threading.Barrier(3)

    def post() -> None:
        with requests.Session() as http:
            http.trust_env = False
            start.wait()
            resp = http.post(url, json={"sku": sku.code, "quantity": 2}, headers=headers, timeout=30)
            results.append((resp.status_code, resp.json()))

    threads = [threading.Thread(target=post) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then exactly one order exists, one answer is 201, the others 200 with the same id
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 200, 201], results
    assert len({body["id"] for _, body in results}) == 1
    assert key_states(sku) == {"reserved": 2, "available": 8}


# -- anti-hoarding ----------------------------------------------------------------------------

def test_unpaid_order_limit_per_user(client, rt, login, shop, settings, fake_pay):
    # given a shopper with MAX_UNPAID_PER_USER unpaid orders
    sku = shop.card_sku(keys=10)
    auth = login("alice")
    placed = []
    for _ in range(settings.MAX_UNPAID_PER_USER):
        resp = client.post(ORDERS, json={"sku": sku.code}, headers=auth)
        assert resp.status_code == 201, resp.json
        placed.append(resp.json)
    before = snapshot(rt)
    # when she places one more
    resp = client.post(ORDERS, json={"sku": sku.code}, headers=auth)
    # then 429 too_many_unpaid_orders and nothing is reserved
    assert_error(resp, 429, "too_many_unpaid_orders")
    assert snapshot(rt) == before
    # and another shopper is not affected
    assert client.post(ORDERS, json={"sku": sku.code}, headers=login("bob")).status_code == 201
    # and once she pays one, she can order again
    api_pay(client, fake_pay, auth, placed[0])
    again = client.post(ORDERS, json={"sku": sku.code}, headers=auth)
    assert again.status_code == 201, again.json


def test_idempotent_replay_is_allowed_at_the_limit(client, rt, login, shop, settings):
    # given a shopper at the unpaid limit whose last order used a key
    sku = shop.card_sku(keys=10)
    auth = login("alice")
    for i in range(settings.MAX_UNPAID_PER_USER):
        headers = {**auth, "Idempotency-Key": f"order-key-{i:04d}"}
        assert client.post(ORDERS, json={"sku": sku.code}, headers=headers).status_code == 201
    # when the last request is retried with the same key
    replay = client.post(ORDERS, json={"sku": sku.code}, headers=headers)
    # then it is the same order again, not a 429
    assert replay.status_code == 200, replay.json


# -- stock ------------------------------------------------------------------------------------

def test_out_of_stock_card_keys_is_409_and_reserves_nothing(client, rt, login, shop):
    # given a SKU with 2 keys
    sku = shop.card_sku(keys=2)
    auth = login("alice")
    before = snapshot(rt)
    # when 3 are ordered
    resp = client.post(ORDERS, json={"sku": sku.code, "quantity": 3}, headers=auth)
    # then 409 out_of_stock, no key reserved, no order, no event
    assert_error(resp, 409, "out_of_stock")
    assert snapshot(rt) == before
    assert key_states(sku) == {"available": 2}
    # and the 2 that exist can still be bought
    assert client.post(ORDERS, json={"sku": sku.code, "quantity": 2}, headers=auth).status_code == 201
    assert_error(client.post(ORDERS, json={"sku": sku.code}, headers=auth), 409, "out_of_stock")


def test_out_of_stock_counter_sku_is_409_and_keeps_stock(client, rt, login, shop):
    # given a serial SKU with stock 1
    sku = shop.counter_sku(Kind.SERIAL, stock=1)
    auth = login("alice")
    before = snapshot(rt)
    # when 2 are ordered
    resp = client.post(ORDERS, json={"sku": sku.code, "quantity": 2}, headers=auth)
    # then 409 and the stock is still 1
    assert_error(resp, 409, "out_of_stock")
    assert snapshot(rt) == before and stock_of(sku) == 1


def test_bundle_reserves_one_of_each_component(client, rt, login, shop):
    # given a bundle of one card key and one serial
    card = shop.card_sku(keys=3)
    serial = shop.counter_sku(Kind.SERIAL, stock=5)
    bundle = shop.bundle([(card, 1), (serial, 1)], price=3000)
    auth = login("alice")
    # when two bundles are ordered
    resp = client.post(ORDERS, json={"sku": bundle.code, "quantity": 2}, headers=auth)
    # then each component is reserved twice, and the price is the bundle's
    assert resp.status_code == 201, resp.json
    assert resp.json["amount_fen"] == 6000 and resp.json["sku"] == bundle.code
    assert key_states(card) == {"reserved": 2, "available": 1}
    assert stock_of(serial) == 3
    with db.connection_context():
        items = {(i.sku_id, i.quantity) for i in OrderItem.select().where(OrderItem.order_id == resp.json["id"])}
    assert items == {(card.id, 2), (serial.id, 2)}


def test_bundle_with_one_component_short_reserves_nothing(client, rt, login, shop):
    # given a bundle whose serial component has 1 left while keys are plentiful
    card = shop.card_sku(keys=5)
    serial = shop.counter_sku(Kind.SERIAL, stock=1)
    bundle = shop.bundle([(card, 1), (serial, 1)])
    auth = login("alice")
    before = snapshot(rt)
    # when two bundles are ordered
    resp = client.post(ORDERS, json={"sku": bundle.code, "quantity": 2}, headers=auth)
    # then 409 and neither component is touched (the keys claimed first are rolled back)
    assert_error(resp, 409, "out_of_stock")
    assert snapshot(rt) == before
    assert key_states(card) == {"available": 5} and stock_of(serial) == 1


def test_shelf_shows_reservations(client, rt, login, shop):
    # (60 keys: the exact count is shown from SHELF_EXACT_STOCK_FROM = 50 up, issue 14)
    sku = shop.card_sku(keys=60)
    client.post(ORDERS, json={"sku": sku.code, "quantity": 3}, headers=login("alice"))
    listed = [s for p in client.get("/api/v1/products").json["products"] for s in p["skus"]]
    assert [s["available"] for s in listed if s["code"] == sku.code] == [57]


# -- reading orders ---------------------------------------------------------------------------

def test_listing_my_orders_newest_first_and_paged(client, rt, login, shop, settings):
    # given Alice has three orders and Bob one
    sku = shop.card_sku(keys=10, price=1000)
    alice, bob = login("alice"), login("bob")
    mine = [client.post(ORDERS, json={"sku": sku.code, "quantity": q}, headers=alice).json
            for q in (1, 2, 3)]
    client.post(ORDERS, json={"sku": sku.code}, headers=bob)
    # when she lists her orders
    listed = client.get(ORDERS, headers=alice)
    # then she sees exactly hers, newest first, with amounts computed by the server
    assert listed.status_code == 200
    orders = listed.json["orders"]
    assert [o["id"] for o in orders] == [o["id"] for o in reversed(mine)]
    assert [o["amount_fen"] for o in orders] == [3000, 2000, 1000]
    assert all(o["status"] == "pending" and o["paid_at"] is None for o in orders)
    assert all(o["expires_at"] > o["created_at"] for o in orders)
    # and paging with limit / before_id walks the same list
    page1 = client.get(f"{ORDERS}?limit=2", headers=alice).json["orders"]
    page2 = client.get(f"{ORDERS}?limit=2&before_id={page1[-1]['id']}", headers=alice).json["orders"]
    assert [o["id"] for o in page1 + page2] == [o["id"] for o in orders]
    # and a single order reads the same as in the list
    one = client.get(f"{ORDERS}/{mine[0]['id']}", headers=alice)
    assert one.status_code == 200 and one.json == mine[0]


def test_a_new_user_has_no_orders(client, rt, login):
    resp = client.get(ORDERS, headers=login("newcomer"))
    assert resp.status_code == 200 and resp.json == {"orders": []}


def test_paid_order_cannot_be_paid_again(client, rt, login, shop, fake_pay):
    sku = shop.card_sku(keys=3)
    auth = login("alice")
    order = client.post(ORDERS, json={"sku": sku.code}, headers=auth).json
    api_pay(client, fake_pay, auth, order)
    assert client.get(f"{ORDERS}/{order['id']}", headers=auth).json["status"] == "paid"
    assert_error(client.post(f"{ORDERS}/{order['id']}/pay", headers=auth), 409, "order_not_payable")


# -- development-only routes ------------------------------------------------------------------

def test_dev_login_is_404_outside_dev(client, rt, settings):
    # given the test environment (not dev)
    assert settings.QIANXING_ENV == "test"
    before = snapshot(rt)
    # when someone tries to log in as any openid
    resp = client.post("/api/v1/auth/dev-login", json={"openid": "admin"})
    # then 404, and no user is created
    assert_error(resp, 404)
    assert snapshot(rt) == before
    with db.connection_context():
        assert User.select().where(User.openid == "admin").count() == 0


def test_sandbox_pay_is_403_with_the_real_gateway(client, rt, login, shop):
    sku = shop.card_sku(keys=2)
    auth = login("alice")
    order = client.post(ORDERS, json={"sku": sku.code}, headers=auth).json
    before = snapshot(rt)
    assert_error(client.post(f"{ORDERS}/{order['id']}/sandbox-pay", headers=auth), 403, "sandbox_disabled")
    assert snapshot(rt) == before


def test_a_session_used_before_still_expires_on_time(app, client, login, monkeypatch):
    # given a token this process has already verified once
    auth = login("expiring-buyer")
    assert client.get("/api/v1/orders", headers=auth).status_code == 200
    # when the session lifetime has passed
    monkeypatch.setitem(app.config, "SESSION_TTL_SECONDS", 1)
    time.sleep(1.2)
    # then the same token is refused as expired
    resp = client.get("/api/v1/orders", headers=auth)
    assert resp.status_code == 401 and "expired" in resp.json["error"]["message"]
