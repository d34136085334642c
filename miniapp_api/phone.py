"""The shopper's phone authorization (issue 15): the mini-program's getPhoneNumber button gives a
one-time code; WeChat's server API turns it into the number, and the risk engine keeps only its
keyed hash and three-digit segment (models/risk_signals.py `set_phone`). The number is never
stored, logged or sent back."""

from __future__ import annotations

import logging

import requests
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field
from wechatpy.exceptions import WeChatClientException

from miniapp_api import risk_edge, throttle
from miniapp_api.api import BEARER, RATE_LIMITED, _json_object_body
from miniapp_api.auth import current_user
from miniapp_api.deps import runtime
from miniapp_api.errors import ErrorOut
from miniapp_api.schemas import NO_NUL, _strict
from models import risk_signals
from models.errors import DomainError, InvalidInput
from models.risk_tables import SignalEvent

log = logging.getLogger(__name__)

bp = APIBlueprint("risk_phone", __name__, url_prefix="/api/v1")
bp.before_request(_json_object_body)
tag = Tag(name="me", description="the shopper's own account")

# WeChat's answers to a code it will not exchange (invalid, used or expired, missing).
_BAD_CODE = {40029, 40163, 41008, 40125, 45011}


class WeChatUnavailable(DomainError):
    code = "wechat_unavailable"
    status = 502


class PhoneIn(BaseModel):
    model_config = _strict
    code: str = Field(min_length=1, max_length=128, pattern=NO_NUL,
                      description="the code of the getPhoneNumber button's event (e.detail.code), valid once")


class PhoneOut(BaseModel):
    bound: bool = Field(description="the phone is linked to this account (for the risk checks)")
    phone_segment: str | None = Field(description="the number's first three digits (the number itself is never "
                                                   "returned); null when not bound")


@bp.post("/me/phone", tags=[tag], security=BEARER,
         responses={200: PhoneOut, 400: ErrorOut, 401: ErrorOut, 429: RATE_LIMITED, 502: ErrorOut})
@throttle.limit(throttle.Rule("phone:user", lambda **_: str(current_user().id),
                              lambda s: (s.RISK_PHONE_RATE_PER_USER, 3600)))
def bind_phone(body: PhoneIn):  # noqa: ANN201
    """Link the phone the shopper just authorized (wx getPhoneNumber) to their account. Only a
    keyed hash and the number segment are kept. 400 `invalid_phone_code` for a code WeChat
    refuses (each is valid once), 400 `invalid_phone` for a number that is not a mainland China
    mobile, 502 `wechat_unavailable` when WeChat cannot be asked; throttled per shopper
    (RISK_PHONE_RATE_PER_USER an hour). With the risk engine off (RISK_ENABLED) nothing is asked
    or kept: `bound` is false."""
    user = current_user()
    rt = runtime()
    if not rt.settings.RISK_ENABLED:
        return PhoneOut(bound=False, phone_segment=None).model_dump()
    try:
        info = rt.wechat.phone_number(body.code)
    except WeChatClientException as exc:
        if exc.errcode in _BAD_CODE:
            raise InvalidInput(f"WeChat refused the phone code (errcode {exc.errcode}); ask again",
                               code="invalid_phone_code") from None
        log.warning("getuserphonenumber failed: errcode %s", exc.errcode)
        raise WeChatUnavailable("WeChat could not give the phone number; try again") from None
    except requests.RequestException:
        raise WeChatUnavailable("WeChat could not be reached; try again") from None
    if str(info.get("countryCode") or "86") != "86":
        raise InvalidInput("only a mainland China mobile number can be linked", code="invalid_phone")
    linked = risk_signals.set_phone(rt.settings.RISK_HMAC_KEY or "", user.id, str(info.get("purePhoneNumber") or ""))
    risk_edge.signal(SignalEvent.PHONE.value, user_id=user.id)
    return PhoneOut(bound=True, phone_segment=linked.phone_seg).model_dump()
