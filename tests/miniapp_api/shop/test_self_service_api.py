"""Shopper self-service through the mini-program API (issue 14): cancel an unpaid order, ask for
a refund and follow it, the shelf's categories, search, pages and stock state. Payments and
refunds go through the fake WeChat Pay, jobs through the real RQ worker in burst mode."""

from __future__ import annotations

from collections import Counter

from models.catalog import Sku
from models.coupons import CouponGrant
from models.db import db
from models.ledger import unbalanced_transactions
from models.notifications import Notification
from models.orders import Order
from models.refund_requests import RefundRequest
from models.vault import CardKey
from tests.factories import (
    ORDERS,
    api_buy,
    api_order,
    api_place,
    buyer,
    category,
    coupon,
    granted,
    reveal_keys,
    shelf_product,
)
from tests.miniapp_api.asserts import assert_error

PRODUCTS = "/api/v1/products"


def keys(sku: Sku) -> Counter:
    with db.connection_context():
        return Counter(k.state for k in CardKey.select().where(CardKey.sku == sku.id))


def refund_state(client, auth, order_id: int):  # noqa: ANN001, ANN201
    return client.get(f"{ORDERS}/{order_id}/refund-request", headers=auth)


# -- cancel -------------------------------------------------------------------------------------

def test_a_shopper_cancels_an_unpaid_order_and_its_keys_are_for_sale_again(client, login, shop):
    # given Alice's unpaid order for 2 of 3 keys
    sku = shop.card_sku(keys=3)
    alice = login("alice")
    order = api_place(client, alice, sku, 2)
    # when she cancels it (twice: a double tap)
    first = client.post(f"{ORDERS}/{order['id']}/cancel", headers=alice)
    again = client.post(f"{ORDERS}/{order['id']}/cancel", headers=alice)
    # then it is cancelled, the same answer both times, and all 3 keys are available
    assert first.status_code == again.status_code == 200
    assert first.json["status"] == again.json["status"] == "cancelled"
    assert keys(sku) == {"available": 3}
    # and Bob can buy all three
    assert api_place(client, login("bob"), sku, 3)["status"] == "pending"


def test_cancelling_someone_elses_or_a_paid_order_is_refused(client, login, shop, fake_pay):
    sku = shop.card_sku(keys=3)
    alice, bob = login("alice"), login("bob")
    pending = api_place(client, alice, sku)
    paid = api_buy(client, fake_pay, alice, sku)
    # Bob cannot see Alice's order; Alice cannot cancel a paid one; nothing changes
    assert_error(client.post(f"{ORDERS}/{pending['id']}/cancel", headers=bob), 404, "order_not_found")
    assert_error(client.post(f"{ORDERS}/{paid['id']}/cancel", headers=alice), 409, "order_not_cancellable")
    assert_error(client.post(f"{ORDERS}/{10**12}/cancel", headers=alice), 404, "order_not_found")
    assert_error(client.post(f"{ORDERS}/{pending['id']}/cancel"), 401)
    with db.connection_context():
        assert Order.get_by_id(pending["id"]).status == "pending"


def test_a_payment_for_a_cancelled_order_is_refunded_and_never_delivered(client, login, shop, fake_pay, run_jobs):
    # given an order whose payment sheet was opened, then cancelled
    sku = shop.card_sku(keys=1)
    alice = login("alice")
    order = api_order(client, alice, sku)
    assert client.post(f"{ORDERS}/{order['id']}/cancel", headers=alice).json["status"] == "cancelled"
    # when WeChat Pay reports the payment anyway and the jobs run
    assert fake_pay.notify_acknowledged(fake_pay.pay(order["no"]))
    run_jobs()
    # then the money went back through WeChat Pay, nothing was delivered, the key is for sale
    mine = client.get(f"{ORDERS}/{order['id']}", headers=alice).json
    assert mine["status"] == "refunded" and mine["delivered_at"] is None
    assert fake_pay.order(order["no"]).refunded_fee == order["amount_fen"]  # at WeChat Pay
    assert keys(sku) == {"available": 1}
    assert client.get("/api/v1/vouchers", headers=alice).json["vouchers"] == []
    with db.connection_context():
        assert unbalanced_transactions() == []


def test_a_coupon_freed_by_a_cancelled_order_is_used_by_someone_else(client, login, shop):
    # given a 5-yuan coupon with a single use, handed to Alice and Bob
    sku = shop.card_sku(keys=3, price=2000)
    alice, bob = login("alice"), login("bob")
    made = coupon(max_uses=1)
    grant_a, grant_b = granted(made, buyer("alice"), buyer("bob"))
    # when Alice orders with it, Bob's order with his is refused (the only use is taken)
    mine = api_place(client, alice, sku, coupons=[grant_a])
    assert mine["amount_fen"] == 1500
    refused = client.post(ORDERS, json={"sku": sku.code, "coupons": [grant_b]}, headers=bob)
    assert refused.status_code == 409
    # and once Alice cancels, Bob's order gets the discount
    client.post(f"{ORDERS}/{mine['id']}/cancel", headers=alice)
    assert api_place(client, bob, sku, coupons=[grant_b])["amount_fen"] == 1500
    with db.connection_context():
        assert CouponGrant.get_by_id(grant_a).state == "available"  # hers is back, still valid


# -- refund requests ----------------------------------------------------------------------------

def test_an_unused_order_is_refunded_automatically_and_the_shopper_sees_it(client, login, shop, fake_pay, run_jobs):
    # given Alice's delivered order whose key she never opened
    sku = shop.card_sku(keys=2)
    alice = login("alice")
    order = api_buy(client, fake_pay, alice, sku)
    run_jobs()
    # when she asks for a refund
    asked = client.post(f"{ORDERS}/{order['id']}/refund-request", json={"reason": "买错了"}, headers=alice)
    # then it is granted by the policy at once
    assert asked.status_code == 201
    assert (asked.json["state"], asked.json["automatic"]) == ("refunding", True)
    # and once the refund job ran, the money is back and the request says refunded
    run_jobs()
    assert refund_state(client, alice, order["id"]).json["state"] == "refunded"
    assert client.get(f"{ORDERS}/{order['id']}", headers=alice).json["status"] == "refunded"
    assert keys(sku) == {"available": 2}  # the unseen key went back to the pool
    with db.connection_context():
        assert unbalanced_transactions() == []
        # the result notice was tried on the configured channel (the subscribe message has no
        # template for it: recorded as failed, the shopper reads the state in the app)
        notices = list(Notification.select().where(Notification.kind == "refund_result"))
        assert [n.key for n in notices] == [f"refund_request:{asked.json['id']}:refunded:wxa_subscribe"]


def test_an_order_with_a_revealed_key_waits_for_an_operator(client, login, shop, fake_pay, run_jobs):
    sku = shop.card_sku(keys=2)
    alice = login("alice")
    order = api_buy(client, fake_pay, alice, sku)
    run_jobs()
    reveal_keys(order["id"])
    asked = client.post(f"{ORDERS}/{order['id']}/refund-request", json={"reason": "卡密无效"}, headers=alice)
    assert asked.status_code == 201 and (asked.json["state"], asked.json["automatic"]) == ("pending", False)
    run_jobs()
    assert refund_state(client, alice, order["id"]).json["state"] == "pending"
    assert client.get(f"{ORDERS}/{order['id']}", headers=alice).json["status"] == "delivered"


def test_bad_refund_requests_are_refused_and_nothing_is_written(client, login, shop, fake_pay, run_jobs):
    sku = shop.card_sku(keys=3)
    alice, bob = login("alice"), login("bob")
    order = api_buy(client, fake_pay, alice, sku)
    unpaid = api_place(client, alice, sku)
    url = f"{ORDERS}/{order['id']}/refund-request"
    assert_error(client.post(url, json={"reason": "不要了"}, headers=bob), 404, "order_not_found")
    assert_error(client.post(f"{ORDERS}/{unpaid['id']}/refund-request", json={"reason": "x"}, headers=alice),
                 409, "order_not_refundable")
    for body in ({"reason": ""}, {"reason": "长" * 201}, {}, {"reason": 5}, {"reason": "ok", "more": 1}):
        assert_error(client.post(url, json=body, headers=alice), 400)
    for blank in ("   ", "\t\n", "坏\x07了"):  # only whitespace, a control character: the document says so
        assert_error(client.post(url, json={"reason": blank}, headers=alice), 400, "invalid_request")
    assert_error(refund_state(client, alice, order["id"]), 404, "refund_request_not_found")
    assert_error(refund_state(client, bob, order["id"]), 404, "order_not_found")
    with db.connection_context():
        assert RefundRequest.select().count() == 0
    # one request is taken; the second is refused
    assert client.post(url, json={"reason": "不要了"}, headers=alice).status_code == 201
    assert_error(client.post(url, json={"reason": "再来"}, headers=alice), 409, "refund_already_requested")
    run_jobs()


# -- the shelf ----------------------------------------------------------------------------------

def test_categories_search_and_pages(client, rt):
    # given two categories and products in them
    games, vip = category("游戏", sort=2), category("会员", sort=1)
    shelf_product("王者荣耀点券", category_id=games)
    shelf_product("腾讯视频会员", category_id=vip)
    shelf_product("Netflix 会员", category_id=vip)
    # the categories in shelf order
    assert client.get("/api/v1/categories").json == {"categories": [{"id": vip, "name": "会员"},
                                                                     {"id": games, "name": "游戏"}]}
    # a category's products, a search, and two pages of one product that end with next = null
    assert [p["title"] for p in client.get(PRODUCTS, query_string={"category": games}).json["products"]] \
        == ["王者荣耀点券"]
    assert [p["title"] for p in client.get(PRODUCTS, query_string={"q": "netflix"}).json["products"]] \
        == ["Netflix 会员"]
    first = client.get(PRODUCTS, query_string={"limit": 2}).json
    second = client.get(PRODUCTS, query_string={"limit": 2, "after": first["next"]}).json
    listed = [p["title"] for p in first["products"] + second["products"]]
    assert listed == ["腾讯视频会员", "Netflix 会员", "王者荣耀点券"]
    assert second["next"] is None
    # and without parameters, what old clients get: every product, `next` null
    old = client.get(PRODUCTS).json
    assert len(old["products"]) == 3 and old["next"] is None


def test_absurd_shelf_requests_are_clear_400s(client, rt):
    shelf_product("一个商品")
    for query in ({"limit": 0}, {"limit": 51}, {"limit": 10**12}, {"limit": "many"}, {"q": "长" * 41},
                  {"after": "not-a-cursor"}, {"category": 0}, {"category": "x"}, {"q": "a\x01b"}):
        assert_error(client.get(PRODUCTS, query_string=query), 400)
    assert_error(client.get(PRODUCTS, query_string={"category": 999}), 404, "category_not_found")


def test_product_detail_shows_stock_state_not_small_counts(client, rt):
    few, many = shelf_product("少量", keys=3), shelf_product("充足", keys=55)
    small = client.get(f"{PRODUCTS}/{few.product_id}").json["skus"][0]
    big = client.get(f"{PRODUCTS}/{many.product_id}").json["skus"][0]
    assert (small["stock_state"], small["available"]) == ("low", None)
    assert (big["stock_state"], big["available"]) == ("in_stock", 55)
    assert_error(client.get(f"{PRODUCTS}/{10**9}"), 404, "product_not_found")
