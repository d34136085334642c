"""The reservation lottery in the mini-program API (issue 13), public and read-only: a session's
lottery (terms, prize, the seed's hash published at scheduling, state, and after the draw the
seed, the list hash and the winners), and the public reservation list it was drawn from, paged
by id. With both, anyone recomputes the draw (models/lottery_draw.py; `qianxing live
verify-draw` does it from these two routes only)."""

from __future__ import annotations

from typing import Literal

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from miniapp_api.api import _json_object_body
from miniapp_api.errors import ErrorOut
from miniapp_api.schemas import CachedSchema
from models import lottery
from models.errors import NotFound

bp = APIBlueprint("live_lottery", __name__, url_prefix="/api/v1")
bp.before_request(_json_object_body)
tag = Tag(name="live-lottery", description="live commerce: the verifiable reservation lottery")


class LotteryPath(BaseModel):
    session_id: int = Field(ge=1, le=2**62)


class PageQuery(CachedSchema):
    after: int = Field(default=0, ge=0, le=2**62, description="the last reservation id of the previous page")
    limit: int = Field(default=lottery.PAGE_MAX, ge=1, le=lottery.PAGE_MAX)


class PrizeOut(BaseModel):
    sku: str
    name: str


class LotteryOut(BaseModel):
    session_id: int
    threshold: int = Field(description="reservations needed for a draw")
    prizes: int
    prize: PrizeOut
    seed_hash: str = Field(description="SHA-256 (hex) of the secret seed, published at scheduling")
    state: Literal["pending", "drawn", "below_threshold", "cancelled"] = Field(
        description="below_threshold: fewer reservations than the threshold at T-0, no draw")
    reservations: int = Field(description="the list's length at the draw (now, while pending)")
    seed: str | None = Field(description="the seed (64 hex characters), once the lottery closed")
    list_hash: str | None = Field(description="SHA-256 of the ascending reservation ids joined by \\n")
    winners: list[int] = Field(description="winning reservation ids by rank")
    drawn_at: str | None


class ReservationPage(BaseModel):
    ids: list[int] = Field(description="reservation ids, ascending")
    next_after: int | None = Field(description="`after` for the next page; null: this was the last")


@bp.get("/live/sessions/<int:session_id>/lottery", tags=[tag],
        responses={200: LotteryOut, 404: ErrorOut})
def lottery_state(path: LotteryPath):  # noqa: ANN201
    """A session's reservation lottery (404 lottery_not_found: the session has none). The draw
    is documented in models/lottery_draw.py; everything it needs is public here."""
    state = lottery.public_state(path.session_id)
    if state is None:
        raise NotFound(f"live session {path.session_id} has no lottery", code="lottery_not_found")
    return LotteryOut(**state).model_dump()


@bp.get("/live/sessions/<int:session_id>/lottery/reservations", tags=[tag],
        responses={200: ReservationPage, 400: ErrorOut, 404: ErrorOut})
def lottery_reservations(path: LotteryPath, query: PageQuery):  # noqa: ANN201
    """The public reservation list of a session with a lottery: ids after `after`, ascending,
    `limit` at a time (ids only: who reserved is not public)."""
    ids = lottery.public_reservations(path.session_id, query.after, query.limit)
    return {"ids": ids, "next_after": ids[-1] if len(ids) == query.limit else None}
