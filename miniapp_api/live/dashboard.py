"""Live routes: the dashboard and live votes (issue 13).

- Viewers: POST /api/v1/live/sessions/<id>/heartbeat keeps a logged-in viewer online (entries
  also come from /api/v1/track live_entry events); POST /api/v1/live/polls/<id>/vote votes once;
  GET /api/v1/live/sessions/<id>/polls reads the session's polls with my vote.
- The creator: GET /api/v1/creator/live/sessions/<id>/dashboard (a JSON snapshot: cheap to
  poll every 1-2 s) and .../dashboard/stream (Server-Sent Events: one `dashboard` event per
  LIVE_DASHBOARD_STREAM_EVERY_S, for at most LIVE_DASHBOARD_STREAM_S, so a gunicorn thread is
  never held for long; the browser's EventSource reconnects by itself after `retry` ms; a
  session that is not live gets one event and the stream ends); opening and closing polls.

Figures come from Redis counters (models/live_dashboard.py) through models/live_board.py, never
from a scan of the orders."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from miniapp_api.api import BEARER, ERRORS, _json_object_body
from miniapp_api.auth import current_user
from miniapp_api.deps import runtime
from miniapp_api.errors import ErrorOut
from miniapp_api.live.dashboard_schemas import (
    DashboardOut,
    HeartbeatOut,
    PollIn,
    PollList,
    PollOut,
    PollPath,
    StreamQuery,
    VoteIn,
)
from miniapp_api.live.sessions_schemas import SessionPath
from models import live_board, live_dashboard, live_votes, network
from models.db import db, utcnow
from models.live import LiveState
from models.live_dashboard import DashboardPolicy
from models.network import Creator

log = logging.getLogger(__name__)
bp = APIBlueprint("live_dashboard_api", __name__, url_prefix="/api/v1")
bp.before_request(_json_object_body)
tag = Tag(name="live-dashboard", description="live commerce: dashboard, viewers and votes")
READ_ERRORS = {400: ErrorOut, 401: ErrorOut, 404: ErrorOut}
SSE_RESPONSE = {
    "description": "Server-Sent Events: `event: dashboard` with the DashboardOut JSON as `data`, one per "
                   "LIVE_DASHBOARD_STREAM_EVERY_S; the stream ends after LIVE_DASHBOARD_STREAM_S (or at once "
                   "when the session is not live) and the client reconnects after `retry` ms",
    "content": {"text/event-stream": {"schema": {  # one event
        "type": "object", "required": ["data"],
        "properties": {"event": {"type": "string", "enum": ["dashboard"]},
                       "data": {"type": "string", "contentMediaType": "application/json",
                                "description": "the DashboardOut JSON"},
                       "id": {"type": "string"}, "retry": {"type": "integer", "minimum": 1}}}}},
}


def _me() -> Creator:
    """The logged-in user's creator profile; 401 without a session, 404 not_a_creator."""
    return network.creator_of(current_user().id)


def _policy() -> DashboardPolicy:
    return DashboardPolicy.of(runtime().settings)


@bp.post("/live/sessions/<int:session_id>/heartbeat", tags=[tag], security=BEARER,
         responses={200: HeartbeatOut, **ERRORS})
def heartbeat(path: SessionPath):  # noqa: ANN201
    """I am still in the live room (send every 20-30 s): a viewer without a heartbeat or an
    entry for LIVE_VIEWER_TIMEOUT_S is no longer online. Errors: live_not_found (404),
    session_not_live (409)."""
    rt = runtime()
    online = live_dashboard.heartbeat(rt.redis, path.session_id, current_user().id, utcnow(),
                                      viewer_timeout_s=rt.settings.LIVE_VIEWER_TIMEOUT_S)
    return {"online": online}


@bp.get("/creator/live/sessions/<int:session_id>/dashboard", tags=[tag], security=BEARER,
        responses={200: DashboardOut, **READ_ERRORS})
def dashboard(path: SessionPath):  # noqa: ANN201
    """My session's dashboard now: online and peak viewers, unique viewers, orders placed and
    paid, GMV, buyers, conversion, reservations and turn-up, per product sales with the current
    tier price and stock, hints and polls. Cheap enough to poll every 1-2 s. Errors:
    live_not_found (404)."""
    return live_board.board(runtime().redis, path.session_id, creator=_me(), policy=_policy())


def _event(board: dict[str, Any], seq: int, retry_ms: int) -> str:
    head = f"retry: {retry_ms}\n" if seq == 0 else ""
    return f"{head}id: {seq}\nevent: dashboard\ndata: {json.dumps(board, ensure_ascii=False)}\n\n"


@bp.get("/creator/live/sessions/<int:session_id>/dashboard/stream", tags=[tag], security=BEARER,
        responses={200: SSE_RESPONSE, **READ_ERRORS})
def dashboard_stream(path: SessionPath, query: StreamQuery):  # noqa: ANN201
    """My session's dashboard as Server-Sent Events (the same JSON as .../dashboard), for
    `seconds` (default and at most LIVE_DASHBOARD_STREAM_S). Errors: live_not_found (404)."""
    rt, policy, creator = runtime(), _policy(), _me()
    settings, session_id = rt.settings, path.session_id
    first = live_board.board(rt.redis, session_id, creator=creator, policy=policy)  # a 404 before the stream
    lifetime = min(query.seconds or settings.LIVE_DASHBOARD_STREAM_S, settings.LIVE_DASHBOARD_STREAM_S)
    every = settings.LIVE_DASHBOARD_STREAM_EVERY_S
    db.close()  # the stream takes a pooled connection per event only, not for its whole life

    def events() -> Iterator[str]:
        deadline, board, seq = time.monotonic() + lifetime, first, 0
        while True:
            yield _event(board, seq, int(every * 1000))
            seq += 1
            if board["state"] != LiveState.LIVE or time.monotonic() + every > deadline:
                return
            time.sleep(every)
            try:
                with db.connection_context():
                    board = live_board.board(rt.redis, session_id, creator=creator, policy=policy)
            except Exception:  # noqa: BLE001 - end this stream; the client reconnects
                log.warning("live dashboard stream of session %s ended by an error", session_id, exc_info=True)
                return

    return Response(events(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@bp.post("/creator/live/sessions/<int:session_id>/polls", tags=[tag], security=BEARER,
         responses={201: PollOut, **ERRORS})
def open_poll(path: SessionPath, body: PollIn):  # noqa: ANN201
    """Open a poll in my live session: 2-6 distinct options, optionally closing by itself after
    `duration_s`. Errors: live_not_found (404), session_not_live, too_many_open_polls (409);
    nothing is written then."""
    creator = _me()
    spec = live_votes.parse_poll(body.question, body.options, body.duration_s)
    poll = live_votes.open_poll(creator, path.session_id, spec)
    return live_votes.results(poll.id), 201


@bp.post("/creator/live/polls/<int:poll_id>/close", tags=[tag], security=BEARER,
         responses={200: PollOut, **ERRORS})
def close_poll(path: PollPath):  # noqa: ANN201
    """Close my poll (closing twice is harmless). Errors: poll_not_found (404)."""
    creator = _me()
    poll, _ = live_votes.close_poll(creator, path.poll_id, actor=creator.actor)
    return live_votes.results(poll.id)


@bp.post("/live/polls/<int:poll_id>/vote", tags=[tag], security=BEARER, responses={200: PollOut, **ERRORS})
def vote(path: PollPath, body: VoteIn):  # noqa: ANN201
    """Vote once. Errors: poll_not_found, unknown_option (404), poll_closed, already_voted
    (409); nothing is written then."""
    return live_votes.vote(current_user().id, path.poll_id, body.option_id)


@bp.get("/live/sessions/<int:session_id>/polls", tags=[tag], security=BEARER,
        responses={200: PollList, **READ_ERRORS})
def polls(path: SessionPath):  # noqa: ANN201
    """The session's recent polls with their counts and my vote (the session page carries the
    same). Errors: live_not_found (404)."""
    return {"polls": live_votes.session_polls(path.session_id, current_user().id)}
