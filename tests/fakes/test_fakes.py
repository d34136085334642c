"""Drive the REAL wechatpy clients against the loopback fakes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from wechatpy import WeChatClient
from wechatpy.exceptions import (
    APILimitedException,
    InvalidSignatureException,
    WeChatClientException,
    WeChatPayException,
)
from wechatpy.pay import WeChatPay
from wechatpy.pay.utils import dict_to_xml
from wechatpy.session.memorystorage import MemoryStorage

from tests.fakes.http import FakeResponse, FakeServer, RecordedRequest
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.fakes.wechat_pay import FakeWeChatPay, parse_xml

APPID = "wx0123456789abcdef"
SECRET = "s3cr3t-app-secret"
MCH_ID = "1900000109"
API_KEY = "0123456789abcdef0123456789abcdef"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


class LoopbackWeChatClient(WeChatClient):
    """WeChatClient whose every URL (including the hard-coded token URL) hits ``base_url``."""

    def __init__(self, appid: str, secret: str, base_url: str, **kwargs: Any) -> None:
        super().__init__(appid, secret, session=MemoryStorage(), **kwargs)
        self.API_BASE_URL = base_url + "cgi-bin/"  # message/custom/send etc.
        self.wxa.API_BASE_URL = base_url  # wxa endpoints carry their own prefix
        self._token_url = base_url + "cgi-bin/token"

    def fetch_access_token(self) -> dict[str, Any]:
        return self._fetch_access_token(
            url=self._token_url,
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )


@pytest.fixture
def api() -> Iterator[FakeWeChatAPI]:
    with FakeWeChatAPI(APPID, SECRET) as fake:
        yield fake


@pytest.fixture
def client(api: FakeWeChatAPI) -> LoopbackWeChatClient:
    return LoopbackWeChatClient(APPID, SECRET, api.base_url)


@pytest.fixture
def pay_fake() -> Iterator[FakeWeChatPay]:
    with FakeWeChatPay(APPID, MCH_ID, API_KEY) as fake:
        yield fake


def make_pay(fake: FakeWeChatPay, api_key: str = API_KEY, mch_id: str = MCH_ID) -> WeChatPay:
    pay = WeChatPay(APPID, api_key, mch_id)
    pay.API_BASE_URL = fake.base_url
    return pay


@pytest.fixture
def pay(pay_fake: FakeWeChatPay) -> WeChatPay:
    return make_pay(pay_fake)


def create_order(
    pay: WeChatPay, out_trade_no: str = "T1001", total_fee: int = 990, **kw: Any
) -> dict[str, Any]:
    return pay.order.create(
        trade_type="JSAPI",
        body="干洗 1 件",
        total_fee=total_fee,
        notify_url=kw.pop("notify_url", "http://127.0.0.1:9/notify"),
        client_ip="127.0.0.1",  # without it wechatpy does a DNS lookup (get_external_ip)
        user_id=OPENID,
        out_trade_no=out_trade_no,
        **kw,
    )


# -- base server -------------------------------------------------------------------------


def test_fake_server_records_requests_and_404s_unknown_paths() -> None:
    # given a bare server with one handler
    server = FakeServer()
    server.route("POST", "/echo", lambda r: FakeResponse(body=r.body))
    with server:
        # when it is called on a known and an unknown path
        ok = requests.post(server.url("/echo?a=1"), data=b"hi", timeout=5)
        missing = requests.get(server.base_url + "nope", timeout=5)
    # then both are answered and recorded
    assert (ok.status_code, ok.content, missing.status_code) == (200, b"hi", 404)
    first: RecordedRequest = server.requests[0]
    assert (first.method, first.path, first.query, first.body) == (
        "POST",
        "/echo",
        {"a": "1"},
        b"hi",
    )
    assert server.requests[1].path == "/nope"


# -- WeChat API --------------------------------------------------------------------------


def test_token_fetch_is_cached_by_client(api: FakeWeChatAPI, client: LoopbackWeChatClient) -> None:
    # given a fresh client / when the token is read twice
    first = client.access_token
    second = client.access_token
    # then one fetch happened and the client holds the fake's current token
    assert first == second == api.access_token
    assert api.token_fetches == 1
    assert api.requests_to("/cgi-bin/token")[0].query["secret"] == SECRET


def test_token_with_wrong_secret_is_40125(api: FakeWeChatAPI) -> None:
    # given a client with the wrong secret
    bad = LoopbackWeChatClient(APPID, "wrong", api.base_url)
    # when / then fetching a token fails with 40125
    with pytest.raises(WeChatClientException) as err:
        bad.fetch_access_token()
    assert err.value.errcode == 40125
    assert api.token_fetches == 0


def test_new_token_invalidates_the_old_one(api: FakeWeChatAPI) -> None:
    # given client A holds a token and client B (another process) fetches a new one
    a = LoopbackWeChatClient(APPID, SECRET, api.base_url, auto_retry=False)
    a.fetch_access_token()
    LoopbackWeChatClient(APPID, SECRET, api.base_url).fetch_access_token()
    # when A sends with its stale token / then it gets 40001
    with pytest.raises(WeChatClientException) as err:
        a.wxa.send_subscribe_message(OPENID, "tpl", {"thing1": {"value": "x"}})
    assert err.value.errcode == 40001
    assert api.subscribe_messages == []


def test_expired_token_is_refetched_and_retried_by_wechatpy(
    api: FakeWeChatAPI, client: LoopbackWeChatClient
) -> None:
    # given a client with a token that the server then expires
    client.fetch_access_token()
    api.expire_token()
    # when sending (auto_retry on by default)
    result = client.wxa.send_subscribe_message(OPENID, "tpl", {"thing1": {"value": "x"}})
    # then wechatpy saw 40001, fetched a new token and retried successfully
    assert result["errcode"] == 0
    assert api.token_fetches == 2
    assert len(api.subscribe_messages) == 1


def test_code_to_session_works_once(api: FakeWeChatAPI, client: LoopbackWeChatClient) -> None:
    # given a registered code
    key = api.register_code("code-1", OPENID, unionid="union-1")
    # when it is exchanged
    session = client.wxa.code_to_session("code-1")
    # then openid/session_key/unionid come back, and a second use fails with 40029
    assert session == {"session_key": key, "openid": OPENID, "unionid": "union-1"}
    with pytest.raises(WeChatClientException) as err:
        client.wxa.code_to_session("code-1")
    assert err.value.errcode == 40029


def test_code_to_session_unknown_code_and_wrong_secret(api: FakeWeChatAPI) -> None:
    # given a client with a token and another with the wrong secret but a preset token
    good = LoopbackWeChatClient(APPID, SECRET, api.base_url)
    bad = LoopbackWeChatClient(APPID, "wrong", api.base_url, access_token="preset")
    api.register_code("code-2", OPENID)
    # when / then an unknown code is 40029 and a wrong secret is 40125
    with pytest.raises(WeChatClientException) as unknown:
        good.wxa.code_to_session("nope")
    with pytest.raises(WeChatClientException) as wrong:
        bad.wxa.code_to_session("code-2")
    assert (unknown.value.errcode, wrong.value.errcode) == (40029, 40125)
    # and a code registered without unionid answers without one
    assert "unionid" not in good.wxa.code_to_session("code-2")


def test_subscribe_send_success_is_recorded(
    api: FakeWeChatAPI, client: LoopbackWeChatClient
) -> None:
    # given / when a subscribe message is sent
    data = {"thing1": {"value": "订单已完成"}}
    result = client.wxa.send_subscribe_message(OPENID, "tpl-1", data, page="pages/order")
    # then it is ok and recorded with the exact payload
    assert result == {"errcode": 0, "errmsg": "ok"}
    assert api.subscribe_messages == [
        {"touser": OPENID, "template_id": "tpl-1", "page": "pages/order", "data": data}
    ]
    sent = api.requests_to("/cgi-bin/message/subscribe/send")[0]
    assert sent.query["access_token"] == api.access_token


def test_subscribe_refuses_a_thing_value_over_twenty_characters(
    api: FakeWeChatAPI, client: LoopbackWeChatClient
) -> None:
    # given a `thing` value of 21 characters (20 is WeChat's limit)
    data = {"thing1": {"value": "一" * 21}}
    # when it is sent, then WeChat's 47003 comes back and nothing is recorded
    with pytest.raises(WeChatClientException) as refused:
        client.wxa.send_subscribe_message(OPENID, "tpl-1", data)
    assert refused.value.errcode == 47003
    assert api.subscribe_messages == []
    # and 20 characters pass
    client.wxa.send_subscribe_message(OPENID, "tpl-1", {"thing1": {"value": "一" * 20}})
    assert len(api.subscribe_messages) == 1


@pytest.mark.parametrize(
    ("errcode", "exc_type"),
    [(-1, WeChatClientException), (45009, APILimitedException), (43101, WeChatClientException)],
)
def test_subscribe_injected_errcode(
    api: FakeWeChatAPI, client: LoopbackWeChatClient, errcode: int, exc_type: type
) -> None:
    # given one injected failure
    api.fail_next(1, errcode=errcode)
    # when sending twice / then the first raises with that errcode, the second succeeds
    with pytest.raises(exc_type) as err:
        client.wxa.send_subscribe_message(OPENID, "tpl", {"k": {"value": "v"}})
    assert err.value.errcode == errcode
    assert client.wxa.send_subscribe_message(OPENID, "tpl", {"k": {"value": "v"}})["errcode"] == 0
    assert len(api.subscribe_messages) == 1


def test_subscribe_injected_http_500(api: FakeWeChatAPI, client: LoopbackWeChatClient) -> None:
    # given an injected HTTP 500 / when sending
    api.fail_next(1, http_status=500)
    with pytest.raises(WeChatClientException) as err:
        client.wxa.send_subscribe_message(OPENID, "tpl", {"k": {"value": "v"}})
    # then wechatpy raises with no errcode and the 500 response
    assert err.value.errcode is None
    assert err.value.response.status_code == 500


def test_custom_message_send_and_endpoint_scoped_failure(
    api: FakeWeChatAPI, client: LoopbackWeChatClient
) -> None:
    # given a failure scoped to subscribe sends only
    api.fail_next(1, errcode=-1, endpoint="subscribe")
    # when a customer-service text is sent
    client.message.send_text(OPENID, "您的衣物已送达")
    # then it is recorded and the subscribe failure is still pending
    assert api.custom_messages == [
        {"touser": OPENID, "msgtype": "text", "text": {"content": "您的衣物已送达"}}
    ]
    assert api.pending_failures == 1


# -- WeChat Pay ----------------------------------------------------------------------------


def test_unified_order_create_and_duplicate(pay_fake: FakeWeChatPay, pay: WeChatPay) -> None:
    # given / when an order is created twice with the same amount
    first = create_order(pay, attach="shop=1")
    again = create_order(pay)
    # then the answer is signed, parseable and idempotent
    assert first["result_code"] == "SUCCESS" and first["trade_type"] == "JSAPI"
    assert pay.check_signature(dict(first))
    assert again["prepay_id"] == first["prepay_id"]
    order = pay_fake.order("T1001")
    assert (order.total_fee, order.openid, order.attach) == (990, OPENID, "shop=1")
    # and a different amount for the same out_trade_no is INVALID_REQUEST
    with pytest.raises(WeChatPayException) as err:
        create_order(pay, total_fee=1)
    assert (err.value.result_code, err.value.errcode) == ("FAIL", "INVALID_REQUEST")


@pytest.mark.parametrize(("api_key", "mch_id"), [("x" * 32, MCH_ID), (API_KEY, "1900000000")])
def test_unified_order_bad_sign_or_mch_id_is_return_fail(
    pay_fake: FakeWeChatPay, api_key: str, mch_id: str
) -> None:
    # given a client with a wrong key or merchant id / when creating an order
    with pytest.raises(WeChatPayException) as err:
        create_order(make_pay(pay_fake, api_key=api_key, mch_id=mch_id))
    # then the fake answers return_code FAIL and stores nothing
    assert err.value.return_code == "FAIL" and err.value.return_msg
    assert pay_fake.orders == {}


def test_order_query_states(pay_fake: FakeWeChatPay, pay: WeChatPay) -> None:
    # given an unpaid order
    create_order(pay)
    # when queried before and after payment
    before = pay.order.query(out_trade_no="T1001")
    paid = pay_fake.mark_paid("T1001")
    after = pay.order.query(transaction_id=paid.transaction_id)
    # then the state moves NOTPAY -> SUCCESS with transaction_id and time_end
    assert (before["trade_state"], before["total_fee"]) == ("NOTPAY", "990")
    assert "transaction_id" not in before
    assert after["trade_state"] == "SUCCESS"
    assert after["transaction_id"] == paid.transaction_id and len(after["time_end"]) == 14
    # and an unknown order is ORDERNOTEXIST
    with pytest.raises(WeChatPayException) as err:
        pay.order.query(out_trade_no="nope")
    assert err.value.errcode == "ORDERNOTEXIST"


def test_close_order(pay_fake: FakeWeChatPay, pay: WeChatPay) -> None:
    # given an unpaid and a paid order
    create_order(pay, "T1")
    create_order(pay, "T2")
    pay_fake.mark_paid("T2")
    # when both are closed / then only the unpaid one closes
    pay.order.close("T1")
    assert pay.order.query(out_trade_no="T1")["trade_state"] == "CLOSED"
    with pytest.raises(WeChatPayException) as err:
        pay.order.close("T2")
    assert err.value.errcode == "ORDERPAID"


def test_refund_partial_idempotent_and_over_limit(pay_fake: FakeWeChatPay, pay: WeChatPay) -> None:
    # given a paid order of 990
    create_order(pay)
    pay_fake.mark_paid("T1001")
    # when refunding 500 twice with the same out_refund_no
    first = pay.refund.apply(990, 500, "R1", out_trade_no="T1001")
    again = pay.refund.apply(990, 500, "R1", out_trade_no="T1001")
    # then one refund exists and the order is in REFUND
    assert first["refund_id"] == again["refund_id"] and first["refund_fee"] == "500"
    assert [(r.out_refund_no, r.refund_fee) for r in pay_fake.refunds] == [("R1", 500)]
    assert pay.order.query(out_trade_no="T1001")["trade_state"] == "REFUND"
    # and refunding more than the rest fails
    with pytest.raises(WeChatPayException) as err:
        pay.refund.apply(990, 491, "R2", out_trade_no="T1001")
    assert err.value.result_code == "FAIL"
    assert pay.refund.query(out_refund_no="R1")["refund_status_0"] == "SUCCESS"


def test_notify_xml_verified_by_parse_payment_result(
    pay_fake: FakeWeChatPay, pay: WeChatPay
) -> None:
    # given an order with attach
    create_order(pay, attach="shop=1")
    # when the notification XML is built
    result = pay.parse_payment_result(pay_fake.build_notify_xml("T1001"))
    # then wechatpy accepts the signature and sees the v2 field set
    assert result["total_fee"] == 990 and result["cash_fee"] == 990
    assert result["transaction_id"] == pay_fake.order("T1001").transaction_id
    assert (result["mch_id"], result["openid"], result["attach"]) == (MCH_ID, OPENID, "shop=1")
    # and overrides are signed too (wrong amount still verifies)
    assert (
        pay.parse_payment_result(pay_fake.build_notify_xml("T1001", total_fee=1))["total_fee"] == 1
    )


@pytest.mark.parametrize("kwargs", [{"tamper_sign": True}, {"sign": False}])
def test_tampered_or_missing_sign_rejected(
    pay_fake: FakeWeChatPay, pay: WeChatPay, kwargs: dict[str, bool]
) -> None:
    # given an order / when the notify signature is tampered with or missing
    create_order(pay)
    xml = pay_fake.build_notify_xml("T1001", **kwargs)
    # then parse_payment_result rejects it
    with pytest.raises(InvalidSignatureException):
        pay.parse_payment_result(xml)


def test_pay_posts_notification_to_notify_url(pay_fake: FakeWeChatPay, pay: WeChatPay) -> None:
    # given a merchant notify endpoint that verifies with wechatpy
    seen: list[dict[str, Any]] = []

    def notify(req: RecordedRequest) -> FakeResponse:
        seen.append(pay.parse_payment_result(req.body))
        return FakeResponse.of_xml(dict_to_xml({"return_code": "SUCCESS", "return_msg": "OK"}))

    merchant = FakeServer()
    merchant.route("POST", "/pay/notify", notify)
    with merchant:
        create_order(pay, notify_url=merchant.url("/pay/notify"))
        # when the user pays
        response = pay_fake.pay("T1001")
    # then the merchant got a valid notify and acknowledged it, and the order is paid
    assert response.status_code == 200 and FakeWeChatPay.notify_acknowledged(response)
    assert seen[0]["out_trade_no"] == "T1001" and seen[0]["result_code"] == "SUCCESS"
    assert pay_fake.order("T1001").trade_state == "SUCCESS"
    assert pay_fake.notifications[0].status_code == 200
    assert parse_xml(pay_fake.notifications[0].xml)["transaction_id"] == seen[0]["transaction_id"]


def test_pay_injected_failures(pay_fake: FakeWeChatPay, pay: WeChatPay) -> None:
    # given three injected failures of each kind
    pay_fake.fail_next(1, http_status=500)
    pay_fake.fail_next(1, return_msg="系统繁忙")
    pay_fake.fail_next(1, err_code="SYSTEMERROR", endpoint="unifiedorder")
    # when / then each call fails accordingly and the fourth succeeds
    with pytest.raises(WeChatPayException) as http_err:
        create_order(pay)
    with pytest.raises(WeChatPayException) as return_fail:
        create_order(pay)
    with pytest.raises(WeChatPayException) as result_fail:
        create_order(pay)
    assert http_err.value.response.status_code == 500
    assert (return_fail.value.return_code, return_fail.value.return_msg) == ("FAIL", "系统繁忙")
    assert (result_fail.value.result_code, result_fail.value.errcode) == ("FAIL", "SYSTEMERROR")
    assert create_order(pay)["result_code"] == "SUCCESS"
