"""Webhooks from platforms. The signature is checked before anything else is read."""

from __future__ import annotations

import hmac
import logging
from typing import Any
from xml.parsers.expat import ExpatError

import xmltodict
from flask import Blueprint, Response, request
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.pay import WeChatPay, calculate_signature
from werkzeug.exceptions import HTTPException

from miniapp_api import risk_edge
from miniapp_api.deps import runtime
from models.db import is_connection_lost, once_more_if_lost
from models.payments import PaymentRejected, confirm_payment
from tasks.maintenance import dispatch_payment

log = logging.getLogger(__name__)
webhooks = Blueprint("webhooks", __name__, url_prefix="/webhooks")


def _answer(ok: bool, message: str = "OK", status: int = 200) -> Response:
    code = "SUCCESS" if ok else "FAIL"
    body = (f"<xml><return_code><![CDATA[{code}]]></return_code>"
            f"<return_msg><![CDATA[{message}]]></return_msg></xml>")
    return Response(body, status=status, mimetype="application/xml")


@webhooks.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    """WeChat Pay reads XML: oversized bodies (413) and the like are answered FAIL, not JSON."""
    return _answer(False, (exc.name or "error").lower(), exc.code or 500)


@webhooks.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    if is_connection_lost(exc):  # WeChat Pay retries a non-200; this is not our bug
        log.warning("webhook: database unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
        response = _answer(False, "database unavailable; retry later", 503)
        response.headers["Retry-After"] = "1"
        return response
    log.exception("webhook: unhandled error")
    return _answer(False, "internal error; retry later", 500)


def _fields(body: bytes) -> dict[str, str | None] | None:
    """The fields of a flat <xml> document of text fields, without DTDs or entities; None for
    anything else (garbage, a bare <xml/>, nested elements, an unknown encoding), refused
    before any field is trusted. The body is parsed once, here."""
    try:
        doc: Any = xmltodict.parse(body, disable_entities=True)
    except (ExpatError, ValueError, LookupError, xmltodict.ParsingInterrupted):
        return None
    fields = doc.get("xml") if isinstance(doc, dict) else None
    if isinstance(fields, dict) and fields and all(v is None or isinstance(v, str)
                                                  for v in fields.values()):
        return fields
    return None


# The integer fields of a payment result, as wechatpy's parse_payment_result converts them.
_INTEGER_FIELDS = ("total_fee", "settlement_total_fee", "cash_fee", "coupon_fee", "coupon_count")


def _payment_result(fields: dict[str, str | None], pay: WeChatPay) -> dict[str, Any]:
    """What wechatpy's parse_payment_result returns, from fields already parsed: the signature
    is wechatpy's calculate_signature over every field but `sign`, compared in constant time.
    Raises InvalidSignatureException, or ValueError for a signed non-integer amount."""
    unsigned = {k: v for k, v in fields.items() if k != "sign"}
    key = pay.sandbox_api_key if pay.sandbox else pay.api_key
    if not hmac.compare_digest(str(fields.get("sign") or ""), calculate_signature(unsigned, key)):
        raise InvalidSignatureException()
    data: dict[str, Any] = dict(fields)
    for name in _INTEGER_FIELDS:
        if data.get(name) is not None:
            data[name] = int(data[name])
    return data


@webhooks.post("/wechatpay/notify")
def wechatpay_notify() -> Response:
    """WeChat Pay v2 payment result. Duplicates (WeChat retries for ~24 h, sometimes
    concurrently) are answered SUCCESS again and change nothing."""
    ok, message, status = process_payment_notification(request.get_data(), request.remote_addr)
    return _answer(ok, message, status)


def process_payment_notification(body: bytes, sender: str | None = None, *,
                                 source: str = "wechatpay") -> tuple[bool, str, int]:
    """Everything the notify endpoint does with a body: parse, verify the signature, check the
    app and merchant, confirm the payment, dispatch its delivery (or refund). Returns
    (acknowledged, message, HTTP status). The sandbox provider pays through this very function
    in-process (`SandboxGateway.pay`), so a sandbox payment takes the production path."""
    rt = runtime()
    fields = _fields(body)
    if fields is None:
        log.warning("wechatpay notify: malformed body from %s", sender)
        return False, "invalid XML", 400
    try:
        data = _payment_result(fields, rt.wechatpay)
    except InvalidSignatureException:
        log.warning("wechatpay notify: bad signature from %s", sender)
        return False, "invalid signature", 400
    except ValueError:  # signed, but total_fee / cash_fee / coupon_* not integers
        log.warning("wechatpay notify: non-integer amount from %s", sender)
        return False, "invalid amount", 400
    settings = rt.settings
    if data.get("appid") != settings.WECHAT_APPID or data.get("mch_id") != settings.WECHATPAY_MCH_ID:
        return False, "appid or mch_id mismatch", 400
    if data.get("return_code") != "SUCCESS" or data.get("result_code") != "SUCCESS":
        return True, "OK", 200  # a failed payment: nothing to record, stop the retries
    order_no, txn = data.get("out_trade_no"), data.get("transaction_id")
    total_fee = data.get("total_fee")
    if not order_no or not txn or not isinstance(total_fee, int) or len(str(txn)) > 64:
        return False, "missing out_trade_no, transaction_id or total_fee", 400
    try:
        # idempotent (order row locked, transaction id and ledger key unique): should a lost
        # first attempt have committed after all, the second answers DUPLICATE and the
        # delivery sweep queues the order
        order_id, outcome = once_more_if_lost(confirm_payment, order_no, txn, total_fee, source=source)
    except PaymentRejected as exc:
        log.warning("wechatpay notify rejected for %s: %s", order_no, exc.code)
        return False, exc.code, 400
    dispatch_payment(order_id, outcome)
    risk_edge.payment_seen(order_id, data.get("openid") or data.get("sub_openid"))  # never fails the notification
    return True, "OK", 200
