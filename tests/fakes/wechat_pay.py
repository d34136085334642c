"""Fake of WeChat Pay API v2 (api.mch.weixin.qq.com): signed XML over HTTP."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any

import requests
import xmltodict
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac, dict_to_xml
from wechatpy.utils import random_string

from tests.fakes.http import FakeResponse, FakeServer, RecordedRequest

CST = timezone(timedelta(hours=8), "Asia/Shanghai")
ENDPOINTS: dict[str, str] = {
    "unifiedorder": "/pay/unifiedorder",
    "orderquery": "/pay/orderquery",
    "closeorder": "/pay/closeorder",
    "refund": "/secapi/pay/refund",
    "refundquery": "/pay/refundquery",
    # merchant transfers to a wallet (企业付款到零钱); requests name the merchant mchid/mch_appid
    "transfers": "/mmpaymkttransfers/promotion/transfers",
    "gettransferinfo": "/mmpaymkttransfers/gettransferinfo",
}
TRADE_STATE_DESC = {
    "NOTPAY": "订单未支付",
    "SUCCESS": "支付成功",
    "REFUND": "转入退款",
    "CLOSED": "已关闭",
}
UNIFIEDORDER_REQUIRED = (
    "body",
    "out_trade_no",
    "total_fee",
    "spbill_create_ip",
    "notify_url",
    "trade_type",
)


@dataclass
class FakeOrder:
    out_trade_no: str
    total_fee: int
    notify_url: str
    body: str
    openid: str | None
    trade_type: str
    attach: str | None
    prepay_id: str
    fields: dict[str, str]  # the unifiedorder request as received (without sign)
    trade_state: str = "NOTPAY"
    transaction_id: str | None = None
    time_end: str | None = None
    refunded_fee: int = 0


@dataclass(frozen=True)
class FakeRefund:
    out_refund_no: str
    refund_id: str
    out_trade_no: str
    transaction_id: str
    total_fee: int
    refund_fee: int


@dataclass(frozen=True)
class NotifyAttempt:
    url: str
    xml: bytes
    status_code: int
    response_body: bytes


@dataclass
class FakeTransfer:
    partner_trade_no: str
    openid: str
    amount: int
    desc: str
    payment_no: str
    payment_time: str
    status: str = "SUCCESS"  # tests may set FAILED or PROCESSING (what gettransferinfo says)
    reason: str = ""


@dataclass
class _Failure:
    endpoint: str | None
    http_status: int | None
    err_code: str | None
    return_msg: str
    after_processing: bool = False


class PayError(Exception):
    """Raised inside handlers; turned into a signed result_code=FAIL answer."""

    def __init__(self, err_code: str, err_code_des: str) -> None:
        super().__init__(f"{err_code}: {err_code_des}")
        self.err_code = err_code
        self.err_code_des = err_code_des


def now_cst() -> str:
    return datetime.now(CST).strftime("%Y%m%d%H%M%S")


def parse_xml(body: bytes | str) -> dict[str, str]:
    """Parse a WeChat Pay <xml> document into a flat dict (empty elements dropped)."""
    doc = xmltodict.parse(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("xml"), dict):
        raise ValueError("not a WeChat Pay <xml> document")
    return {k: str(v) for k, v in doc["xml"].items() if v is not None}


def sign_fields(fields: dict[str, Any], api_key: str) -> str:
    if fields.get("sign_type") == "HMAC-SHA256":
        return str(calculate_signature_hmac(fields, api_key))
    return str(calculate_signature(fields, api_key))


def to_signed_xml(fields: dict[str, Any], api_key: str) -> str:
    clean = {k: str(v) for k, v in fields.items() if v is not None and k != "sign"}
    return str(dict_to_xml(clean, sign_fields(clean, api_key)))


class FakeWeChatPay(FakeServer):
    """Serves unifiedorder, orderquery, closeorder, refund, refundquery, merchant transfers
    (transfers, gettransferinfo); sends notifies."""

    def __init__(self, appid: str, mch_id: str, api_key: str) -> None:
        super().__init__()
        self.appid = appid
        self.mch_id = mch_id
        self.api_key = api_key
        self.orders: dict[str, FakeOrder] = {}
        self.refunds: list[FakeRefund] = []
        self.transfers: dict[str, FakeTransfer] = {}
        self.notifications: list[NotifyAttempt] = []
        self._failures: list[_Failure] = []
        for name, path in ENDPOINTS.items():
            self.route("POST", path, self._make_endpoint(name))

    # -- test controls -------------------------------------------------------------------
    def fail_next(
        self,
        n: int = 1,
        http_status: int | None = None,
        *,
        err_code: str | None = None,
        return_msg: str = "系统繁忙,请稍后再试",
        endpoint: str | None = None,
        after_processing: bool = False,
    ) -> None:
        """The next ``n`` calls fail without being processed (``after_processing``: they are
        processed, then answered with the failure, as when an answer is lost after the money
        moved).

        ``http_status`` -> bare HTTP error; ``err_code`` (e.g. "SYSTEMERROR") -> signed
        result_code FAIL; neither -> return_code FAIL with ``return_msg``.
        ``endpoint`` is one of ENDPOINTS' keys ("unifiedorder", "orderquery", "refund", ...)
        or None for any of them.
        """
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        with self._lock:
            self._failures.extend(
                _Failure(endpoint, http_status, err_code, return_msg, after_processing)
                for _ in range(n)
            )

    def order(self, out_trade_no: str) -> FakeOrder:
        with self._lock:
            return self.orders[out_trade_no]

    def mark_paid(self, out_trade_no: str, **changes: Any) -> FakeOrder:
        """Mark the order paid (no notification). ``changes`` set FakeOrder attributes."""
        with self._lock:
            order = self.orders[out_trade_no]
            if order.trade_state == "CLOSED":
                raise ValueError(f"order {out_trade_no} is closed")
            self._ensure_transaction(order)
            if order.trade_state == "NOTPAY":
                order.trade_state = "SUCCESS"
            for key, value in changes.items():
                setattr(order, key, value)
            return order

    def build_notify_xml(
        self, out_trade_no: str, *, sign: bool = True, tamper_sign: bool = False, **overrides: Any
    ) -> bytes:
        """The payment notification XML for the order (does not change its trade_state).

        ``overrides`` replace fields before signing (None removes a field), so a wrong
        amount or mch_id still carries a valid signature unless ``tamper_sign``.
        """
        with self._lock:
            order = self.orders[out_trade_no]
            self._ensure_transaction(order)
            fields: dict[str, Any] = {
                "appid": self.appid,
                "mch_id": self.mch_id,
                "nonce_str": random_string(32),
                "result_code": "SUCCESS",
                "return_code": "SUCCESS",
                "openid": order.openid,
                "is_subscribe": "N",
                "trade_type": order.trade_type,
                "bank_type": "OTHERS",
                "total_fee": order.total_fee,
                "cash_fee": order.total_fee,
                "fee_type": "CNY",
                "transaction_id": order.transaction_id,
                "out_trade_no": order.out_trade_no,
                "time_end": order.time_end,
                "attach": order.attach,
            }
        fields.update(overrides)
        clean = {k: str(v) for k, v in fields.items() if v is not None and k != "sign"}
        signature: str | None = sign_fields(clean, self.api_key) if sign else None
        if signature and tamper_sign:
            signature = ("0" if signature[0] != "0" else "1") + signature[1:]
        return str(dict_to_xml(clean, signature)).encode("utf-8")

    def send_notify(
        self,
        out_trade_no: str,
        xml: bytes | None = None,
        *,
        url: str | None = None,
        timeout: float = 10,
    ) -> requests.Response:
        """POST a notification (default: freshly built) to the order's notify_url."""
        with self._lock:
            target = url or self.orders[out_trade_no].notify_url
        body = xml if xml is not None else self.build_notify_xml(out_trade_no)
        with requests.Session() as http:
            http.trust_env = False  # never route loopback traffic through a proxy
            response = http.post(
                target, data=body, headers={"Content-Type": "text/xml"}, timeout=timeout
            )
        with self._lock:
            self.notifications.append(
                NotifyAttempt(target, body, response.status_code, response.content)
            )
        return response

    def pay(self, out_trade_no: str, **overrides: Any) -> requests.Response:
        """Mark the order paid and POST the signed notification to its notify_url."""
        self.mark_paid(out_trade_no)
        return self.send_notify(out_trade_no, self.build_notify_xml(out_trade_no, **overrides))

    @staticmethod
    def notify_acknowledged(response: requests.Response) -> bool:
        """True if the merchant answered the notify with return_code SUCCESS (XML)."""
        try:
            return parse_xml(response.content).get("return_code") == "SUCCESS"
        except Exception:
            return False

    # -- plumbing ------------------------------------------------------------------------
    def _ensure_transaction(self, order: FakeOrder) -> None:
        if order.transaction_id is None:
            order.transaction_id = "42000" + "".join(str(secrets.randbelow(10)) for _ in range(23))
            order.time_end = now_cst()

    def _fail(self, return_msg: str) -> FakeResponse:
        xml = dict_to_xml({"return_code": "FAIL", "return_msg": return_msg})
        return FakeResponse.of_xml(str(xml))

    def _answer(self, fields: dict[str, Any], error: PayError | None = None) -> FakeResponse:
        data: dict[str, Any] = {
            "return_code": "SUCCESS",
            "return_msg": "OK",
            "appid": self.appid,
            "mch_id": self.mch_id,
            "nonce_str": random_string(32),
            "result_code": "SUCCESS",
        }
        if error is not None:
            data.update(
                result_code="FAIL", err_code=error.err_code, err_code_des=error.err_code_des
            )
        else:
            data.update(fields)
        return FakeResponse.of_xml(to_signed_xml(data, self.api_key))

    def _take_failure(self, endpoint: str, processed: bool = False) -> FakeResponse | None:
        for i, failure in enumerate(self._failures):
            if failure.endpoint in (None, endpoint) and failure.after_processing == processed:
                del self._failures[i]
                if failure.http_status is not None:
                    status = failure.http_status
                    return FakeResponse.of_text(HTTPStatus(status).phrase, status)
                if failure.err_code is not None:
                    return self._answer({}, PayError(failure.err_code, failure.return_msg))
                return self._fail(failure.return_msg)
        return None

    def _make_endpoint(self, name: str) -> Any:
        logic = getattr(self, f"_do_{name}")

        def endpoint(req: RecordedRequest) -> FakeResponse:
            failure = self._take_failure(name)
            if failure is not None:
                return failure
            try:
                fields = parse_xml(req.body)
            except Exception:
                return self._fail("XML格式错误")
            sign = fields.pop("sign", "")
            if fields.get("mch_id", fields.get("mchid")) != self.mch_id:
                return self._fail("mch_id参数格式错误")
            if not sign or sign != sign_fields(fields, self.api_key):
                return self._fail("签名错误")
            if fields.get("appid", fields.get("mch_appid")) != self.appid:
                return self._fail("appid和mch_id不匹配")
            try:
                answer = self._answer(logic(fields))
            except PayError as error:
                answer = self._answer({}, error)
            return self._take_failure(name, processed=True) or answer

        return endpoint

    def _find_order(self, fields: dict[str, str]) -> FakeOrder:
        transaction_id = fields.get("transaction_id")
        out_trade_no = fields.get("out_trade_no")
        if not transaction_id and not out_trade_no:
            raise PayError("LACK_PARAMS", "缺少参数transaction_id或out_trade_no")
        for order in self.orders.values():
            if transaction_id and order.transaction_id == transaction_id:
                return order
            if not transaction_id and order.out_trade_no == out_trade_no:
                return order
        raise PayError("ORDERNOTEXIST", "订单不存在")

    # -- endpoint logic: fields in (verified, without sign), result fields out ------------
    def _do_unifiedorder(self, f: dict[str, str]) -> dict[str, Any]:
        for key in UNIFIEDORDER_REQUIRED:
            if not f.get(key):
                raise PayError("LACK_PARAMS", f"缺少参数{key}")
        if f["trade_type"] == "JSAPI" and not (f.get("openid") or f.get("sub_openid")):
            raise PayError("LACK_PARAMS", "JSAPI支付必须传openid")
        if not f["total_fee"].isdigit() or int(f["total_fee"]) <= 0:
            raise PayError("PARAM_ERROR", "total_fee参数错误")
        total_fee = int(f["total_fee"])
        existing = self.orders.get(f["out_trade_no"])
        if existing is not None:
            if existing.trade_state in ("SUCCESS", "REFUND"):
                raise PayError("ORDERPAID", "该订单已支付")
            if existing.trade_state == "CLOSED":
                raise PayError("ORDERCLOSED", "该订单已关")
            if existing.total_fee != total_fee:
                raise PayError("INVALID_REQUEST", "201 商户订单号重复")
            order = existing
        else:
            order = FakeOrder(
                out_trade_no=f["out_trade_no"],
                total_fee=total_fee,
                notify_url=f["notify_url"],
                body=f["body"],
                openid=f.get("openid"),
                trade_type=f["trade_type"],
                attach=f.get("attach"),
                prepay_id=f"wx{now_cst()}{secrets.token_hex(10)}",
                fields=dict(f),
            )
            self.orders[order.out_trade_no] = order
        result: dict[str, Any] = {"trade_type": order.trade_type, "prepay_id": order.prepay_id}
        if order.trade_type == "NATIVE":
            result["code_url"] = f"weixin://wxpay/bizpayurl?pr={order.prepay_id[-7:]}"
        return result

    def _do_orderquery(self, f: dict[str, str]) -> dict[str, Any]:
        order = self._find_order(f)
        result: dict[str, Any] = {
            "out_trade_no": order.out_trade_no,
            "trade_state": order.trade_state,
            "trade_state_desc": TRADE_STATE_DESC.get(order.trade_state, order.trade_state),
            "total_fee": order.total_fee,
            "fee_type": "CNY",
            "openid": order.openid,
            "trade_type": order.trade_type,
            "attach": order.attach,
        }
        if order.trade_state in ("SUCCESS", "REFUND"):
            result.update(
                transaction_id=order.transaction_id,
                time_end=order.time_end,
                cash_fee=order.total_fee,
                bank_type="OTHERS",
                is_subscribe="N",
            )
        return result

    def _do_closeorder(self, f: dict[str, str]) -> dict[str, Any]:
        order = self._find_order({"out_trade_no": f.get("out_trade_no", "")})
        if order.trade_state in ("SUCCESS", "REFUND"):
            raise PayError("ORDERPAID", "订单已支付，不能发起关单")
        order.trade_state = "CLOSED"
        return {"result_msg": "OK"}

    def _do_refund(self, f: dict[str, str]) -> dict[str, Any]:
        for key in ("out_refund_no", "total_fee", "refund_fee"):
            if not f.get(key):
                raise PayError("LACK_PARAMS", f"缺少参数{key}")
        order = self._find_order(f)
        if order.trade_state not in ("SUCCESS", "REFUND") or order.transaction_id is None:
            raise PayError("ORDERNOTEXIST", "订单不存在")
        total_fee, refund_fee = int(f["total_fee"]), int(f["refund_fee"])
        if total_fee != order.total_fee:
            raise PayError("INVALID_REQUEST", "订单金额或退款金额与之前请求不一致")
        if refund_fee <= 0:
            raise PayError("PARAM_ERROR", "refund_fee参数错误")
        refund = next((r for r in self.refunds if r.out_refund_no == f["out_refund_no"]), None)
        if refund is not None:
            if refund.out_trade_no != order.out_trade_no or refund.refund_fee != refund_fee:
                raise PayError("INVALID_REQUEST", "订单金额或退款金额与之前请求不一致")
        else:
            if order.refunded_fee + refund_fee > order.total_fee:
                raise PayError("ERROR", "累计退款金额大于支付金额")
            refund = FakeRefund(
                out_refund_no=f["out_refund_no"],
                refund_id="50" + "".join(str(secrets.randbelow(10)) for _ in range(27)),
                out_trade_no=order.out_trade_no,
                transaction_id=order.transaction_id,
                total_fee=order.total_fee,
                refund_fee=refund_fee,
            )
            self.refunds.append(refund)
            order.refunded_fee += refund_fee
            order.trade_state = "REFUND"
        return {
            "transaction_id": refund.transaction_id,
            "out_trade_no": refund.out_trade_no,
            "out_refund_no": refund.out_refund_no,
            "refund_id": refund.refund_id,
            "refund_fee": refund.refund_fee,
            "total_fee": refund.total_fee,
            "cash_fee": refund.total_fee,
            "cash_refund_fee": refund.refund_fee,
        }

    def _do_refundquery(self, f: dict[str, str]) -> dict[str, Any]:
        refunds = [
            r
            for r in self.refunds
            if r.refund_id == f.get("refund_id")
            or r.out_refund_no == f.get("out_refund_no")
            or r.transaction_id == f.get("transaction_id")
            or r.out_trade_no == f.get("out_trade_no")
        ]
        if not refunds:
            raise PayError("REFUNDNOTEXIST", "退款订单查询失败")
        first = refunds[0]
        result: dict[str, Any] = {
            "transaction_id": first.transaction_id,
            "out_trade_no": first.out_trade_no,
            "total_fee": first.total_fee,
            "cash_fee": first.total_fee,
            "refund_count": len(refunds),
        }
        for i, r in enumerate(refunds):
            result.update(
                {
                    f"out_refund_no_{i}": r.out_refund_no,
                    f"refund_id_{i}": r.refund_id,
                    f"refund_fee_{i}": r.refund_fee,
                    f"refund_status_{i}": "SUCCESS",
                }
            )
        return result

    def _do_transfers(self, f: dict[str, str]) -> dict[str, Any]:
        for key in ("partner_trade_no", "openid", "amount", "desc", "check_name"):
            if not f.get(key):
                raise PayError("PARAM_ERROR", f"缺少参数{key}")
        if not f["amount"].isdigit():
            raise PayError("PARAM_ERROR", "amount参数错误")
        amount = int(f["amount"])
        if amount < 30:
            raise PayError("AMOUNT_LIMIT", "付款金额不能小于最低限额")
        if f["check_name"] == "FORCE_CHECK" and not f.get("re_user_name"):
            raise PayError("PARAM_ERROR", "缺少参数re_user_name")
        transfer = self.transfers.get(f["partner_trade_no"])
        if transfer is not None:  # the same partner_trade_no again: the first result, no new payment
            if (transfer.openid, transfer.amount) != (f["openid"], amount):
                raise PayError("PARAM_ERROR", "商户订单号重复且参数不一致")
        else:
            transfer = FakeTransfer(
                partner_trade_no=f["partner_trade_no"], openid=f["openid"], amount=amount,
                desc=f["desc"],
                payment_no="10100" + "".join(str(secrets.randbelow(10)) for _ in range(23)),
                payment_time=datetime.now(CST).strftime("%Y-%m-%d %H:%M:%S"),
            )
            self.transfers[transfer.partner_trade_no] = transfer
        return {"mch_appid": self.appid, "mchid": self.mch_id,
                "partner_trade_no": transfer.partner_trade_no, "payment_no": transfer.payment_no,
                "payment_time": transfer.payment_time}

    def _do_gettransferinfo(self, f: dict[str, str]) -> dict[str, Any]:
        transfer = self.transfers.get(f.get("partner_trade_no", ""))
        if transfer is None:
            raise PayError("NOT_FOUND", "数据不存在")
        return {"partner_trade_no": transfer.partner_trade_no, "detail_id": transfer.payment_no,
                "status": transfer.status, "reason": transfer.reason or None,
                "openid": transfer.openid, "payment_amount": transfer.amount,
                "transfer_time": transfer.payment_time, "payment_time": transfer.payment_time,
                "desc": transfer.desc}
