"""End to end through the HTTP API, the real wechatpy clients and the fake WeChat servers."""

from __future__ import annotations

from models.db import db
from models.ledger import unbalanced_transactions
from models.vault import CardKey


def test_login_buy_pay_deliver_reveal(client, login, shop, fake_pay, fake_wechat, run_jobs):
    # given a card-key SKU with 3 keys and a logged-in shopper
    sku = shop.card_sku(keys=3, price=1990)
    auth = login("alice")
    # when she orders two, pays through WeChat Pay and the worker runs
    resp = client.post("/api/v1/orders", json={"sku": sku.code, "quantity": 2, "ref": "star42"},
                       headers={**auth, "Idempotency-Key": "order-0001"})
    assert resp.status_code == 201, resp.json
    order = resp.json
    assert order["amount_fen"] == 3980 and order["status"] == "pending" and order["ref"] == "star42"
    pay = client.post(f"/api/v1/orders/{order['id']}/pay", headers=auth)
    assert pay.status_code == 200, pay.json
    assert pay.json["params"]["package"].startswith("prepay_id=")
    notified = fake_pay.pay(order["no"])
    assert b"SUCCESS" in notified.content
    run_jobs()
    # then the order is delivered, two vouchers are listed masked, and revealed only to her
    assert client.get(f"/api/v1/orders/{order['id']}", headers=auth).json["status"] == "delivered"
    vouchers = client.get("/api/v1/vouchers", headers=auth).json["vouchers"]
    assert len(vouchers) == 2 and all(v["secret"] is None for v in vouchers)
    revealed = client.get(f"/api/v1/vouchers/{vouchers[0]['id']}", headers=auth).json
    assert revealed["secret"].startswith(sku.code + "-KEY-")
    assert revealed["masked"].endswith(revealed["secret"][-4:])
    other = login("mallory")
    assert client.get(f"/api/v1/vouchers/{vouchers[0]['id']}", headers=other).status_code == 404
    # and the buyer got one subscribe message, which carries no key
    sent = [m for m in fake_wechat.subscribe_messages if order["no"] in str(m["data"])]
    assert len(sent) == 1 and sent[0]["touser"] == "alice" and "KEY" not in str(sent[0])
    with db.connection_context():
        assert CardKey.select().where(CardKey.state == "sold").count() == 2
        assert unbalanced_transactions() == []


def test_stock_listing_counts_available_keys(client, shop):
    # given a SKU with 4 keys
    sku = shop.card_sku(keys=4)
    # when the shelf is listed
    products = client.get("/api/v1/products").json["products"]
    # then the SKU shows its price in fen and that stock is low, without the exact count (4 is
    # under LOW_STOCK_THRESHOLD and under SHELF_EXACT_STOCK_FROM, issue 14)
    listed = [s for p in products for s in p["skus"] if s["code"] == sku.code][0]
    assert listed["stock_state"] == "low" and listed["available"] is None and listed["price_fen"] == 1990
