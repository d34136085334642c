"""Live sessions in the mini-program API: a creator schedules, lists, reschedules, cancels,
starts and ends sessions (/api/v1/creator/live...), and anyone reads a session's public page
(/api/v1/live/sessions/<id>; a login adds what is mine). Times in requests are ISO 8601, with
an offset or read in settings.LIVE_TIMEZONE; answers give them in UTC and in that zone.
Ending a session queues the settlement of its orders (after the commit)."""

from __future__ import annotations

from flask import request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from miniapp_api.api import BEARER, ERRORS, _iso, _json_object_body
from miniapp_api.auth import current_user
from miniapp_api.deps import runtime
from miniapp_api.live.sessions_schemas import (
    CancelIn,
    LiveIn,
    LiveOut,
    LivePath,
    RescheduleIn,
    SessionIn,
    SessionList,
    SessionListQuery,
    SessionOut,
    SessionPageOut,
    SessionPath,
)
from models import live, live_page, live_planning, network, reservations
from models.live_rules import to_utc
from models.network import Creator
from tasks import queues

bp = APIBlueprint("live_sessions", __name__, url_prefix="/api/v1")
bp.before_request(_json_object_body)
tag = Tag(name="live-sessions", description="live commerce: sessions")
OPTIONAL_BEARER = [{"bearer": []}, {}]  # anonymous readers get the public part


def _me() -> Creator:
    """The logged-in user's creator profile; 401 without a session, 404 not_a_creator."""
    return network.creator_of(current_user().id)


def _tz() -> str:
    return runtime().settings.LIVE_TIMEZONE


def _session_out(session: live.LiveSession, queued: bool = False) -> dict:
    view = live_page.session_view(session, _tz())
    return SessionOut(**view, reservations=reservations.count(session.id), settlement_queued=queued).model_dump()


def _plain(part: BaseModel | None) -> dict | None:
    """A typed part of the plan as the dict its area's parser reads."""
    return part.model_dump() if part is not None else None


def _live_out(session: live.LiveSession, queued: bool = False) -> dict:
    return LiveOut(id=session.id, title=session.title, state=session.state,
                   started_at=_iso(session.started_at), ended_at=_iso(session.ended_at),
                   settlement_queued=queued).model_dump()


@bp.post("/creator/live", tags=[tag], security=BEARER, responses={201: LiveOut, **ERRORS})
def start_live(body: LiveIn):  # noqa: ANN201
    """Go live now, unplanned: orders placed with this session's id as `live` count as live GMV."""
    return _live_out(live.start_live(_me(), body.title)), 201


@bp.post("/creator/live/<int:live_id>/end", tags=[tag], security=BEARER, responses={200: LiveOut, **ERRORS})
def end_live(path: LivePath):  # noqa: ANN201
    """End my live session; its orders are settled right after (ending twice is harmless).
    Errors: live_not_found (404), live_not_started (a scheduled session: cancel it),
    live_cancelled (409)."""
    session, ended_now = live.end_live(_me(), path.live_id)
    if ended_now:
        queues.settle_live(session.id)  # after the commit, as every enqueue
    return _live_out(session, ended_now)


@bp.post("/creator/live/sessions", tags=[tag], security=BEARER, responses={201: SessionOut, **ERRORS})
def schedule_session(body: SessionIn):  # noqa: ANN201
    """Schedule a session with its pinned products (each with an optional slot, price ladder
    and assist offer) and an optional reservation lottery. Errors (400, nothing written):
    invalid_title, live_start_past, live_start_too_far, invalid_expected_minutes,
    invalid_cover_url, too_many_pins, duplicate_pin, unknown_sku, invalid_slot, and the codes of
    the ladder, assist and lottery rules."""
    tz = _tz()
    spec = live_planning.SessionSpec(
        title=body.title, scheduled_at=to_utc(body.scheduled_at, tz), expected_minutes=body.expected_minutes,
        cover_url=body.cover_url, lottery=_plain(body.lottery),
        pins=[live_planning.PinSpec(sku_code=p.sku, slot_at=to_utc(p.slot_at, tz) if p.slot_at else None,
                                    ladder=_plain(p.ladder), assist=_plain(p.assist)) for p in body.pins])
    session = live_planning.schedule(_me(), spec, max_pins=runtime().settings.LIVE_MAX_PINS)
    return _session_out(session), 201


@bp.get("/creator/live/sessions", tags=[tag], security=BEARER, responses={200: SessionList, **ERRORS})
def my_sessions(query: SessionListQuery):  # noqa: ANN201
    """My sessions, newest first, with their reservation counts."""
    found = live_page.creator_sessions(_me(), _tz(), limit=query.limit, before_id=query.before_id)
    next_id = found[-1]["id"] if len(found) == query.limit else None
    return {"sessions": [SessionOut(**s).model_dump() for s in found], "next_before_id": next_id}


@bp.post("/creator/live/sessions/<int:session_id>/reschedule", tags=[tag], security=BEARER,
         responses={200: SessionOut, **ERRORS})
def reschedule_session(path: SessionPath, body: RescheduleIn):  # noqa: ANN201
    """Move my scheduled session (its product slots move with it); everyone who reserved is
    told. Errors: live_start_past, live_start_too_far (400), live_not_found (404),
    live_already_started, live_ended, live_cancelled (409)."""
    session = live.reschedule(_me(), path.session_id, to_utc(body.scheduled_at, _tz()))
    return _session_out(session)


@bp.post("/creator/live/sessions/<int:session_id>/cancel", tags=[tag], security=BEARER,
         responses={200: SessionOut, **ERRORS})
def cancel_session(path: SessionPath, body: CancelIn):  # noqa: ANN201
    """Cancel my scheduled session; everyone who reserved is told (cancelling twice is
    harmless). Errors: live_not_found (404), live_already_started, live_ended (409)."""
    return _session_out(live.cancel(_me(), path.session_id, reason=body.reason))


@bp.post("/creator/live/sessions/<int:session_id>/start", tags=[tag], security=BEARER,
         responses={200: SessionOut, **ERRORS})
def start_session(path: SessionPath):  # noqa: ANN201
    """My scheduled session goes live now (starting twice is harmless). Errors:
    live_not_found (404), live_ended, live_cancelled (409)."""
    return _session_out(live.go_live(_me(), path.session_id))


@bp.get("/live/sessions/<int:session_id>", tags=[tag], security=OPTIONAL_BEARER,
        responses={200: SessionPageOut, **ERRORS})
def session_page(path: SessionPath):  # noqa: ANN201
    """A session's public page: the session, its creator, its pinned products with the current
    tier price and what is left at it, the reservation count and the lottery and open polls;
    with a login also whether I reserved and my assists (a bad token is 401, no token is
    anonymous). Errors: live_not_found (404)."""
    user_id = current_user().id if request.headers.get("Authorization") else None
    return SessionPageOut(**live_page.public_page(path.session_id, user_id, _tz())).model_dump()
