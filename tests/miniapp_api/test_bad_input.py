"""Bad requests to the mini-program API: each gets a 4xx with the JSON error shape
{"error": {"code": ..., "message": ...}} and nothing is written."""

from __future__ import annotations

import json
import time

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from models.catalog import Kind, Sku
from models.db import db
from tests.miniapp_api.asserts import assert_error, snapshot

ORDERS = "/api/v1/orders"


@pytest.fixture
def buyer_auth(login):  # noqa: ANN001, ANN201
    return login("alice")


@pytest.fixture
def card(shop):  # noqa: ANN001, ANN201
    return shop.card_sku(keys=5, code="CARD-A")


@pytest.fixture
def before(rt, card, buyer_auth):  # noqa: ANN001, ANN201
    """The state after set-up (SKU imported, buyer logged in), before the bad request."""
    return snapshot(rt)


def test_a_good_order_does_write(client, rt, card, buyer_auth, before):
    # given the same set-up the bad requests use
    # when a well-formed order is placed
    resp = client.post(ORDERS, json={"sku": card.code, "quantity": 2}, headers=buyer_auth)
    # then it is created, so "nothing written" below is a meaningful check
    assert resp.status_code == 201, resp.json
    after = snapshot(rt)
    assert after["Order"] == before["Order"] + 1 and after["card_keys"]["reserved"] == 2


# -- the request body -------------------------------------------------------------------------

RAW_BODIES = {
    "malformed JSON": ('{"sku": "CARD-A", "quantity": 1', "application/json"),
    "trailing garbage": ('{"sku": "CARD-A"} xyz', "application/json"),
    "empty body": ("", "application/json"),
    "JSON list": ('[{"sku": "CARD-A"}]', "application/json"),
    "JSON string": ('"CARD-A"', "application/json"),
    "JSON string holding an object": (json.dumps(json.dumps({"sku": "CARD-A"})), "application/json"),
    "JSON number": ("1", "application/json"),
    "JSON null": ("null", "application/json"),
    "NaN literal": ('{"sku": "CARD-A", "quantity": NaN}', "application/json"),
    "not UTF-8": (b'{"sku": "\xff\xfe"}', "application/json"),
    "deeply nested": ("[" * 5000 + "]" * 5000, "application/json"),
    "nested just under the parser's limit": ('{"sku": "CARD-A", "x": ' + "[" * 900 + "]" * 900 + "}",
                                            "application/json"),
    "NUL in a string": ('{"sku": "CARD\\u0000A"}', "application/json"),
    "NUL in a key": ('{"sku": "CARD-A", "\\u0000": 1}', "application/json"),
    "form encoded": ("sku=CARD-A&quantity=1", "application/x-www-form-urlencoded"),
    "JSON as text/plain": ('{"sku": "CARD-A"}', "text/plain"),
}


@pytest.mark.parametrize("raw, content_type", RAW_BODIES.values(), ids=RAW_BODIES.keys())
def test_unparseable_or_non_object_body_is_400(client, rt, buyer_auth, before, raw, content_type):
    # when the order body is not one JSON object
    resp = client.post(ORDERS, data=raw, content_type=content_type, headers=buyer_auth)
    # then 400 with the error shape, and nothing is written
    assert_error(resp, 400)
    assert snapshot(rt) == before


WRONG_FIELDS = {
    "quantity as string": ({"sku": "CARD-A", "quantity": "2"}, "quantity"),
    "quantity as float": ({"sku": "CARD-A", "quantity": 2.5}, "quantity"),
    "quantity as bool": ({"sku": "CARD-A", "quantity": True}, "quantity"),
    "quantity null": ({"sku": "CARD-A", "quantity": None}, "quantity"),
    "quantity list": ({"sku": "CARD-A", "quantity": [1]}, "quantity"),
    "sku as number": ({"sku": 123}, "sku"),
    "sku null": ({"sku": None}, "sku"),
    "sku object": ({"sku": {"code": "CARD-A"}}, "sku"),
    "sku empty": ({"sku": ""}, "sku"),
    "sku too long": ({"sku": "X" * 65}, "sku"),
    "missing sku": ({"quantity": 1}, "sku"),
    "empty object": ({}, "sku"),
    "quantity 0": ({"sku": "CARD-A", "quantity": 0}, "quantity"),
    "quantity -1": ({"sku": "CARD-A", "quantity": -1}, "quantity"),
    "quantity 10**9": ({"sku": "CARD-A", "quantity": 10**9}, "quantity"),
    "quantity 10**30": ({"sku": "CARD-A", "quantity": 10**30}, "quantity"),
    "quantity -10**30": ({"sku": "CARD-A", "quantity": -(10**30)}, "quantity"),
    "unknown field": ({"sku": "CARD-A", "price_fen": 1}, "price_fen"),
    "unknown field user_id": ({"sku": "CARD-A", "user_id": 2}, "user_id"),
    "ref with space": ({"sku": "CARD-A", "ref": "star 42"}, "ref"),
    "ref with markup": ({"sku": "CARD-A", "ref": "<script>"}, "ref"),
    "ref non-ASCII": ({"sku": "CARD-A", "ref": "星星"}, "ref"),
    "ref too long": ({"sku": "CARD-A", "ref": "a" * 33}, "ref"),
    "ref empty": ({"sku": "CARD-A", "ref": ""}, "ref"),
    "ref as number": ({"sku": "CARD-A", "ref": 42}, "ref"),
    "account too long": ({"sku": "CARD-A", "account": "a" * 65}, "account"),
}


@pytest.mark.parametrize("body, field", WRONG_FIELDS.values(), ids=WRONG_FIELDS.keys())
def test_wrong_types_and_out_of_range_fields_are_400(client, rt, buyer_auth, before, body, field):
    # when a field has the wrong type, is missing, unknown or out of range
    resp = client.post(ORDERS, json=body, headers=buyer_auth)
    # then 400 invalid_request naming the field, and nothing is written
    error = assert_error(resp, 400, "invalid_request")
    assert field in error["message"]
    assert snapshot(rt) == before


def test_quantity_above_max_quantity_is_400(client, rt, settings, buyer_auth, before):
    # given MAX_QUANTITY (the schema allows up to 1000; the policy is tighter)
    too_many = settings.MAX_QUANTITY + 1
    # when one more than allowed is ordered
    resp = client.post(ORDERS, json={"sku": "CARD-A", "quantity": too_many}, headers=buyer_auth)
    # then 400 invalid_quantity and nothing is written
    error = assert_error(resp, 400, "invalid_quantity")
    assert str(settings.MAX_QUANTITY) in error["message"]
    assert snapshot(rt) == before


@pytest.mark.parametrize("code", ["NOPE", "card-a", "CARD-A ", "' OR 1=1 --", "卡", "%", "_"])
def test_unknown_sku_is_404(client, rt, buyer_auth, before, code):
    # when the SKU code does not exist (case, whitespace and injection attempts included)
    resp = client.post(ORDERS, json={"sku": code}, headers=buyer_auth)
    # then 404 unknown_sku and nothing is written
    assert_error(resp, 404, "unknown_sku")
    assert snapshot(rt) == before


def test_inactive_sku_is_404(client, rt, card, buyer_auth, before):
    # given a SKU taken off the shelf
    with db.connection_context():
        Sku.update(active=False).where(Sku.id == card.id).execute()
    before = snapshot(rt)
    # when it is ordered
    resp = client.post(ORDERS, json={"sku": card.code}, headers=buyer_auth)
    # then 404 unknown_sku
    assert_error(resp, 404, "unknown_sku")
    assert snapshot(rt) == before


def test_oversized_body_is_413_json(client, rt, settings, buyer_auth, before):
    # when the body is larger than MAX_BODY_BYTES
    body = json.dumps({"sku": "CARD-A", "ref": "x" * (settings.MAX_BODY_BYTES + 1)})
    resp = client.post(ORDERS, data=body, content_type="application/json", headers=buyer_auth)
    # then 413 with the JSON error shape and nothing is written
    assert_error(resp, 413)
    assert snapshot(rt) == before


def test_oversized_login_body_is_413_json(client, rt, settings, before):
    # the limit holds before authentication too
    body = json.dumps({"code": "c" * (settings.MAX_BODY_BYTES * 4)})
    resp = client.post("/api/v1/auth/login", data=body, content_type="application/json")
    assert_error(resp, 413)
    assert snapshot(rt) == before


# -- headers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["short", "", "has space 123", "semi;colon123", "星星星星星星星星", "k" * 129])
def test_bad_idempotency_key_is_400(client, rt, buyer_auth, before, key):
    # when the Idempotency-Key is too short, too long or has characters outside [A-Za-z0-9_.:-]
    resp = client.post(ORDERS, json={"sku": "CARD-A"},
                       headers={**buyer_auth, "Idempotency-Key": key})
    # then 400 and nothing is written
    error = assert_error(resp, 400, "invalid_request")
    assert "Idempotency-Key" in error["message"]
    assert snapshot(rt) == before


def _expired_token(app, user_id: int) -> str:  # noqa: ANN001
    """A correctly signed token whose timestamp is older than SESSION_TTL_SECONDS."""
    issued = int(time.time()) - app.config["SESSION_TTL_SECONDS"] - 3600

    class IssuedLongAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return issued

    serializer = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="miniapp-session",
                                        signer=IssuedLongAgo)
    return serializer.dumps({"uid": user_id})


def _forged_token(user_id: int) -> str:
    return URLSafeTimedSerializer("not-our-secret", salt="miniapp-session").dumps({"uid": user_id})


BAD_AUTH = {
    "missing": None,
    "empty": "",
    "bearer without token": "Bearer",
    "bearer blank": "Bearer   ",
    "basic scheme": "Basic YWxpY2U6cHc=",
    "garbage token": "Bearer not-a-token",
    "forged (other secret)": "forged",
    "expired": "expired",
    "unknown user": "ghost",
    "non-dict payload": "list",
}


@pytest.mark.parametrize("kind", BAD_AUTH.keys())
@pytest.mark.parametrize("method, path, body", [
    ("post", ORDERS, {"sku": "CARD-A"}),
    ("get", ORDERS, None),
    ("get", ORDERS + "/1", None),
    ("post", ORDERS + "/1/pay", None),
    ("get", "/api/v1/vouchers", None),
    ("get", "/api/v1/vouchers/1", None),
], ids=["create", "list", "get", "pay", "vouchers", "reveal"])
def test_bad_bearer_token_is_401(app, client, rt, buyer_auth, before, kind, method, path, body):
    # given an Authorization header that does not identify a live session
    serializer = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="miniapp-session")
    header = {
        "forged": lambda: "Bearer " + _forged_token(1),
        "expired": lambda: "Bearer " + _expired_token(app, 1),
        "ghost": lambda: "Bearer " + serializer.dumps({"uid": 999_999}),
        "list": lambda: "Bearer " + serializer.dumps([1]),
    }.get(BAD_AUTH[kind], lambda: BAD_AUTH[kind])()
    headers = {} if header is None else {"Authorization": header}
    # when a protected route is called
    resp = getattr(client, method)(path, json=body, headers=headers)
    # then 401 unauthorized and nothing is written
    assert_error(resp, 401, "unauthorized")
    assert snapshot(rt) == before


def test_expired_token_says_so(app, client, rt, buyer_auth):
    resp = client.get(ORDERS, headers={"Authorization": "Bearer " + _expired_token(app, 1)})
    assert "expired" in assert_error(resp, 401, "unauthorized")["message"]


# -- ids in the path and query ---------------------------------------------------------------

def test_someone_elses_order_is_404(client, rt, login, card, buyer_auth):
    # given Alice's order
    order = client.post(ORDERS, json={"sku": card.code}, headers=buyer_auth).json
    before = snapshot(rt)
    mallory = login("mallory")
    # when Mallory reads it or asks to pay it
    got = client.get(f"{ORDERS}/{order['id']}", headers=mallory)
    pay = client.post(f"{ORDERS}/{order['id']}/pay", headers=mallory)
    listed = client.get(ORDERS, headers=mallory)
    # then 404 order_not_found (not 403: its existence is not revealed), nothing is written
    assert_error(got, 404, "order_not_found")
    assert_error(pay, 404, "order_not_found")
    assert listed.status_code == 200 and listed.json["orders"] == []
    assert snapshot(rt) == before


@pytest.mark.parametrize("method, template", [
    ("get", ORDERS + "/{}"),
    ("post", ORDERS + "/{}/pay"),
    ("post", ORDERS + "/{}/sandbox-pay"),
    ("get", "/api/v1/vouchers/{}"),
    ("get", "/api/v1/products/{}"),
])
@pytest.mark.parametrize("value, status", [
    ("0", 400), (str(2**62 + 1), 400), ("9" * 40, 400), ("123456789", 404),
    ("-1", 404), ("abc", 404), ("1.5", 404), ("%00", 404),
])
def test_bad_path_ids_are_4xx(client, rt, buyer_auth, before, method, template, value, status):
    # when an id in the path is zero, huge, negative, not a number or just absent
    resp = getattr(client, method)(template.format(value), headers=buyer_auth)
    # then a JSON 4xx (400 from validation, 404 for no such route or row), nothing is written
    if status == 404 and value == "123456789" and "sandbox-pay" in template:
        status = 403  # the sandbox switch is checked before the order is looked up
    assert_error(resp, status)
    assert snapshot(rt) == before


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "limit=-1",
                                   "before_id=0", "before_id=-5", f"before_id={2**70}", "limit=1e3"])
def test_bad_list_query_is_400(client, rt, buyer_auth, before, query):
    resp = client.get(f"{ORDERS}?{query}", headers=buyer_auth)
    assert_error(resp, 400, "invalid_request")
    assert snapshot(rt) == before


# -- top-up and card-key specifics -----------------------------------------------------------

@pytest.mark.parametrize("extra, code", [
    ({}, "invalid_account"),
    ({"account": None}, "invalid_account"),
    ({"account": "ab"}, "invalid_account"),
    ({"account": "has space"}, "invalid_account"),
    ({"account": "手机号码"}, "invalid_account"),
    ({"account": "13800138000", "quantity": 2}, "invalid_quantity"),
])
def test_topup_without_a_valid_account_is_400(client, rt, shop, buyer_auth, extra, code):
    # given a top-up SKU with stock
    topup = shop.counter_sku(Kind.TOPUP, stock=5, code="TOPUP-30")
    before = snapshot(rt)
    # when it is ordered without an account, with a malformed one, or more than one at a time
    resp = client.post(ORDERS, json={"sku": topup.code, **extra}, headers=buyer_auth)
    # then 400 and nothing is written (the stock is untouched)
    assert_error(resp, 400, code)
    assert snapshot(rt) == before


@pytest.mark.parametrize("kind", [Kind.CARD_KEY, Kind.SERIAL])
def test_account_on_a_non_topup_sku_is_400(client, rt, shop, buyer_auth, kind):
    # given a card-key or serial SKU
    sku = shop.card_sku(keys=2) if kind == Kind.CARD_KEY else shop.counter_sku(Kind.SERIAL)
    before = snapshot(rt)
    # when an account is sent with it
    resp = client.post(ORDERS, json={"sku": sku.code, "account": "13800138000"}, headers=buyer_auth)
    # then 400 invalid_account and nothing is written
    assert_error(resp, 400, "invalid_account")
    assert snapshot(rt) == before


# -- other routes -----------------------------------------------------------------------------

@pytest.mark.parametrize("body", [{}, {"code": ""}, {"code": 123}, {"code": "x" * 129},
                                  {"code": "ok", "openid": "root"}, [], "code"])
def test_bad_login_body_is_400(client, rt, before, body):
    resp = client.post("/api/v1/auth/login", json=body)
    assert_error(resp, 400)
    assert snapshot(rt) == before


def test_rejected_login_code_is_401(client, rt, before):
    # when WeChat does not know the code
    resp = client.post("/api/v1/auth/login", json={"code": "never-issued"})
    # then 401 login_failed and no user or anything else is written
    assert_error(resp, 401, "login_failed")
    assert snapshot(rt) == before


def test_unknown_route_and_wrong_method_are_json(client, rt, buyer_auth, before):
    assert_error(client.get("/api/v1/nope", headers=buyer_auth), 404, "not_found")
    assert_error(client.delete(ORDERS, headers=buyer_auth), 405)
    assert_error(client.put(ORDERS + "/1", json={}, headers=buyer_auth), 405)
    assert snapshot(rt) == before
