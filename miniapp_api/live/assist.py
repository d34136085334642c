"""Live routes: team assist (issue 13). A shopper starts an assist for a pinned product and
shares its token (a mini-program path, or the poster's QR code); a logged-in friend who enters the
live room through it helps once. The rule is models/assist.py and models/assist_help.py.

- POST /live/sessions/<id>/assists {"sku": code}: start (201), or the open one again (200).
- GET  /live/sessions/<id>/assists: my assists in the session.
- GET  /live/assists/<token>: public progress (no personal data, no login).
- POST /live/assists/<token>/help: count me as a helper (only while the session is live).
  Refusals write nothing: 403 self_assist / same_person / not_new_user, 404 assist_not_found,
  409 session_not_live / already_helped (helping twice is refused, not silently repeated) /
  assist_complete / help_limit_reached; 403 risk_refused: the helper shares the starter's device
  or network (models/risk_gate.py: assist_farming; the starter's are remembered at start).
- GET  /live/assists/<token>/poster.png: a share poster with the link as a QR code.
"""

from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from bots import poster
from miniapp_api.api import BEARER, ERRORS, _iso, _json_object_body
from miniapp_api.auth import current_user
from miniapp_api.deps import runtime
from miniapp_api.errors import ErrorOut
from miniapp_api.risk_edge import request_edge
from miniapp_api.schemas import NO_NUL, Id, _strict
from models import assist, risk_gate

bp = APIBlueprint("live_assist", __name__, url_prefix="/api/v1")
bp.before_request(_json_object_body)
tag = Tag(name="live-assist", description="live commerce: team assist (invite friends to unlock a price)")
SHARE_CODE = r"^[A-Za-z0-9_-]{1,64}$"  # an assist share token (unknown ones: 404)
HELP_ERRORS = {**ERRORS, 403: ErrorOut}
PNG_RESPONSE = {"description": "the poster, a PNG image",
                "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}


class AssistSessionPath(BaseModel):
    session_id: Id


class AssistTokenPath(BaseModel):
    token: str = Field(pattern=SHARE_CODE, description="the assist's share token")


class AssistStartIn(BaseModel):
    model_config = _strict
    sku: str = Field(min_length=1, max_length=64, pattern=NO_NUL, description="SKU code of a pinned product")


class MyAssistOut(BaseModel):
    token: str
    session_id: int
    pin_id: int
    sku: str
    helpers: int
    helpers_needed: int
    price_fen: int = Field(description="the unit price once unlocked")
    unlocked: bool
    unlocked_until: str | None = Field(description="UTC; the unlocked price holds until then")
    usable: bool = Field(description="unlocked, unused and inside its window: buy now at price_fen")
    order_id: int | None = Field(description="the order that used it")
    share_path: str = Field(description="mini-program page to share")


class MyAssistsOut(BaseModel):
    assists: list[MyAssistOut]


class AssistProgressOut(BaseModel):
    session_id: int
    session_state: str
    session_title: str
    sku: str
    product: str
    retail_fen: int
    price_fen: int
    helpers: int
    helpers_needed: int
    new_users_only: bool
    unlocked: bool
    unlocked_until: str | None
    usable: bool
    accepting_help: bool = Field(description="the session is live and the assist still needs helpers")


class AssistHelpOut(BaseModel):
    helpers: int
    helpers_needed: int
    unlocked: bool
    unlocked_until: str | None


def policy() -> assist.AssistPolicy:
    s = runtime().settings
    return assist.AssistPolicy(window_s=s.LIVE_ASSIST_WINDOW_S,
                               max_helps_per_session=s.LIVE_ASSIST_MAX_HELPS_PER_SESSION)


@bp.post("/live/sessions/<int:session_id>/assists", tags=[tag], security=BEARER,
         responses={200: MyAssistOut, 201: MyAssistOut, **ERRORS})
def start_assist(path: AssistSessionPath, body: AssistStartIn):  # noqa: ANN201
    """Start an assist for a pinned product with an assist offer (scheduled or live session):
    201 with its share path; 200 with the open one when there is one already. 404
    live_not_found / not_pinned / no_assist_offer, 409 session_closed."""
    rt = runtime()
    ip, device = request_edge()
    made, created = risk_gate.start_assist(rt.redis, rt.settings, current_user().id, path.session_id, body.sku,
                                           ip=ip, device=device)
    return assist.mine(made, body.sku), 201 if created else 200


@bp.get("/live/sessions/<int:session_id>/assists", tags=[tag], security=BEARER,
        responses={200: MyAssistsOut, 400: ErrorOut, 401: ErrorOut, 404: ErrorOut})
def my_assists(path: AssistSessionPath):  # noqa: ANN201
    """My open assists in this session (an unknown session has none)."""
    return {"assists": assist.state_for(current_user().id, path.session_id)}


@bp.get("/live/assists/<token>", tags=[tag], responses={200: AssistProgressOut, 400: ErrorOut, 404: ErrorOut})
def progress(path: AssistTokenPath):  # noqa: ANN201
    """An assist's public progress: the product, the goal, how many helped; nobody's identity."""
    return assist.public_progress(path.token)


@bp.post("/live/assists/<token>/help", tags=[tag], security=BEARER, responses={200: AssistHelpOut, **HELP_ERRORS})
def help_(path: AssistTokenPath):  # noqa: ANN201
    """Help a friend's assist on entering the live room (see the module's list of refusals)."""
    rt = runtime()
    ip, device = request_edge()
    done = risk_gate.help_assist(rt.redis, rt.settings, current_user().id, path.token, ip=ip, device=device,
                                 policy=policy())
    return AssistHelpOut(helpers=done.helpers, helpers_needed=done.helpers_needed,
                         unlocked=done.unlocked_until is not None,
                         unlocked_until=_iso(done.unlocked_until)).model_dump()


@bp.get("/live/assists/<token>/poster.png", tags=[tag],
        responses={200: PNG_RESPONSE, 400: ErrorOut, 404: ErrorOut})
def assist_poster(path: AssistTokenPath):  # noqa: ANN201
    """A share poster: the product, the unlocked price, the share link as a QR code."""
    facts = assist.share_facts(path.token)
    settings = runtime().settings
    card = poster.ProductCard(
        title=poster.drawable(facts["product"]) or facts["sku"],
        subtitle=poster.drawable(f"邀请{facts['helpers_needed']}位好友进直播间助力解锁"),
        price_fen=facts["price_fen"], link=f"{settings.PUBLIC_BASE_URL.rstrip('/')}/api/v1/live/assists/{path.token}",
        creator=poster.drawable(facts["creator_name"]) or "千星主播", code=facts["creator_code"])
    png, key = poster.cached(card, settings.POSTER_DIR)
    return Response(png, mimetype="image/png", headers={"Cache-Control": "public, max-age=300", "ETag": key})
