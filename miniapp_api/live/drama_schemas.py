"""Request and response models of the short-drama routes (/api/v1/creator/drama/...,
/api/v1/drama/...)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator

from miniapp_api.schemas import Absent, CachedSchema, Id, JsonInt, _no_default, _strict
from models import drama

# Some visible character, no NUL (a title is stripped; blank is refused).
TITLE = r"^[^\x00]*[^\s\x00][^\x00]*$"
URL = drama.URL_PATTERN.pattern
SkuCode = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00]+$")]
Title = Annotated[str, Field(min_length=1, max_length=drama.MAX_TITLE, pattern=TITLE)]
VideoUrl = Annotated[str, Field(max_length=drama.MAX_URL, pattern=URL, description="https:// only")]
CoverUrl = Annotated[str, Field(max_length=drama.MAX_URL, pattern=f"^$|{URL}",
                                description="https:// image address, or empty")]
SkuCodes = Annotated[list[SkuCode], Field(max_length=drama.MAX_PRODUCTS, json_schema_extra={"uniqueItems": True})]
LinkKindName = Literal["placement", "after_show", "cliffhanger"]


class SeriesPath(BaseModel):
    series_id: int = Field(ge=1, le=2**62)


class EpisodePath(BaseModel):
    episode_id: int = Field(ge=1, le=2**62)


class SeriesIn(BaseModel):
    model_config = _strict
    title: Title
    cover_url: CoverUrl = ""


def _left_out_not_null(value: object) -> object:
    """A field of a PATCH is left out to keep it; an explicit null is not in the document."""
    if value is None:
        raise ValueError("must not be null (leave the field out to keep it)")
    return value


class SeriesPatch(BaseModel):
    model_config = _strict
    title: Title | Absent = Field(default=None, json_schema_extra=_no_default)
    cover_url: CoverUrl | Absent = Field(default=None, json_schema_extra=_no_default)

    _not_null = field_validator("title", "cover_url", mode="before")(_left_out_not_null)


class LinkIn(BaseModel):
    model_config = _strict
    kind: LinkKindName = Field(description="placement: a product of the episode leads to the live room; "
                                           "after_show: the cast's session after the finale; "
                                           "cliffhanger: the ending is revealed in the live room")
    session_id: JsonInt = Field(ge=1, le=2**62, description="one of my sessions, scheduled or live")


class EpisodeIn(BaseModel):
    model_config = _strict
    number: JsonInt = Field(ge=1, le=drama.MAX_EPISODE_NUMBER)
    title: Title
    video_url: VideoUrl
    sku_codes: SkuCodes = Field(default_factory=list,
                                description="SKU codes of the products placed in the episode, each once")
    link: LinkIn | None = Field(default=None, description="the episode's link to a live session")


class EpisodePatch(BaseModel):
    """Fields left out stay as they are; `"link": null` removes the link."""

    model_config = _strict
    title: Title | Absent = Field(default=None, json_schema_extra=_no_default)
    video_url: VideoUrl | Absent = Field(default=None, json_schema_extra=_no_default)
    sku_codes: SkuCodes | Absent = Field(default=None, json_schema_extra=_no_default,
                                         description="replaces the placed products")
    link: LinkIn | None = Field(default=None, description="null removes the link")

    _not_null = field_validator("title", "video_url", "sku_codes", mode="before")(_left_out_not_null)


class PlacedProductOut(BaseModel):
    sku: str
    name: str
    retail_price_fen: int


class LiveLinkOut(BaseModel):
    kind: LinkKindName
    call_to_action: str = Field(description="what the mini-program shows on the link, by pattern")
    session_id: int
    session_title: str
    state: Literal["scheduled", "live", "ended", "cancelled"]
    starts_at: str | None = Field(description="planned start (or when it went live), UTC")
    starts_at_local: str | None = Field(description="the same in LIVE_TIMEZONE, ISO 8601 with offset")


class EpisodeOut(BaseModel):
    id: int
    number: int
    title: str
    video_url: str
    products: list[PlacedProductOut]
    link: LiveLinkOut | None


class SeriesOut(BaseModel):
    id: int
    title: str
    cover_url: str
    creator_code: str = Field(description="the `ref` for orders of its products")
    creator_name: str
    created_at: str
    episodes: list[EpisodeOut]


class SeriesItemOut(BaseModel):
    id: int
    title: str
    cover_url: str
    episodes: int
    created_at: str


class SeriesList(BaseModel):
    series: list[SeriesItemOut]
    next_before_id: int | None


class SeriesListQuery(CachedSchema):
    limit: int = Field(default=50, ge=1, le=200)
    before_id: Id | Absent = Field(default=None, json_schema_extra=_no_default)


class DramaFunnelOut(BaseModel):
    plays: int
    clicks: int = Field(description="click-throughs from an episode to its live room")
    live_entries: int = Field(description="entries into the linked sessions")
    orders: int = Field(description="paid orders placed in the linked sessions")
    gmv_fen: int
    sessions: int = Field(description="distinct linked sessions")
    click_bp: int = Field(description="click-throughs per play, basis points")
    order_bp: int = Field(description="orders per live entry, basis points")


class SeriesFunnelOut(DramaFunnelOut):
    series_id: int
    title: str


class CreatorFunnelOut(BaseModel):
    total: DramaFunnelOut = Field(description="every series; a session linked twice counts once")
    series: list[SeriesFunnelOut]
    next_before_id: int | None
