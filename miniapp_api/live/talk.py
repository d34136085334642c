"""Model-backed coaching for creators (issue 16), in the mini-program API:

- GET /api/v1/creator/live/<id>/talk-track: the talk track of my session (scheduled or live):
  opening, one part per pinned product with its tier prices, the welfare item, closing
  (content_ai/live_tracks.py; `source` says whether the model or the templates wrote it).
  Errors: live_not_found (404, also another creator's session), live_ended / live_cancelled
  (409).
- GET /api/v1/creator/funnel/hint: my funnel (plays -> live entries -> orders) against the
  median of creators of my star level, the weakest step and one action
  (models/funnel_compare.py, content_ai/funnel_hint.py).

A model that stalls, fails or answers garbage costs at most the provider's timeout, and the
templates answer; the answer's shape is the same either way."""

from __future__ import annotations

from typing import Literal

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from content_ai import funnel_hint, live_tracks
from miniapp_api.api import BEARER, _json_object_body
from miniapp_api.auth import current_user
from miniapp_api.deps import runtime
from miniapp_api.errors import ErrorOut
from miniapp_api.live.sessions_schemas import SessionPath
from models import funnel_compare, live_content, network
from models.network import Creator

bp = APIBlueprint("live_talk_api", __name__, url_prefix="/api/v1")
bp.before_request(_json_object_body)
tag = Tag(name="creator-coaching", description="talk tracks for live sessions and the funnel hint")
Source = Literal["model", "offline"]


class TalkSectionOut(BaseModel):
    kind: Literal["opening", "product", "welfare", "closing"]
    text: str
    sku: str
    name: str


class TalkTrackOut(BaseModel):
    session_id: int
    title: str
    source: Source
    sections: list[TalkSectionOut]


class FunnelPeersOut(BaseModel):
    count: int
    plays: int
    entry_bp: int
    order_bp: int


class FunnelCompareOut(BaseModel):
    rank: int
    plays: int
    live_entries: int
    orders: int
    entry_bp: int
    order_bp: int
    weakest: Literal["plays", "entries", "orders"] | None
    peers: FunnelPeersOut


class FunnelHintOut(BaseModel):
    step: Literal["plays", "entries", "orders"] | None
    text: str
    source: Source
    funnel: FunnelCompareOut


def _me() -> Creator:
    """The logged-in user's creator profile; 401 without a session, 404 not_a_creator."""
    return network.creator_of(current_user().id)


@bp.get("/creator/live/<int:session_id>/talk-track", tags=[tag], security=BEARER,
        responses={200: TalkTrackOut, 400: ErrorOut, 401: ErrorOut, 404: ErrorOut, 409: ErrorOut})
def talk_track(path: SessionPath):  # noqa: ANN201
    """The talk track of my scheduled or live session."""
    rt, me = runtime(), _me()
    facts = live_content.talk_facts(path.session_id, rt.settings.LIVE_TIMEZONE, creator=me)
    return live_tracks.talk_track(facts, ai=rt.ai, settings=rt.settings, creator_id=me.id).as_dict()


@bp.get("/creator/funnel/hint", tags=[tag], security=BEARER,
        responses={200: FunnelHintOut, 401: ErrorOut, 404: ErrorOut})
def funnel_hint_route():  # noqa: ANN201
    """My funnel's weakest step against creators of my star level, and one action."""
    rt, me = runtime(), _me()
    compared = funnel_compare.compare(me, redis=rt.redis)
    return funnel_hint.funnel_hint(compared, ai=rt.ai, settings=rt.settings, creator_id=me.id).as_dict()
