"""What the risk engine learns from a mini-program request (issue 15): the client IP as the app
sees it and the optional `X-Device-Id` header, recorded as keyed hashes by
models/risk_signals.py. Recording never fails the request it rides on: every helper here
swallows and logs (the event and the error's kind, never a raw value), and does nothing while
RISK_ENABLED is off."""

from __future__ import annotations

import datetime as dt
import logging

from flask import has_request_context, request

from miniapp_api.deps import runtime
from models import risk_signals
from models.orders import Order
from models.risk_tables import SignalEvent

log = logging.getLogger(__name__)

DEVICE_HEADER = "X-Device-Id"


def request_edge() -> tuple[str | None, str | None]:
    """(client IP as the app sees it (ProxyFix honours TRUSTED_PROXIES), the raw X-Device-Id
    header or None) of the current request."""
    if not has_request_context():
        return None, None
    return request.remote_addr, request.headers.get(DEVICE_HEADER)


def signal(event: str, *, user_id: int | None, order_id: int | None = None, ref: str | None = None,
           at: dt.datetime | None = None) -> None:
    """Record one edge event of the current request (its IP and device) when the engine is on."""
    try:
        settings = runtime().settings
        if not settings.RISK_ENABLED:
            return
        ip, device = request_edge()
        risk_signals.record(settings.RISK_HMAC_KEY or "", event, user_id=user_id, ip=ip, device=device,
                            order_id=order_id, ref=ref, at=at)
    except Exception as exc:  # noqa: BLE001 - a signal is never worth a failed reply
        log.warning("risk signal: %s not recorded (%s)", event, type(exc).__name__)


def order_placed(order: Order) -> None:
    """The 'order' signal of an order this request just created (its buyer, at its placing time)."""
    signal(SignalEvent.ORDER.value, user_id=order.user_id, order_id=order.id, at=order.created_at)


def payment_seen(order_id: int, payer_openid: str | None) -> None:
    """The payer identity of a confirmed payment (the notification's payer openid), hashed into
    the order's signal row."""
    try:
        settings = runtime().settings
        if settings.RISK_ENABLED:
            risk_signals.record_payment(settings.RISK_HMAC_KEY or "", order_id, payer_openid)
    except Exception as exc:  # noqa: BLE001 - a signal is never worth a refused notification
        log.warning("risk signal: payment not recorded (%s)", type(exc).__name__)
