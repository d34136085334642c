"""Webhooks from platforms. The signature is checked before anything else is read."""

from __future__ import annotations

import logging
from typing import Any
from xml.parsers.expat import ExpatError

import xmltodict
from flask import Blueprint, Response, request
from wechatpy.exceptions import InvalidSignatureException
from werkzeug.exceptions import HTTPException

from models.payments import PaymentRejected, confirm_payment
from qianxing.wiring import runtime
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
    log.exception("webhook: unhandled error")
    return _answer(False, "internal error; retry later", 500)


def _well_formed(body: bytes) -> bool:
    """A flat <xml> document of text fields, without DTDs or entities. Anything else
    (garbage, a bare <xml/>, nested elements, an unknown encoding) is refused before
    wechatpy sees it, since wechatpy only guards against some parse errors."""
    try:
        doc: Any = xmltodict.parse(body, disable_entities=True)
    except (ExpatError, ValueError, LookupError, xmltodict.ParsingInterrupted):
        return False
    fields = doc.get("xml") if isinstance(doc, dict) else None
    return isinstance(fields, dict) and bool(fields) and all(
        v is None or isinstance(v, str) for v in fields.values())


@webhooks.post("/wechatpay/notify")
def wechatpay_notify() -> Response:
    """WeChat Pay v2 payment result. Duplicates (WeChat retries for ~24 h, sometimes
    concurrently) are answered SUCCESS again and change nothing."""
    rt = runtime()
    body = request.get_data()
    if not _well_formed(body):
        log.warning("wechatpay notify: malformed body from %s", request.remote_addr)
        return _answer(False, "invalid XML", 400)
    try:
        data = rt.wechatpay.parse_payment_result(body)
    except InvalidSignatureException:
        log.warning("wechatpay notify: bad signature from %s", request.remote_addr)
        return _answer(False, "invalid signature", 400)
    except (ValueError, TypeError):  # signed, but total_fee / cash_fee / coupon_* not integers
        log.warning("wechatpay notify: non-integer amount from %s", request.remote_addr)
        return _answer(False, "invalid amount", 400)
    settings = rt.settings
    if data.get("appid") != settings.WECHAT_APPID or data.get("mch_id") != settings.WECHATPAY_MCH_ID:
        return _answer(False, "appid or mch_id mismatch", 400)
    if data.get("return_code") != "SUCCESS" or data.get("result_code") != "SUCCESS":
        return _answer(True)  # a failed payment: nothing to record, stop the retries
    order_no, txn = data.get("out_trade_no"), data.get("transaction_id")
    total_fee = data.get("total_fee")
    if not order_no or not txn or not isinstance(total_fee, int) or len(str(txn)) > 64:
        return _answer(False, "missing out_trade_no, transaction_id or total_fee", 400)
    try:
        order_id, outcome = confirm_payment(order_no, txn, total_fee, source="wechatpay")
    except PaymentRejected as exc:
        log.warning("wechatpay notify rejected for %s: %s", order_no, exc.code)
        return _answer(False, exc.code, 400)
    dispatch_payment(order_id, outcome)
    return _answer(True)
