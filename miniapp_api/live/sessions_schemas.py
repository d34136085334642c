"""Request and response models of the live-session routes (miniapp_api/live/sessions.py)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

from miniapp_api.schemas import NO_NUL, Absent, CachedSchema, Id, JsonInt, _integral, _no_default, _strict

TIME_DOC = "ISO 8601; with an offset, or without one read in LIVE_TIMEZONE (Asia/Shanghai)"
State = Literal["scheduled", "live", "ended", "cancelled"]


class LiveIn(BaseModel):
    model_config = _strict
    title: str = Field(default="", max_length=120, pattern=NO_NUL)


class LivePath(BaseModel):
    live_id: Id


class LiveOut(BaseModel):
    id: int
    title: str
    state: Literal["live", "ended"]
    started_at: str
    ended_at: str | None
    settlement_queued: bool = Field(default=False, description="ending queued its orders' settlement")


MAX_PINS = 100  # settings.LIVE_MAX_PINS is at most this (a plan must fit in MAX_BODY_BYTES)
# A JSON integer within bounds (2.0 is 2). Prices below 0 and counts of 0 or less are left to the
# ladder's rule, which names them (negative_price, zero_units).
Fen = Annotated[int, Field(ge=-(10**9), le=10**9), BeforeValidator(_integral)]
Count = Annotated[int, Field(ge=-(10**9), le=10**9), BeforeValidator(_integral)]
WindowS = Annotated[int, Field(ge=60, le=86_400), BeforeValidator(_integral)]


class TierUnitsIn(BaseModel):
    model_config = _strict
    units: Count
    price_fen: Fen


class TierRangeIn(BaseModel):
    model_config = _strict
    first: Count = Field(description="the first buyer of the tier, 1-based")
    last: Count = Field(description="its last buyer, inclusive")
    price_fen: Fen


class LadderTiersIn(BaseModel):
    """First N at price A, next M at price B, ...: tiers in order, each {units, price_fen} or
    {first, last, price_fen}."""
    model_config = _strict
    tiers: list[TierUnitsIn | TierRangeIn] = Field(min_length=1, max_length=20)


class StepIn(BaseModel):
    model_config = _strict
    start_fen: Fen
    drop_fen: Fen
    every: Count
    floor_fen: Fen
    units: Count


class LadderStepIn(BaseModel):
    """The price falls by drop_fen every `every` buyers, down to floor_fen."""
    model_config = _strict
    step: StepIn


class AssistOfferIn(BaseModel):
    """Team assist: `helpers_needed` friends unlock `price_fen` for `window_s` seconds."""
    model_config = _strict
    helpers_needed: JsonInt = Field(ge=1, le=20)
    price_fen: JsonInt = Field(ge=0, le=10**9, description="below the retail price")
    window_s: WindowS | None = None
    new_users_only: bool = False


class LotteryIn(BaseModel):
    """Seed 001: `threshold` reservations -> `prizes` free orders of `prize_sku`."""
    model_config = _strict
    threshold: JsonInt = Field(ge=1, le=10_000_000)
    prizes: JsonInt = Field(ge=1, le=1000, description="at most the threshold")
    prize_sku: str = Field(min_length=1, max_length=64, pattern=NO_NUL)


class PinIn(BaseModel):
    model_config = _strict
    sku: str = Field(min_length=1, max_length=64, pattern=NO_NUL, description="the SKU code")
    slot_at: dt.datetime | None = Field(default=None, strict=False,
                                        description=f"when the product is put up ({TIME_DOC})")
    ladder: LadderTiersIn | LadderStepIn | None = Field(default=None, description="the session price ladder")
    assist: AssistOfferIn | None = Field(default=None, description="the team-assist offer")


class SessionIn(BaseModel):
    model_config = _strict
    title: str = Field(min_length=1, max_length=120, pattern=NO_NUL)
    scheduled_at: dt.datetime = Field(strict=False, description=f"the planned start, in the future ({TIME_DOC})")
    expected_minutes: JsonInt = Field(default=60, ge=1, le=720)
    cover_url: str = Field(default="", max_length=500, pattern=r"^(https://[^\s\x00]+)?$",
                           description="an https image URL, or empty")
    pins: list[PinIn] = Field(default_factory=list, max_length=MAX_PINS,
                              description="pinned products, at most LIVE_MAX_PINS")
    lottery: LotteryIn | None = Field(default=None, description="the reservation lottery")


class RescheduleIn(BaseModel):
    model_config = _strict
    scheduled_at: dt.datetime = Field(strict=False, description=f"the new start, in the future ({TIME_DOC})")


class CancelIn(BaseModel):
    model_config = _strict
    reason: str = Field(default="", max_length=200, pattern=NO_NUL)


class SessionPath(BaseModel):
    session_id: Id


class SessionListQuery(CachedSchema):
    limit: int = Field(default=20, ge=1, le=50)
    before_id: Id | Absent = Field(default=None, json_schema_extra=_no_default)


class PinOut(BaseModel):
    id: int
    sku: str
    name: str
    retail_price_fen: int
    position: int
    slot_at: str | None
    slot_at_local: str | None


class SessionOut(BaseModel):
    id: int
    title: str
    state: State
    timezone: str = Field(description="the zone of the *_local times")
    scheduled_at: str | None = Field(description="UTC; null: went live unplanned")
    scheduled_at_local: str | None
    started_at: str | None
    started_at_local: str | None
    ended_at: str | None
    ended_at_local: str | None
    cancelled_at: str | None
    cancelled_at_local: str | None
    expected_minutes: int
    cover_url: str
    plan_version: int
    pins: list[PinOut]
    reservations: int
    settlement_queued: bool = Field(default=False, description="ending queued its orders' settlement")


class SessionList(BaseModel):
    sessions: list[SessionOut]
    next_before_id: int | None


class CreatorRef(BaseModel):
    name: str
    code: str


class PagePinOut(PinOut):
    offer: dict[str, Any] | None = Field(description="the current tier price and what is left at it; null: no ladder")


class SessionPageOut(BaseModel):
    id: int
    title: str
    state: State
    timezone: str
    scheduled_at: str | None
    scheduled_at_local: str | None
    started_at: str | None
    started_at_local: str | None
    ended_at: str | None
    ended_at_local: str | None
    cancelled_at: str | None
    cancelled_at_local: str | None
    expected_minutes: int
    cover_url: str
    plan_version: int
    creator: CreatorRef
    pins: list[PagePinOut]
    reservations: int
    reserved: bool | None = Field(description="whether I reserved it; null without a login")
    assists: list[dict[str, Any]] = Field(description="my assists in this session")
    lottery: dict[str, Any] | None = Field(description="the reservation lottery; null: none")
    polls: list[dict[str, Any]] = Field(description="the open polls")
