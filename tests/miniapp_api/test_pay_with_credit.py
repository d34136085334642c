"""Shopping credit at checkout: a creator's credit withdrawal pays an order through
POST /api/v1/orders/{id}/pay-with-credit, and delivery follows as for any payment."""

from __future__ import annotations

import datetime as dt
import threading

import requests

from models import ledger, network, payments, withdrawals
from models.db import db, utcnow
from models.events import events_for
from models.ledger import LedgerTransaction, Posting
from models.orders import Order
from models.payments import Payment
from models.withdrawals import Method
from tests.books import release, settle
from tests.factories import api_place, creator, earn


def creator_with_credit(openid: str, credit: int, available: int = 0) -> network.Creator:
    """A creator who earned `credit + available` and turned `credit` into shopping credit
    with a credit withdrawal."""
    made = creator(openid)
    earn(made, credit + available)
    with db.connection_context():
        if credit:
            withdrawals.request_withdrawal(made, credit, Method.CREDIT,
                                           policy=withdrawals.WithdrawPolicy(min_fen=1))
    return made


def credit_of(creator: network.Creator) -> int:
    with db.connection_context():
        return withdrawals.balances(creator.id)["credit_fen"]


def test_credit_pays_the_order_and_delivery_follows(client, login, shop, run_jobs):
    # given a creator with 300 yuan of shopping credit and a 19.90 yuan card
    creator = creator_with_credit("credit-ann", 30_000)
    sku = shop.card_sku(keys=2, price=1990)
    auth = login("credit-ann")
    order = api_place(client, auth, sku)
    # when they pay with credit
    resp = client.post(f"/api/v1/orders/{order['id']}/pay-with-credit", headers=auth)
    # then the order is paid, delivered by the worker, and the credit is smaller by its price
    assert resp.status_code == 200, resp.json
    assert resp.json["status"] == "paid" and resp.json["paid_at"]
    run_jobs()
    assert client.get(f"/api/v1/orders/{order['id']}", headers=auth).json["status"] == "delivered"
    vouchers = client.get("/api/v1/vouchers", headers=auth).json["vouchers"]
    assert [v["order_id"] for v in vouchers] == [order["id"]]
    assert credit_of(creator) == 30_000 - 1990
    with db.connection_context():
        # credit -> sales, and no WeChat Pay cash for money never received
        txn = LedgerTransaction.get(LedgerTransaction.key == f"credit-payment:{order['no']}")
        assert txn.order_id == order["id"]
        assert ledger.balance(ledger.CASH_WECHATPAY) == 0
        assert ledger.balance(ledger.SALES) == -1990
        assert ledger.unbalanced_transactions() == []
        payment = Payment.get(Payment.order == order["id"])
        assert (payment.provider, payment.state, payment.amount_fen) == ("credit", "paid", 1990)
        assert [e.topic for e in events_for(f"order:{order['id']}")][:1] == ["order.paid"]


def test_paying_again_is_harmless(client, login, shop, run_jobs):
    creator_with_credit("credit-bo", 10_000)
    sku = shop.card_sku(keys=3, price=1990)
    auth = login("credit-bo")
    order = api_place(client, auth, sku)
    first = client.post(f"/api/v1/orders/{order['id']}/pay-with-credit", headers=auth)
    run_jobs()
    again = client.post(f"/api/v1/orders/{order['id']}/pay-with-credit", headers=auth)
    run_jobs()
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json["status"] == "delivered"
    assert len(client.get("/api/v1/vouchers", headers=auth).json["vouchers"]) == 1
    with db.connection_context():
        assert LedgerTransaction.select().where(LedgerTransaction.kind == "credit_payment").count() == 1


def test_too_little_credit_is_409_and_changes_nothing(client, login, shop):
    # given 10 yuan of credit (and plenty available, which is not credit) and a 19.90 card
    creator = creator_with_credit("credit-cy", 1_000, available=50_000)
    sku = shop.card_sku(keys=2, price=1990)
    auth = login("credit-cy")
    order = api_place(client, auth, sku)
    resp = client.post(f"/api/v1/orders/{order['id']}/pay-with-credit", headers=auth)
    assert resp.status_code == 409 and resp.json["error"]["code"] == "insufficient_credit"
    assert client.get(f"/api/v1/orders/{order['id']}", headers=auth).json["status"] == "pending"
    assert credit_of(creator) == 1_000
    with db.connection_context():
        assert Payment.select().count() == 0


def test_shoppers_who_are_not_creators_have_no_credit(client, login, shop):
    sku = shop.card_sku(keys=2, price=1990)
    auth = login("plain-shopper")
    order = api_place(client, auth, sku)
    resp = client.post(f"/api/v1/orders/{order['id']}/pay-with-credit", headers=auth)
    assert resp.status_code == 409 and resp.json["error"]["code"] == "insufficient_credit"


def test_only_the_buyer_can_pay_their_order_with_their_credit(client, login, shop):
    creator_with_credit("credit-dee", 30_000)
    sku = shop.card_sku(keys=2, price=1990)
    order = api_place(client, login("someone-else"), sku)
    resp = client.post(f"/api/v1/orders/{order['id']}/pay-with-credit", headers=login("credit-dee"))
    assert resp.status_code == 404 and resp.json["error"]["code"] == "order_not_found"
    assert client.post(f"/api/v1/orders/{order['id']}/pay-with-credit").status_code == 401


def test_an_expired_order_cannot_be_paid_with_credit(client, login, shop):
    creator = creator_with_credit("credit-eve", 30_000)
    sku = shop.card_sku(keys=2, price=1990)
    auth = login("credit-eve")
    order = api_place(client, auth, sku)
    with db.connection_context():
        Order.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(
            Order.id == order["id"]).execute()
    resp = client.post(f"/api/v1/orders/{order['id']}/pay-with-credit", headers=auth)
    assert resp.status_code == 409 and resp.json["error"]["code"] == "order_not_payable"
    assert credit_of(creator) == 30_000


def test_credit_after_a_prepared_wechat_payment_wins_and_a_late_wechat_payment_is_flagged(
        client, login, shop, fake_pay, run_jobs):
    # given an order whose WeChat Pay payment was prepared but not completed
    creator_with_credit("credit-fay", 30_000)
    sku = shop.card_sku(keys=2, price=1990)
    auth = login("credit-fay")
    order = api_place(client, auth, sku)
    assert client.post(f"/api/v1/orders/{order['id']}/pay", headers=auth).status_code == 200
    # when it is paid with credit, and WeChat Pay later reports a payment too
    assert client.post(f"/api/v1/orders/{order['id']}/pay-with-credit", headers=auth).status_code == 200
    assert fake_pay.notify_acknowledged(fake_pay.pay(order["no"]))
    run_jobs()
    # then it was paid once, by credit, and the second payment is an event for the operator
    with db.connection_context():
        assert Payment.get(Payment.order == order["id"]).provider == "credit"
        assert "payment.second_transaction" in [e.topic for e in events_for(f"order:{order['id']}")]
        assert LedgerTransaction.select().where(
            LedgerTransaction.key == f"payment:{order['no']}").count() == 0
    assert len(client.get("/api/v1/vouchers", headers=auth).json["vouchers"]) == 1


def test_two_orders_racing_for_the_same_credit(client, login, shop, live_port):
    # given credit for one 19.90 card only, and two orders paid at the same instant
    creator = creator_with_credit("credit-gus", 2_500)
    sku = shop.card_sku(keys=3, price=1990)
    auth = login("credit-gus")
    ids = [api_place(client, auth, sku)["id"] for _ in range(2)]
    start, results = threading.Barrier(2), []

    def pay(order_id: int) -> None:
        with requests.Session() as http:
            http.trust_env = False
            start.wait()
            resp = http.post(f"http://127.0.0.1:{live_port}/api/v1/orders/{order_id}/pay-with-credit",
                             headers=auth, timeout=30)
            results.append((resp.status_code, resp.json().get("error", {}).get("code")))

    threads = [threading.Thread(target=pay, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then one is paid and the other refused; the credit never goes below zero
    assert sorted(results) == [(200, None), (409, "insufficient_credit")]
    assert credit_of(creator) == 2_500 - 1990
    with db.connection_context():
        assert Posting.select().where(Posting.account == ledger.creator_account(
            creator.id, ledger.CREDIT)).count() == 2


def test_refunding_a_credit_paid_order_returns_the_credit_not_cash(client, login, shop, rt,
                                                                    run_jobs, fake_pay):
    # given a delivered order paid with credit
    creator = creator_with_credit("credit-hal", 10_000)
    sku = shop.card_sku(keys=2, price=1990)
    auth = login("credit-hal")
    order = api_place(client, auth, sku)
    assert client.post(f"/api/v1/orders/{order['id']}/pay-with-credit", headers=auth).status_code == 200
    run_jobs()
    refunds_before = len(fake_pay.requests_to("/secapi/pay/refund"))
    # when an operator refunds it
    with db.connection_context():
        refund = payments.refund_order(order["id"], rt.gateway, actor="operator:test",
                                       reason="customer asked")
        # then the credit comes back, WeChat Pay is never asked, and no cash moves
        assert refund.state == "succeeded"
        assert ledger.balance(ledger.CASH_WECHATPAY) == 0 and ledger.balance(ledger.SALES) == 0
        assert ledger.unbalanced_transactions() == []
    assert credit_of(creator) == 10_000
    assert len(fake_pay.requests_to("/secapi/pay/refund")) == refunds_before
    assert client.get(f"/api/v1/orders/{order['id']}", headers=auth).json["status"] == "refunded"


def test_earnings_become_credit_and_buy_goods_end_to_end(client, login, shop, rt, fake_pay, run_jobs):
    # given a creator whose sale was paid through WeChat Pay, delivered, settled and released
    seller = login("credit-seller")
    joined = client.post("/api/v1/creator/join", json={}, headers=seller)
    assert joined.status_code == 200, joined.json
    big = shop.card_sku(keys=2, price=200_000, code="CARD-E2E")
    shopper = login("credit-shopper")
    sale = client.post("/api/v1/orders", json={"sku": big.code, "quantity": 1, "ref": joined.json["code"]},
                       headers=shopper).json
    assert client.post(f"/api/v1/orders/{sale['id']}/pay", headers=shopper).status_code == 200
    assert fake_pay.notify_acknowledged(fake_pay.pay(sale["no"]))
    run_jobs()
    settle(rt)
    release(rt)
    available = client.get("/api/v1/creator/balances", headers=seller).json["available_fen"]
    assert available == 20_000  # 10% of 2000 yuan
    # when they turn 150 yuan into shopping credit and pay for a card with it
    w = client.post("/api/v1/creator/withdrawals", json={"amount_fen": 15_000, "method": "credit"},
                    headers={**seller, "Idempotency-Key": "to-credit-1"})
    assert w.status_code == 201 and (w.json["state"], w.json["fee_fen"]) == ("paid", 0), w.json
    card = shop.card_sku(keys=2, price=4_990, code="CARD-FOR-CREDIT")
    order = api_place(client, seller, card)
    paid = client.post(f"/api/v1/orders/{order['id']}/pay-with-credit", headers=seller)
    assert paid.status_code == 200, paid.json
    run_jobs()
    # then the card is delivered to them and the balances show what is left
    assert client.get(f"/api/v1/orders/{order['id']}", headers=seller).json["status"] == "delivered"
    assert [v["order_id"] for v in client.get("/api/v1/vouchers", headers=seller).json["vouchers"]] == [
        order["id"]]
    balances = client.get("/api/v1/creator/balances", headers=seller).json
    assert (balances["available_fen"], balances["credit_fen"]) == (5_000, 15_000 - 4_990)
    with db.connection_context():
        # cash came in once (the shopper's payment), never for the credit purchase
        assert ledger.balance(ledger.CASH_WECHATPAY) == 200_000
        assert ledger.unbalanced_transactions() == []
