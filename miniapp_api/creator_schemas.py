"""Request and response models of the creator routes (/api/v1/creator/..., /api/v1/track)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from miniapp_api.schemas import NO_NUL, Absent, CachedSchema, Id, JsonInt, _no_default, _strict
from models.activity import EVENT_ID_PATTERN, MAX_COUNT, REF_PATTERN
from models.network import CODE_PATTERN

CODE = CODE_PATTERN.pattern
MAX_FEN = 10**12  # ten billion yuan: far above any real amount, far below 64-bit overflow


class JoinIn(BaseModel):
    model_config = _strict
    name: str | None = Field(default=None, max_length=64, pattern=NO_NUL,
                             description="display name; the nickname by default")
    invite_code: str | None = Field(default=None, pattern=CODE,
                                    description="the inviter's code; the first binding wins")
    via: Literal["miniapp", "typed"] = Field(default="miniapp",
                                             description="a mini-program share, or typed by hand")


class BindIn(BaseModel):
    model_config = _strict
    code: str = Field(pattern=CODE, description="the inviter's code")
    via: Literal["miniapp", "typed"] = "miniapp"


class ProfileOut(BaseModel):
    id: int
    code: str
    name: str
    rank: int = Field(description="star level; 0 before one-star")
    level_name: str
    parent_code: str | None
    bound_via: str | None
    ref: str = Field(description="what orders through this creator carry as `ref`")
    share_path: str = Field(description="mini-program page to share, carrying the ref")
    joined_at: str


class BalancesOut(BaseModel):
    pending_fen: int = Field(description="inside the refund window")
    available_fen: int = Field(description="can be withdrawn")
    withdrawing_fen: int = Field(description="requested, not yet paid out")
    credit_fen: int = Field(description="shopping credit")
    debt_fen: int = Field(description="owed to the platform after clawbacks; netted against earnings")


class EntryOut(BaseModel):
    id: int
    kind: str
    key: str
    memo: str
    bucket: Literal["pending", "available", "withdrawing", "credit"]
    amount_fen: int = Field(description="positive: money arriving in the bucket")
    order_id: int | None
    created_at: str


class StatementOut(BaseModel):
    entries: list[EntryOut]
    next_before_id: int | None = Field(description="pass as before_id for the next page; null at the end")


class LineOut(BaseModel):
    id: int
    order_id: int
    order_no: str
    kind: Literal["markup", "sale", "team1", "team2", "coupon"]  # coupon: negative, a creator's own coupon
    amount_fen: int
    state: str = Field(description="the order's settlement: pending, available, reversed, clawed_back")
    created_at: str


class CommissionList(BaseModel):
    lines: list[LineOut]
    next_before_id: int | None


class MemberOut(BaseModel):
    id: int
    code: str
    name: str
    rank: int
    gmv_fen: int
    orders: int
    team_size: int
    children: list[MemberOut] = Field(description="second level (empty on second-level members)")


class TeamOut(BaseModel):
    direct_size: int
    second_size: int
    direct_gmv_fen: int
    second_gmv_fen: int
    members: list[MemberOut]


class SkuPath(BaseModel):
    sku_code: str = Field(min_length=1, max_length=64)


class PriceIn(BaseModel):
    model_config = _strict
    markup_fen: JsonInt = Field(ge=0, le=MAX_FEN, description="added to retail; 0 removes the markup")


class PriceOut(BaseModel):
    sku: str
    markup_fen: int


class CreatorProductOut(BaseModel):
    sku: str
    name: str
    product: str
    retail_price_fen: int
    markup_fen: int
    max_markup_fen: int
    selling_price_fen: int
    commission_bp: int
    min_rank: int
    locked: bool
    ref: str


class CreatorProductList(BaseModel):
    products: list[CreatorProductOut]


class CreatorListQuery(CachedSchema):
    limit: int = Field(default=50, ge=1, le=500)
    before_id: Id | Absent = Field(default=None, json_schema_extra=_no_default)


class WithdrawIn(BaseModel):
    model_config = _strict
    amount_fen: JsonInt = Field(ge=1, le=MAX_FEN, description="taken from the available balance (fee included)")
    method: Literal["wallet", "credit"] = Field(description="WeChat wallet at T+1, or shopping credit at once")


class WithdrawalOut(BaseModel):
    id: int
    no: str
    method: Literal["wallet", "credit"]
    amount_fen: int
    fee_fen: int
    net_fen: int = Field(description="what arrives: amount - fee")
    state: Literal["review", "approved", "paying", "paid", "rejected", "failed"]
    requested_at: str
    due_at: str = Field(description="when a wallet payout goes out (T+1)")
    paid_at: str | None


class WithdrawalList(BaseModel):
    withdrawals: list[WithdrawalOut]
    next_before_id: int | None


class WithdrawalListQuery(CachedSchema):
    limit: int = Field(default=20, ge=1, le=100)
    before_id: Id | Absent = Field(default=None, json_schema_extra=_no_default)


class TrackEventIn(BaseModel):
    model_config = _strict
    id: str = Field(pattern=EVENT_ID_PATTERN.pattern, description="unique per event: a replay is a duplicate")
    creator: str = Field(pattern=CODE_PATTERN.pattern, description="the creator's code")
    type: Literal["video_play", "live_entry", "drama_play", "drama_click"] = Field(
        description="drama_play / drama_click (the click-through to the live room): ref is the episode id "
                    "and creator the series' creator")
    ref: str = Field(pattern=REF_PATTERN.pattern, description="video id, live session id or drama episode id")
    count: JsonInt = Field(default=1, ge=1, le=MAX_COUNT["api"])
    at: dt.datetime = Field(strict=False, description="when it happened (ISO 8601; UTC unless an offset is given)")


class TrackIn(BaseModel):
    model_config = _strict
    events: list[TrackEventIn] = Field(min_length=1, max_length=1000,
                                       description="at most ACTIVITY_MAX_BATCH (100 by default)")


class TrackOut(BaseModel):
    accepted: int = Field(description="new events stored")
    duplicates: int = Field(description="events already stored (or repeated in this batch)")


class ThresholdOut(BaseModel):
    metric: Literal["videos", "video_plays", "live_gmv_fen", "own_gmv_fen", "direct_invites"]
    label: str
    have: int
    need: int
    met: bool


class NextLevelOut(BaseModel):
    rank: int
    name: str
    thresholds: list[ThresholdOut] = Field(description="every one must be met")


class ProgressOut(BaseModel):
    rank: int
    name: str
    capped: bool = Field(description="a risk penalty holds the creator below the next level")
    ready: bool = Field(description="the next evaluation promotes")
    next: NextLevelOut | None = Field(description="null at the top level")
    invites: int = Field(description="direct invites so far")
    invite_line: str = Field(description="e.g. 已邀请2人，还差1人升级")


class ConversionOut(BaseModel):
    play_to_order_bp: int = Field(description="orders per play, in basis points (rounded down)")
    entry_to_order_bp: int = Field(description="orders per live-room entry, in basis points")
    orders_per_1000_plays: str


class FunnelOut(BaseModel):
    video_plays: int
    live_entries: int
    orders: int
    gmv_fen: int
    live_orders: int
    live_gmv_fen: int
    conversion: ConversionOut


# ---- short-video scripts (issue 16) ------------------------------------------------------------


class ScriptIn(BaseModel):
    model_config = _strict
    sku: str = Field(min_length=1, max_length=64, pattern=NO_NUL, description="an active SKU's code")
    topic: str | None = Field(default=None, max_length=40, pattern=NO_NUL,
                              description="what the video is about, e.g. 夏日追剧 (at most 40 characters)")
    style: str | None = Field(default=None, max_length=20, pattern=NO_NUL,
                              description="this script's style; by default the one set with PUT /creator/style")


class SubtitleOut(BaseModel):
    start_ms: int
    end_ms: int
    text: str


class ScriptVariantOut(BaseModel):
    duration: Literal[15, 30, 60]
    hook: str
    pain_point: str
    selling_points: list[str]
    proof: str
    call_to_action: str
    subtitles: list[SubtitleOut] = Field(description="timed lines; the first carries the 【广告】 label")


class ScriptOut(BaseModel):
    id: int
    state: Literal["draft", "submitted", "approved", "rejected"] = Field(
        description="draft -> submitted (AI check done, waiting for review) -> approved | rejected")
    source: Literal["model", "offline"]
    label: Literal["【广告】"] = Field(description="shown with the script wherever it is published")
    title: str
    sku: str | None
    product: str | None
    price_fen: int | None = Field(description="what a buyer pays through my link, from the catalog")
    topic: str
    style: str
    variants: list[ScriptVariantOut] = Field(description="15, 30 and 60 seconds")
    music: list[str] = Field(description="music suggestions as tags")
    cover: list[str] = Field(description="cover suggestions as tags")
    note: str = Field(description="the reviewer's note")
    created_at: str
    submitted_at: str | None
    reviewed_at: str | None


class ScriptList(BaseModel):
    scripts: list[ScriptOut]
    next_before_id: int | None


class ScriptListQuery(CachedSchema):
    limit: int = Field(default=20, ge=1, le=100)
    before_id: Id | Absent = Field(default=None, json_schema_extra=_no_default)


class ScriptPath(BaseModel):
    script_id: int = Field(ge=1, le=2**62)


def _duration(value: int) -> int:
    if value not in (15, 30, 60):
        raise ValueError("the duration is 15, 30 or 60 (seconds)")
    return value


class SubtitleQuery(CachedSchema):
    duration: Annotated[int, AfterValidator(_duration)] = Field(
        default=30, description="which variant's subtitles: 15, 30 or 60 seconds",
        json_schema_extra={"enum": [15, 30, 60]})


class StyleIn(BaseModel):
    model_config = _strict
    style: str = Field(min_length=1, max_length=20, pattern=NO_NUL, description="e.g. 亲切、专业、搞笑")


class StyleOut(BaseModel):
    style: str
