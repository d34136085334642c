"""The WeChat Pay v2 notify webhook over HTTP: signed XML in, SUCCESS/FAIL XML out. A bad,
replayed or mismatched notification writes nothing; duplicates deliver exactly once."""

from __future__ import annotations

import pytest

from models.db import db
from models.delivery import Voucher
from models.events import Event
from models.ledger import LedgerTransaction, unbalanced_transactions
from models.orders import Order
from models.payments import Payment
from tests.concurrently import at_once
from tests.fakes.wechat_pay import parse_xml, to_signed_xml
from tests.miniapp_api.asserts import snapshot

NOTIFY = "/webhooks/wechatpay/notify"


@pytest.fixture
def placed(client, login, shop, fake_pay):  # noqa: ANN001, ANN201
    """A pending order for two card keys, known to WeChat Pay (unified order done)."""
    sku = shop.card_sku(keys=5, price=1990)
    auth = login("alice")
    order = client.post("/api/v1/orders", json={"sku": sku.code, "quantity": 2}, headers=auth).json
    assert client.post(f"/api/v1/orders/{order['id']}/pay", headers=auth).status_code == 200
    fake_pay.mark_paid(order["no"])
    return {**order, "auth": auth}


def notify(client, xml: bytes | str):  # noqa: ANN001, ANN201
    return client.post(NOTIFY, data=xml, content_type="application/xml")


def answer(resp) -> dict[str, str]:  # noqa: ANN001
    """WeChat Pay reads only the XML answer: return_code SUCCESS stops its retries."""
    assert resp.mimetype in ("application/xml", "text/xml"), resp.get_data(as_text=True)
    return parse_xml(resp.get_data())


def assert_fail(resp, status: int = 400, msg: str | None = None) -> None:  # noqa: ANN001
    body = answer(resp)
    assert resp.status_code == status and body["return_code"] == "FAIL", body
    assert body.get("return_msg")
    if msg is not None:
        assert msg in body["return_msg"], body


def resigned(xml: bytes, api_key: str, **changes: object) -> bytes:
    """The notification with fields changed (None removes one) and a valid signature."""
    fields: dict[str, object] = dict(parse_xml(xml))
    fields.pop("sign", None)
    fields.update(changes)
    return to_signed_xml({k: v for k, v in fields.items() if v is not None}, api_key).encode()


def order_row(order_id: int) -> Order:
    with db.connection_context():
        return Order.get_by_id(order_id)


def counts(order_id: int) -> dict[str, int]:
    with db.connection_context():
        return {
            "payments": Payment.select().where(Payment.order == order_id,
                                               Payment.state == "paid").count(),
            "ledger": LedgerTransaction.select().where(LedgerTransaction.order_id == order_id).count(),
            "vouchers": Voucher.select().where(Voucher.order == order_id).count(),
            "paid_events": Event.select().where(Event.subject == f"order:{order_id}",
                                                Event.topic == "order.paid").count(),
        }


# -- the happy path ---------------------------------------------------------------------------

def assert_delivered_once(placed: dict) -> None:
    """Exactly one payment, ledger entry, paid event and set of vouchers, and a balanced ledger."""
    assert order_row(placed["id"]).status == "delivered"
    assert counts(placed["id"]) == {"payments": 1, "ledger": 1, "vouchers": 2, "paid_events": 1}
    with db.connection_context():
        assert unbalanced_transactions() == []


def test_valid_notification_pays_and_delivers(client, rt, placed, fake_pay, run_jobs):
    # when WeChat Pay posts the signed notification
    resp = notify(client, fake_pay.build_notify_xml(placed["no"]))
    # then the answer is SUCCESS, the order is paid, and the worker delivers it
    assert resp.status_code == 200 and answer(resp)["return_code"] == "SUCCESS"
    assert order_row(placed["id"]).status == "paid"
    run_jobs()
    assert_delivered_once(placed)


def test_valid_notification_over_the_live_server(client, rt, placed, fake_pay, run_jobs):
    # when the fake WeChat Pay posts to the notify_url the order was created with (real HTTP)
    resp = fake_pay.send_notify(placed["no"])
    # then it is acknowledged and delivery follows
    assert resp.status_code == 200 and fake_pay.notify_acknowledged(resp)
    run_jobs()
    assert client.get(f"/api/v1/orders/{placed['id']}", headers=placed["auth"]).json["status"] == "delivered"


# -- rejected notifications: FAIL, nothing written ---------------------------------------------

def _rejected(client, rt, placed, xml: bytes, msg: str | None = None, status: int = 400) -> None:  # noqa: ANN001
    before = snapshot(rt)
    resp = notify(client, xml)
    assert_fail(resp, status, msg)
    assert snapshot(rt) == before
    assert order_row(placed["id"]).status == "pending"


def test_bad_signature_is_fail(client, rt, placed, fake_pay):
    _rejected(client, rt, placed, fake_pay.build_notify_xml(placed["no"], tamper_sign=True),
              "signature")


def test_unsigned_is_fail(client, rt, placed, fake_pay):
    _rejected(client, rt, placed, fake_pay.build_notify_xml(placed["no"], sign=False), "signature")


def test_signed_with_another_key_is_fail(client, rt, placed, fake_pay):
    xml = resigned(fake_pay.build_notify_xml(placed["no"]), "another-merchant-key-000000000001")
    _rejected(client, rt, placed, xml, "signature")


def test_field_changed_after_signing_is_fail(client, rt, placed, fake_pay):
    # given a genuine notification whose amount is edited in transit (signature kept)
    xml = fake_pay.build_notify_xml(placed["no"])
    tampered = xml.replace(f"<total_fee>{placed['amount_fen']}</total_fee>".encode(),
                           b"<total_fee>1</total_fee>")
    assert tampered != xml
    _rejected(client, rt, placed, tampered, "signature")


def test_wrong_amount_is_fail_amount_mismatch(client, rt, placed, fake_pay):
    # given a correctly signed notification for 1 fen less than the order
    xml = fake_pay.build_notify_xml(placed["no"], total_fee=placed["amount_fen"] - 1)
    # then FAIL amount_mismatch, the order stays pending, nothing is written
    _rejected(client, rt, placed, xml, "amount_mismatch")


@pytest.mark.parametrize("fee", [0, -3980, 1, 10**12])
def test_other_wrong_amounts_are_fail(client, rt, placed, fake_pay, fee):
    _rejected(client, rt, placed, fake_pay.build_notify_xml(placed["no"], total_fee=fee),
              "amount_mismatch")


@pytest.mark.parametrize("fee", ["abc", "39.80", ""])
def test_non_integer_amount_is_fail(client, rt, placed, fake_pay, fee):
    # a signed notification whose total_fee is not a whole number (or missing) is refused
    _rejected(client, rt, placed, fake_pay.build_notify_xml(placed["no"], total_fee=fee))


def test_non_integer_cash_fee_is_fail(client, rt, placed, fake_pay):
    _rejected(client, rt, placed, fake_pay.build_notify_xml(placed["no"], cash_fee="1.5"))


@pytest.mark.parametrize("field, value", [
    ("mch_id", "1900000999"), ("appid", "wxotherappid000001"), ("mch_id", None), ("appid", None),
])
def test_wrong_merchant_or_app_is_fail(client, rt, placed, fake_pay, field, value):
    xml = fake_pay.build_notify_xml(placed["no"], **{field: value})
    _rejected(client, rt, placed, xml, "mismatch")


@pytest.mark.parametrize("out_trade_no", ["QX20990101DEADBEEFDEADBEEF", "Q" * 300, "' OR 1=1 --"])
def test_unknown_out_trade_no_is_fail(client, rt, placed, fake_pay, out_trade_no):
    xml = resigned(fake_pay.build_notify_xml(placed["no"]), fake_pay.api_key, out_trade_no=out_trade_no)
    _rejected(client, rt, placed, xml, "unknown_order")


@pytest.mark.parametrize("field", ["out_trade_no", "transaction_id", "total_fee"])
def test_missing_field_is_fail(client, rt, placed, fake_pay, field):
    xml = resigned(fake_pay.build_notify_xml(placed["no"]), fake_pay.api_key, **{field: None})
    _rejected(client, rt, placed, xml, "missing")


def test_overlong_transaction_id_is_fail(client, rt, placed, fake_pay):
    _rejected(client, rt, placed, fake_pay.build_notify_xml(placed["no"], transaction_id="4" * 65))


GARBAGE = {
    "empty": b"",
    "whitespace": b"   \n",
    "not XML": b"this is not xml",
    "JSON": b'{"return_code": "SUCCESS"}',
    "truncated": b"<xml><return_code>SUCCESS</return_code>",
    "text root": b"<xml>hello</xml>",
    "empty root": b"<xml/>",
    "other root": b"<notify><return_code>SUCCESS</return_code></notify>",
    "nested": b"<xml><a><b>1</b></a></xml>",
    "repeated sign": b"<xml><sign>A</sign><sign>B</sign></xml>",
    "entity": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "SUCCESS">]>'
              b"<xml><return_code>&a;</return_code></xml>",
    "billion laughs": b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
                      b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
                      b"<xml><x>&c;</x></xml>",
    "external entity": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                       b"<xml><x>&e;</x></xml>",
    "unknown encoding": b'<?xml version="1.0" encoding="x-nope"?><xml><a>1</a></xml>',
    "invalid UTF-8": b"<xml><a>\xff\xfe</a></xml>",
}


@pytest.mark.parametrize("body", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_body_is_400_fail(client, rt, placed, body):
    # when the body is not a signed WeChat Pay <xml> document
    # then 400 with a FAIL answer (never a 500, never JSON) and nothing is written
    _rejected(client, rt, placed, body)


def test_oversized_body_is_fail(client, rt, placed, settings, fake_pay):
    xml = fake_pay.build_notify_xml(placed["no"], attach="x" * (settings.MAX_BODY_BYTES + 1))
    _rejected(client, rt, placed, xml, status=413)


# -- failed payments and replays --------------------------------------------------------------

def test_result_code_fail_is_acknowledged_and_changes_nothing(client, rt, placed, fake_pay):
    # given WeChat Pay reports that the payment failed
    xml = fake_pay.build_notify_xml(placed["no"], result_code="FAIL", err_code="NOTENOUGH",
                                    err_code_des="余额不足")
    before = snapshot(rt)
    # when it is posted
    resp = notify(client, xml)
    # then the answer is SUCCESS (stop retrying) and the order stays pending, nothing written
    assert resp.status_code == 200 and answer(resp)["return_code"] == "SUCCESS"
    assert order_row(placed["id"]).status == "pending"
    assert snapshot(rt) == before


def test_replayed_notification_is_success_and_applied_once(client, rt, placed, fake_pay, run_jobs):
    # given a notification that was accepted and delivered
    xml = fake_pay.build_notify_xml(placed["no"])
    assert answer(notify(client, xml))["return_code"] == "SUCCESS"
    run_jobs()
    before = snapshot(rt)
    # when the identical notification arrives again (WeChat Pay retries), twice
    for _ in range(2):
        resp = notify(client, xml)
        assert resp.status_code == 200 and answer(resp)["return_code"] == "SUCCESS"
    run_jobs()
    # then nothing more is written: one payment, one ledger transaction, one set of vouchers
    assert snapshot(rt) == before
    assert counts(placed["id"]) == {"payments": 1, "ledger": 1, "vouchers": 2, "paid_events": 1}
    assert order_row(placed["id"]).status == "delivered"


def test_replay_before_the_worker_ran_delivers_once(client, rt, placed, fake_pay, run_jobs):
    # given the notification arrives twice before the worker picked up the first
    xml = fake_pay.build_notify_xml(placed["no"])
    assert answer(notify(client, xml))["return_code"] == "SUCCESS"
    assert answer(notify(client, xml))["return_code"] == "SUCCESS"
    # when the worker runs
    run_jobs()
    # then one delivery
    assert counts(placed["id"]) == {"payments": 1, "ledger": 1, "vouchers": 2, "paid_events": 1}


def test_second_transaction_for_a_paid_order_is_recorded_not_applied(client, rt, placed, fake_pay, run_jobs):
    # given a paid order
    xml = fake_pay.build_notify_xml(placed["no"])
    assert answer(notify(client, xml))["return_code"] == "SUCCESS"
    run_jobs()
    # when a notification with another transaction id for the same order arrives
    second = resigned(xml, fake_pay.api_key, transaction_id="4200000000000000000000000001")
    resp = notify(client, second)
    run_jobs()
    # then it is acknowledged, nothing is paid or delivered again, and an event flags it
    assert answer(resp)["return_code"] == "SUCCESS"
    assert counts(placed["id"]) == {"payments": 1, "ledger": 1, "vouchers": 2, "paid_events": 1}
    with db.connection_context():
        flagged = Event.select().where(Event.topic == "payment.second_transaction").count()
    assert flagged == 1


def test_concurrent_duplicate_notifications_deliver_once(client, rt, placed, fake_pay, run_jobs):
    # given 10 identical notifications posted at the same moment to the live server
    xml = fake_pay.build_notify_xml(placed["no"])

    def send() -> tuple[int, bool]:
        resp = fake_pay.send_notify(placed["no"], xml, timeout=30)
        return resp.status_code, fake_pay.notify_acknowledged(resp)

    answers = at_once(send, 10)
    # then every one is answered SUCCESS
    assert answers == [(200, True)] * 10, answers
    # and after the worker runs there is exactly one payment, ledger entry and delivery
    run_jobs()
    assert_delivered_once(placed)


def test_notification_for_an_expired_order_with_stock_left_revives_it(client, rt, placed, fake_pay, run_jobs):
    # given the order expired (stock released) but the keys are still on the shelf
    from models.orders import expire_due

    with db.connection_context():
        Order.update(expires_at=Order.created_at).where(Order.id == placed["id"]).execute()
        assert expire_due() == 1
    # when the late payment notification arrives
    resp = notify(client, fake_pay.build_notify_xml(placed["no"]))
    run_jobs()
    # then it is acknowledged and the order is delivered after all
    assert answer(resp)["return_code"] == "SUCCESS"
    assert order_row(placed["id"]).status == "delivered"
    assert counts(placed["id"])["vouchers"] == 2
