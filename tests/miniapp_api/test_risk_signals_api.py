"""Risk signals at the API's edges: an order's IP and X-Device-Id (both order branches), the payer
from WeChat Pay's real notification, the phone authorization through the fake WeChat server,
and a signal that cannot be stored never failing the order."""

from __future__ import annotations

import logging

import pytest

from models import risk_signals
from models.db import db, execute
from models.orders import Order
from models.risk_tables import RiskSignal, RiskUser
from tests.factories import ORDERS, api_pay, laddered, signal_rows

PHONE = "/api/v1/me/phone"


def place(client, auth, sku, *, ip: str = "203.0.113.5", device: str | None = None, key: str | None = None,  # noqa: ANN001
          **extra):  # noqa: ANN003, ANN201
    headers = {**auth, **({"X-Device-Id": device} if device is not None else {}),
               **({"Idempotency-Key": key} if key is not None else {})}
    return client.post(ORDERS, json={"sku": sku.code, "quantity": 1, **extra}, headers=headers,
                       environ_base={"REMOTE_ADDR": ip})


def test_an_order_records_its_ip_and_device_as_hashes(client, login, shop, settings):
    # given a shopper whose mini-program sends a device id, and one whose does not
    sku = shop.card_sku(keys=5)
    ann, bob = login("ann"), login("bob")
    # when each places an order (ann twice with one Idempotency-Key: a replay)
    first = place(client, ann, sku, ip="203.0.113.5", device=" phone-ann-1 ", key="order-k-1")
    replay = place(client, ann, sku, ip="203.0.113.5", device="phone-ann-1", key="order-k-1")
    second = place(client, bob, sku, ip="203.0.113.77")
    # then each order has one 'order' row with its buyer, hashed IP, /24 and device hash
    assert (first.status_code, replay.status_code, second.status_code) == (201, 200, 201)
    key = settings.RISK_HMAC_KEY
    rows = {r.order_id: r for r in signal_rows()}
    assert set(rows) == {first.json["id"], second.json["id"]}
    a, b = rows[first.json["id"]], rows[second.json["id"]]
    with db.connection_context():
        orders = {o.id: o for o in Order.select()}
    assert (a.event, a.user_id, a.at) == ("order", orders[a.order_id].user_id, orders[a.order_id].created_at)
    assert (a.ip_hash, a.ip_net) == risk_signals.ip_parts(key, "203.0.113.5")
    assert a.device_hash == risk_signals.hmac_hex(key, "phone-ann-1")
    assert b.ip_net == "203.0.113" and b.ip_hash != a.ip_hash and b.device_hash is None
    # and no raw address or device id is in the row
    stored = " ".join(str(v) for r in rows.values() for v in r.__data__.values())
    assert "203.0.113.5" not in stored and "phone-ann" not in stored


def test_a_live_order_records_its_signal_too(client, login, shop, settings):
    # given a product pinned with a live price ladder in a session on air
    sku = shop.card_sku(keys=5, price=2990)
    session, _pin = laddered(sku)
    # when a viewer orders in the live room
    resp = place(client, login("viewer"), sku, ip="198.51.100.9", device="dev-live", live=session.id)
    # then the live order (tier price) has its signal row
    assert resp.status_code == 201, resp.json
    assert resp.json["amount_fen"] == 990
    row, = signal_rows(order_id=resp.json["id"])
    assert (row.event, row.ip_net) == ("order", "198.51.100")
    assert row.device_hash == risk_signals.device_hash(settings.RISK_HMAC_KEY, "dev-live")


def test_the_payment_notification_fills_the_payer(client, login, shop, fake_pay, settings):
    # given an order placed through the API
    sku = shop.card_sku(keys=5)
    auth = login("payer-ann")
    order = place(client, auth, sku, device="dev-9").json
    # when it is paid: /pay, then WeChat Pay's signed notification over HTTP to the notify endpoint
    api_pay(client, fake_pay, auth, order)
    # then the order's row carries the hash of the payer openid, its edge facts untouched
    row, = signal_rows(order_id=order["id"])
    key = settings.RISK_HMAC_KEY
    assert row.payer_hash == risk_signals.hmac_hex(key, "payer-ann")
    assert row.device_hash == risk_signals.device_hash(key, "dev-9") and row.event == "order"


def test_an_order_stands_when_its_signal_cannot_be_stored(client, login, shop, caplog):
    # given the signal table gone (a real fault: renamed away for this request)
    sku = shop.card_sku(keys=5)
    auth = login("ann")
    with db.connection_context():
        execute("ALTER TABLE risk_signal RENAME TO risk_signal_away")
    try:
        # when an order is placed
        with caplog.at_level(logging.WARNING):
            resp = place(client, auth, sku, ip="203.0.113.5", device="dev-secret-1")
    finally:
        with db.connection_context():
            execute("ALTER TABLE risk_signal_away RENAME TO risk_signal")
    # then the order is created, and the log says what was lost without the address or device
    assert resp.status_code == 201, resp.json
    assert signal_rows() == []
    assert "risk signal: order not recorded" in caplog.text
    assert "203.0.113.5" not in caplog.text and "dev-secret-1" not in caplog.text
    # and the next order records again
    assert place(client, auth, sku).status_code == 201 and len(signal_rows()) == 1


def test_nothing_is_collected_while_the_engine_is_off(client, login, shop, rt, monkeypatch):
    # given RISK_ENABLED off
    monkeypatch.setattr(rt.settings, "RISK_ENABLED", False)
    sku = shop.card_sku(keys=5)
    # when an order is placed and a phone offered
    assert place(client, login("ann"), sku, device="dev-1").status_code == 201
    resp = client.post(PHONE, json={"code": "never-asked"}, headers=login("bob"))
    # then no signal row, no phone, and the phone answer says not bound
    assert resp.status_code == 200 and resp.json == {"bound": False, "phone_segment": None}
    assert signal_rows() == []


# -- the phone ----------------------------------------------------------------------------------

def test_a_phone_authorization_keeps_only_hash_and_segment(client, login, fake_wechat, settings, caplog):
    # given a getPhoneNumber code that WeChat maps to a number
    auth = login("ann")
    fake_wechat.register_phone_code("phone-code-1", "13912345678")
    # when the mini-program posts it (from a device)
    with caplog.at_level(logging.DEBUG):
        resp = client.post(PHONE, json={"code": "phone-code-1"}, headers={**auth, "X-Device-Id": "dev-p"},
                           environ_base={"REMOTE_ADDR": "203.0.113.20"})
    # then the answer names the segment only, the account has the number's hash and segment,
    assert resp.status_code == 200, resp.json
    assert resp.json == {"bound": True, "phone_segment": "139"}
    with db.connection_context():
        row = RiskUser.get()
        signal = RiskSignal.get()
    assert (row.phone_hash, row.phone_seg) == risk_signals.phone_parts(settings.RISK_HMAC_KEY, "13912345678")
    # and a 'phone' signal row with the request's edge facts
    assert (signal.event, signal.user_id, signal.ip_net) == ("phone", row.user_id, "203.0.113")
    # and the number is nowhere: not in the reply, the rows or the logs
    stored = " ".join(str(v) for v in (*row.__data__.values(), *signal.__data__.values()))
    for text in (resp.get_data(as_text=True), stored, caplog.text):
        assert "12345678" not in text


@pytest.mark.parametrize(("setup", "status", "code"), [
    (None, 400, "invalid_phone_code"),  # a code WeChat never issued (40029)
    (("13912345678", "1"), 400, "invalid_phone"),  # a number of another country
])
def test_a_phone_wechat_refuses_or_we_cannot_use_is_an_error(client, login, fake_wechat, setup, status, code):
    # given a code WeChat does not know, or one for a foreign number
    if setup is not None:
        fake_wechat.register_phone_code("phone-code-x", *setup)
    # when it is posted
    resp = client.post(PHONE, json={"code": "phone-code-x"}, headers=login("ann"))
    # then a JSON error names why, and nothing is kept
    assert (resp.status_code, resp.json["error"]["code"]) == (status, code)
    with db.connection_context():
        assert RiskUser.select().count() == 0


def test_a_phone_code_works_once_and_needs_a_session(client, login, fake_wechat):
    # given a code that was used once
    auth = login("ann")
    fake_wechat.register_phone_code("once", "13800138000")
    assert client.post(PHONE, json={"code": "once"}, headers=auth).status_code == 200
    # then using it again is refused, and without a session nothing is asked
    again = client.post(PHONE, json={"code": "once"}, headers=auth)
    assert (again.status_code, again.json["error"]["code"]) == (400, "invalid_phone_code")
    assert client.post(PHONE, json={"code": "once"}).status_code == 401
    assert client.post(PHONE, json={"code": ""}, headers=auth).status_code == 400


def test_phone_authorizations_are_throttled_per_shopper(client, login, fake_wechat, rt, monkeypatch):
    # given a limit of 2 an hour
    monkeypatch.setattr(rt.settings, "RISK_PHONE_RATE_PER_USER", 2)
    auth = login("ann")
    # when a shopper posts 3 codes
    codes = [client.post(PHONE, json={"code": f"unknown-{i}"}, headers=auth).status_code for i in range(3)]
    # then the third is refused before WeChat is asked, with Retry-After
    assert codes == [400, 400, 429]
    assert client.post(PHONE, json={"code": "x"}, headers=login("bob")).status_code == 400
