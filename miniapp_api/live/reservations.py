"""Live routes: reservations (issue 13). A shopper reserves a scheduled session from the
mini-program, with the subscribe-message consent the mini-program just asked for (one consent
is one reminder, LIVE_SUBSCRIBE_REMINDER_OFFSET's), and may withdraw it before the start."""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from miniapp_api.api import BEARER, _json_object_body
from miniapp_api.auth import current_user
from miniapp_api.errors import ErrorOut
from miniapp_api.live.sessions_schemas import SessionPath
from miniapp_api.schemas import _strict
from models import reservations

bp = APIBlueprint("live_reservations", __name__, url_prefix="/api/v1")
bp.before_request(_json_object_body)
tag = Tag(name="live-reservations", description="live commerce: reservations")
ERRORS = {400: ErrorOut, 401: ErrorOut, 404: ErrorOut, 409: ErrorOut}


class ReserveIn(BaseModel):
    model_config = _strict
    subscribe_consent: bool = Field(default=False, description="the user accepted the reminder's subscribe "
                                                               "message in wx.requestSubscribeMessage")


class ReservationOut(BaseModel):
    session_id: int
    reserved: bool
    created: bool = Field(description="false when this person had reserved before (any channel)")
    subscribe_consent: bool = Field(description="an unused subscribe consent is kept for the reminder")
    count: int = Field(description="reservations of the session")


@bp.post("/live/sessions/<int:session_id>/reservation", tags=[tag], security=BEARER,
         responses={200: ReservationOut, **ERRORS})
def reserve(path: SessionPath, body: ReserveIn):  # noqa: ANN201
    """Reserve a scheduled session (once per person; again with consent re-arms it). Errors:
    live_not_found (404), live_cancelled, live_ended, reservations_closed (409: started or its
    start has passed); nothing is written then."""
    found, created = reservations.reserve(current_user(), path.session_id, reservations.Channel.MINIAPP.value,
                                          wxa_consent=body.subscribe_consent)
    return ReservationOut(session_id=path.session_id, reserved=True, created=created,
                          subscribe_consent=found.wxa_consent,
                          count=reservations.count(path.session_id)).model_dump()


@bp.delete("/live/sessions/<int:session_id>/reservation", tags=[tag], security=BEARER,
           responses={200: ReservationOut, **ERRORS})
def withdraw(path: SessionPath):  # noqa: ANN201
    """Withdraw my reservation before the start (harmless when there is none); after the start
    the list is closed (409 reservations_closed)."""
    reservations.cancel(current_user(), path.session_id)
    return ReservationOut(session_id=path.session_id, reserved=False, created=False, subscribe_consent=False,
                          count=reservations.count(path.session_id)).model_dump()
