"""Issue 14 routes: subscribe-message consents. After wx.requestSubscribeMessage the mini-program
reports how many promotion messages the shopper accepted; each allows one push (a wake-up
coupon, models/wakeup.py), so the count is kept, capped at SUBSCRIBE_CONSENT_MAX."""

from __future__ import annotations

from typing import Literal

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from miniapp_api.api import BEARER, _json_object_body
from miniapp_api.auth import current_user
from miniapp_api.deps import runtime
from miniapp_api.errors import ErrorOut
from miniapp_api.schemas import JsonInt, _strict
from models import wakeup

bp = APIBlueprint("shop_consent", __name__, url_prefix="/api/v1")
bp.before_request(_json_object_body)
tag = Tag(name="subscriptions", description="mini-program subscribe-message consents")


class ConsentIn(BaseModel):
    model_config = _strict
    topic: Literal["promo", "groupbuy"] = Field(
        description="what the messages are about (promo: coupons, wake-up; groupbuy: a team's result)")
    accepted: JsonInt = Field(ge=1, le=wakeup.ACCEPT_MAX,
                          description="messages the shopper accepted in wx.requestSubscribeMessage")


class ConsentOut(BaseModel):
    topic: str
    remaining: int = Field(description="messages of this topic the service may still send")


@bp.post("/me/subscriptions", tags=[tag], security=BEARER,
         responses={200: ConsentOut, 400: ErrorOut, 401: ErrorOut})
def accept(body: ConsentIn):  # noqa: ANN201
    """Record the subscribe messages the shopper just accepted (adds to what is left, capped)."""
    remaining = wakeup.accept_consent(current_user().id, body.topic, body.accepted,
                                      cap=runtime().settings.SUBSCRIBE_CONSENT_MAX)
    return ConsentOut(topic=body.topic, remaining=remaining).model_dump()
