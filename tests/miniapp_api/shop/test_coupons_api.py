"""Coupons through the mini-program API: claim by code (throttled per user and per address),
the wallet, an order with a coupon placed, paid through WeChat Pay's notification and consumed;
every bad coupon is a 4xx in the error shape with nothing written or reserved."""

from __future__ import annotations

import datetime as dt

import pytest

from models.coupons import CouponGrant
from models.db import db, utcnow
from tests.factories import ORDERS, api_pay, buyer, coupon, coupon_state, granted
from tests.miniapp_api.asserts import assert_error, snapshot

CLAIM, WALLET = "/api/v1/coupons/claim", "/api/v1/me/coupons"


def test_a_shopper_claims_a_code_sees_it_in_the_wallet_and_pays_less(client, login, shop, fake_pay):  # noqa: ANN001
    # given 满30减5 claimable by code, and a 19.90 SKU
    sku = shop.card_sku(keys=3, price=1_990, code="API-A")
    coupon(name="满30减5", code="SPRING2026SALE", threshold_fen=3_000, amount_off_fen=500)
    auth = login("ann")
    # when Ann claims it with the code typed loosely
    claimed = client.post(CLAIM, json={"code": "spring-2026 sale"}, headers=auth)
    # then it is in her wallet, usable for the SKU
    assert claimed.status_code == 201, claimed.json
    assert claimed.json["name"] == "满30减5" and claimed.json["usable"] is True
    wallet = client.get(WALLET, query_string={"sku": "API-A"}, headers=auth).json["coupons"]
    assert [c["id"] for c in wallet] == [claimed.json["id"]]
    # when she orders two with it and pays
    order = client.post(ORDERS, json={"sku": "API-A", "quantity": 2, "coupons": [claimed.json["id"]]},
                        headers=auth).json
    assert (order["amount_fen"], order["discount_fen"]) == (3_480, 500)
    api_pay(client, fake_pay, auth, order)
    # then she paid 34.80 and the coupon is used: gone from the wallet
    assert client.get(f"{ORDERS}/{order['id']}", headers=auth).json["status"] in ("paid", "delivered")
    assert client.get(WALLET, headers=auth).json["coupons"] == []
    with db.connection_context():
        assert CouponGrant.get_by_id(claimed.json["id"]).state == "used"
    assert sku.retail_price_fen == 1_990


@pytest.mark.parametrize(("spec", "typed", "status", "code"), [
    ({}, "NOSUCHCODE2026", 404, "coupon_not_found"),
    ({"starts_at": utcnow() - dt.timedelta(days=9), "ends_at": utcnow() - dt.timedelta(days=1)}, None, 409,
     "coupon_expired"),
    ({"max_uses": 1}, None, 409, "coupon_exhausted"),
])
def test_a_bad_code_is_a_4xx_and_writes_nothing(client, login, shop, spec, typed, status, code):  # noqa: ANN001
    # given a coupon (used up, for the exhausted case, by another shopper's order)
    made = coupon(code="SPRING2026SALE", **spec)
    if spec.get("max_uses"):
        shop.card_sku(keys=2, price=2_000, code="API-X")
        other = login("carl")
        grant = client.post(CLAIM, json={"code": "SPRING2026SALE"}, headers=other).json["id"]
        assert client.post(ORDERS, json={"sku": "API-X", "coupons": [grant]}, headers=other).status_code == 201
    auth = login("ann")
    before = coupon_state()
    # when Ann claims it, then the error shape, and nothing written
    assert_error(client.post(CLAIM, json={"code": typed or "SPRING2026SALE"}, headers=auth), status, code)
    assert coupon_state() == before
    assert made.id


@pytest.mark.parametrize("body", [{}, {"code": ""}, {"code": 12345678901}, {"code": "x" * 65},
                                  {"code": "SPRING2026SALE", "extra": 1}])
def test_a_malformed_claim_is_a_400(client, login, body):  # noqa: ANN001
    assert client.post(CLAIM, json=body, headers=login("ann")).status_code == 400


def test_claims_need_a_login(client):  # noqa: ANN001
    assert_error(client.post(CLAIM, json={"code": "SPRING2026SALE"}), 401)
    assert_error(client.get(WALLET), 401)


def test_someone_elses_or_an_out_of_scope_coupon_is_refused_with_nothing_reserved(client, login, shop, rt):  # noqa: ANN001
    # given Bob's coupon, and Ann's coupon for another SKU only
    sku = shop.card_sku(keys=2, price=2_000, code="API-A")
    other = shop.card_sku(keys=1, code="API-B")
    ann, bob = buyer("ann"), buyer("bob")
    auth = login("ann")
    bobs = granted(coupon(), bob)[0]
    scoped = granted(coupon(scope="sku", include_skus=(other.id,)), ann)[0]
    before, coupons_before = snapshot(rt), coupon_state()
    # when Ann orders with either, then 404 / 400 and no order, no stock held, no coupon touched
    assert_error(client.post(ORDERS, json={"sku": sku.code, "coupons": [bobs]}, headers=auth), 404,
                 "coupon_not_found")
    assert_error(client.post(ORDERS, json={"sku": sku.code, "coupons": [scoped]}, headers=auth), 400,
                 "coupon_out_of_scope")
    assert_error(client.post(ORDERS, json={"sku": sku.code, "coupons": [scoped, scoped]}, headers=auth), 400)
    assert snapshot(rt) == before and coupon_state() == coupons_before
    # and the wallet for that SKU says why
    wallet = client.get(WALLET, query_string={"sku": sku.code}, headers=auth).json["coupons"]
    assert [(c["id"], c["usable"], c["reason"]) for c in wallet] == [(scoped, False, "out_of_scope")]
    assert_error(client.get(WALLET, query_string={"sku": "NOPE"}, headers=auth), 404, "unknown_sku")


def test_claims_are_throttled_per_user_and_per_address(client, login, settings, monkeypatch):  # noqa: ANN001
    # given 3 claims per user and 5 per address a window
    monkeypatch.setattr(settings, "COUPON_CLAIM_RATE_PER_USER", 3)
    monkeypatch.setattr(settings, "COUPON_CLAIM_RATE_PER_IP", 5)
    ann, bob = login("ann"), login("bob")
    # when Ann guesses codes 4 times, then the 4th is refused before any lookup
    answers = [client.post(CLAIM, json={"code": f"GUESS{i:09d}"}, headers=ann) for i in range(4)]
    assert [r.status_code for r in answers] == [404, 404, 404, 429]
    assert answers[3].json["error"]["code"] == "rate_limited" and int(answers[3].headers["Retry-After"]) >= 1
    # when Bob guesses from the same address, then the address limit stops him after 1 more
    bobs = [client.post(CLAIM, json={"code": f"GUESS{i:09d}"}, headers=bob).status_code for i in range(2)]
    assert bobs == [404, 429]


def test_a_quote_prices_the_order_with_its_coupons_without_reserving_anything(client, login, shop, rt):  # noqa: ANN001
    # given 满30减5 and 10% off (both stackable) on a 19.90 SKU, held by Ann
    shop.card_sku(keys=3, price=1_990, code="API-Q")
    ann = buyer("ann")
    auth = login("ann")
    off = granted(coupon(threshold_fen=3_000, amount_off_fen=500, stackable=True), ann)[0]
    pct = granted(coupon(kind="percent_off", amount_off_fen=0, percent_bp=1_000, stackable=True), ann)[0]
    before, coupons_before = snapshot(rt), coupon_state()
    # when she asks what two would cost with both
    got = client.get("/api/v1/coupons/quote", query_string={"sku": "API-Q", "quantity": 2, "coupons": f"{pct},{off}"},
                     headers=auth)
    # then 39.80 - 5 = 34.80, then 10% of that: 3.48 -> 31.32; nothing was written or reserved
    assert got.status_code == 200, got.json
    assert got.json == {"unit_price_fen": 1_990, "amount_before_fen": 3_980, "discount_fen": 848,
                        "amount_fen": 3_132, "parts": [348, 500]}
    assert snapshot(rt) == before and coupon_state() == coupons_before
    # and one unit does not reach the threshold: the same refusal as placing the order
    assert_error(client.get("/api/v1/coupons/quote", query_string={"sku": "API-Q", "coupons": str(off)},
                            headers=auth), 400, "coupon_not_applicable")
    assert_error(client.get("/api/v1/coupons/quote", query_string={"sku": "API-Q", "coupons": f"{off},{off}"},
                            headers=auth), 400, "invalid_coupons")
    assert_error(client.get("/api/v1/coupons/quote", query_string={"sku": "NOPE"}, headers=auth), 404)
    assert client.get("/api/v1/coupons/quote", query_string={"sku": "API-Q", "coupons": "1;2"},
                      headers=auth).status_code == 400
