"""Payment gateways: WeChat Pay v2 through wechatpy, and a sandbox that pays by handing the
same signed notification WeChat Pay would send to the notify endpoint's code, in-process."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from typing import Any

import requests
from wechatpy.exceptions import WeChatPayException
from wechatpy.pay import WeChatPay, calculate_signature, dict_to_xml

from models.db import utcnow
from models.errors import InvalidState
from models.orders import Order
from models.payments import GatewayError, QueryResult

BEIJING_OFFSET = dt.timedelta(hours=8)


def make_wechatpay(appid: str, api_key: str, mch_id: str, base_url: str, timeout: float,
                   cert: str | None = None, key: str | None = None) -> WeChatPay:
    """The merchant certificate and key (PEM files) are what WeChat Pay requires for refunds."""
    pay = WeChatPay(appid, api_key, mch_id, mch_cert=cert, mch_key=key, timeout=timeout)
    pay.API_BASE_URL = base_url if base_url.endswith("/") else base_url + "/"
    return pay


class WeChatPayGateway:
    name = "wechatpay"

    def __init__(self, pay: WeChatPay, notify_url: str) -> None:
        self.pay = pay
        self.notify_url = notify_url

    def prepare(self, order: Order, openid: str, client_ip: str) -> tuple[str, dict[str, Any]]:
        try:
            result = self.pay.order.create(
                trade_type="JSAPI", body=f"千星-{order.sku.name}"[:120],
                total_fee=order.amount_fen, notify_url=self.notify_url, client_ip=client_ip,
                user_id=openid, out_trade_no=order.no,
                time_expire=order.expires_at + BEIJING_OFFSET,  # WeChat Pay reads Beijing time
            )
        except WeChatPayException as exc:
            raise GatewayError(f"WeChat Pay refused the order: {exc.errmsg or exc.return_msg or exc}") from None
        except requests.RequestException:
            raise GatewayError("WeChat Pay could not be reached") from None
        prepay_id = result["prepay_id"]
        return prepay_id, self.pay.jsapi.get_jsapi_params(prepay_id)

    def query(self, order_no: str) -> QueryResult:
        try:
            result = self.pay.order.query(out_trade_no=order_no)
        except WeChatPayException as exc:
            if getattr(exc, "errcode", None) == "ORDERNOTEXIST":
                return QueryResult("NOTFOUND")
            raise GatewayError("WeChat Pay order query failed") from None
        except requests.RequestException:
            raise GatewayError("WeChat Pay could not be reached") from None
        fee = result.get("total_fee")
        return QueryResult(result.get("trade_state", "UNKNOWN"), result.get("transaction_id"),
                           int(fee) if fee is not None else None)

    def refund(self, order_no: str, refund_no: str, total_fee: int, refund_fee: int) -> str:
        try:
            result = self.pay.refund.apply(total_fee=total_fee, refund_fee=refund_fee,
                                           out_refund_no=refund_no, out_trade_no=order_no)
        except WeChatPayException as exc:
            raise GatewayError(f"WeChat Pay refund failed: {exc.errmsg or exc}") from None
        except requests.RequestException:
            raise GatewayError("WeChat Pay could not be reached") from None
        return str(result.get("refund_id", refund_no))


class SandboxGateway:
    """Dev and test payments with no outside party. `pay()` builds a WeChat-Pay-shaped, signed
    notification and runs it through the notify endpoint's own function in this process
    (`miniapp_api.webhooks.process_payment_notification`, passed in by the caller): signature,
    checks, confirmation and dispatch are the production path, with no HTTP call to ourselves,
    so it neither waits on a busy server nor depends on `PUBLIC_BASE_URL` or `WEB_BIND`."""

    name = "sandbox"

    def __init__(self, appid: str, mch_id: str, api_key: str, notify_url: str) -> None:
        self.appid, self.mch_id, self.api_key, self.notify_url = appid, mch_id, api_key, notify_url

    def prepare(self, order: Order, openid: str, client_ip: str) -> tuple[str, dict[str, Any]]:
        prepay_id = "sandbox_" + secrets.token_hex(12)
        params = {"appId": self.appid, "timeStamp": str(int(utcnow().timestamp())),
                  "nonceStr": secrets.token_hex(16), "package": f"prepay_id={prepay_id}",
                  "signType": "MD5"}
        params["paySign"] = calculate_signature(params, self.api_key)
        return prepay_id, params

    def notify_xml(self, order: Order, openid: str, transaction_id: str | None = None) -> bytes:
        data = {
            "appid": self.appid, "mch_id": self.mch_id, "nonce_str": secrets.token_hex(16),
            "result_code": "SUCCESS", "return_code": "SUCCESS", "openid": openid,
            "is_subscribe": "N", "trade_type": "JSAPI", "bank_type": "OTHERS",
            "total_fee": str(order.amount_fen), "cash_fee": str(order.amount_fen),
            "fee_type": "CNY", "out_trade_no": order.no,
            "transaction_id": transaction_id or "sbx" + order.no,
            "time_end": utcnow().strftime("%Y%m%d%H%M%S"),
        }
        return dict_to_xml(data, calculate_signature(data, self.api_key)).encode()

    def pay(self, order: Order, openid: str,
            notify: Callable[[bytes], tuple[bool, str, int]]) -> None:
        """Pay by handing the signed notification to `notify` (the notify endpoint's function);
        raises InvalidState if it refuses it."""
        ok, message, _status = notify(self.notify_xml(order, openid))
        if not ok:
            raise InvalidState(f"the sandbox payment was refused ({message})", code="payment_refused")

    def query(self, order_no: str) -> QueryResult:
        return QueryResult("NOTPAY")

    def refund(self, order_no: str, refund_no: str, total_fee: int, refund_fee: int) -> str:
        return "sandbox_refund_" + refund_no
