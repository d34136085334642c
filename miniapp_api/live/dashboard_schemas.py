"""Request and response models of the live dashboard and vote routes (miniapp_api/live/dashboard.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field

from miniapp_api.schemas import Absent, CachedSchema, Id, JsonInt, _integral, _no_default, _strict
from models.live_votes import (
    MAX_DURATION_S,
    MAX_OPTIONS,
    MIN_DURATION_S,
    MIN_OPTIONS,
    OPTION_MAX,
    QUESTION_MAX,
    TRIMMED,
)


class PollPath(BaseModel):
    poll_id: Id


class HeartbeatOut(BaseModel):
    online: int = Field(description="viewers seen within LIVE_VIEWER_TIMEOUT_S")


class ProductSalesOut(BaseModel):
    sku_id: int
    sku: str
    name: str
    pin_id: int | None = Field(description="null: sold in the session without being pinned")
    slot_at: str | None = Field(description="planned moment to put it up (UTC)")
    units: int = Field(description="units sold (paid) in the session")
    gmv_fen: int
    price_fen: int | None = Field(description="current tier price; null without a ladder")
    tier: int | None
    left_at_tier: int | None
    left_total: int | None
    sold_out: bool


class HintOut(BaseModel):
    code: str
    text: str
    source: str = Field(description="rule (rules as data) or model")


class OptionOut(BaseModel):
    id: int
    position: int
    label: str
    votes: int


class PollOut(BaseModel):
    id: int
    session_id: int
    question: str
    options: list[OptionOut]
    total: int
    my_vote: int | None = Field(description="the option id I voted for")
    closed: bool
    opened_at: str
    closes_at: str | None


class PollList(BaseModel):
    polls: list[PollOut]


class DashboardOut(BaseModel):
    session_id: int
    title: str
    state: str
    as_of: str
    final: bool = Field(description="the reconciled figures of an ended session")
    complete: bool = Field(description="false while the counters are being rebuilt from the database")
    online: int
    peak_online: int
    unique_viewers: int
    orders_placed: int
    orders: int = Field(description="paid orders")
    gmv_fen: int
    buyers: int
    conversion_bp: int = Field(description="buyers / unique viewers, basis points")
    reservations: int
    turned_up: int = Field(description="viewers who had reserved")
    turnup_bp: int
    products: list[ProductSalesOut]
    hints: list[HintOut]
    polls: list[PollOut]


Seconds = Annotated[int, Field(ge=1, le=300, description="how long this stream lasts "
                                                         "(at most LIVE_DASHBOARD_STREAM_S)")]


class StreamQuery(CachedSchema):
    seconds: Seconds | Absent = Field(default=None, json_schema_extra=_no_default)


# Text without NUL, not blank, no white space at its ends: stored as typed (live_votes.TRIMMED).
Label = Annotated[str, Field(min_length=1, max_length=OPTION_MAX, pattern=TRIMMED)]


Duration = Annotated[int, Field(ge=MIN_DURATION_S, le=MAX_DURATION_S), BeforeValidator(_integral)]


class PollIn(BaseModel):
    model_config = _strict
    question: str = Field(min_length=1, max_length=QUESTION_MAX, pattern=TRIMMED)
    options: list[Label] = Field(min_length=MIN_OPTIONS, max_length=MAX_OPTIONS,
                                 json_schema_extra={"uniqueItems": True}, description="distinct answers")
    duration_s: Duration | None = Field(default=None, description="closes by itself after this many seconds; "
                                                                  "null: when I close it")


class VoteIn(BaseModel):
    model_config = _strict
    option_id: JsonInt = Field(ge=1, le=2**62)

