"""Short dramas that lead into the live room (seed 000): a creator's series, its episodes (a
video, the products placed in it) and the link of an episode to one of the creator's live
sessions, by one of the seed's three patterns:

- placement (剧情植入): a product appears in the episode; its link leads to the live room, where
  the actor talks about it. Needs at least one placed product.
- after_show (番外直播): the cast's session after the finale.
- cliffhanger (悬念引流): the episode stops at the key moment, "the ending is revealed in the live
  room".

Plays and click-throughs to the live room arrive through the tracking route as activity kinds
`drama_play` and `drama_click` (ref = episode id; models/activity.py checks the episode belongs
to the reported creator); models/drama_funnel.py turns them into the funnel
plays -> click-throughs -> live entries -> orders.

Every change is validated whole before anything is written and written in one transaction with
its event (`drama.*`). `creator=None` is an operator acting on any series (the admin)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import peewee as pw

from models import events
from models.catalog import Sku
from models.db import BaseModel, db, utcnow
from models.errors import Conflict, InvalidInput, NotFound
from models.live import LiveSession, LiveState
from models.network import Creator, actor_of, lock_owned


class LinkKind(StrEnum):
    PLACEMENT = "placement"
    AFTER_SHOW = "after_show"
    CLIFFHANGER = "cliffhanger"


# What the mini-program shows on an episode's link to the live room, per pattern.
CALL_TO_ACTION = {
    LinkKind.PLACEMENT: "剧中同款，直播间有专属优惠",
    LinkKind.AFTER_SHOW: "番外直播：主角来直播间和你聊剧情",
    LinkKind.CLIFFHANGER: "想知道结局？来直播间，主播为你揭晓",
}


class DramaSeries(BaseModel):
    creator = pw.ForeignKeyField(Creator, backref="drama_series", on_delete="RESTRICT", index=False)
    title = pw.CharField(max_length=120)
    cover_url = pw.CharField(max_length=500, default="")
    created_at = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "drama_series"
        indexes = ((("creator", "id"), False),)  # a creator's series, newest first


class DramaEpisode(BaseModel):
    series = pw.ForeignKeyField(DramaSeries, backref="episodes", on_delete="CASCADE", index=False)
    number = pw.IntegerField()
    title = pw.CharField(max_length=120)
    video_url = pw.CharField(max_length=500)
    link_kind = pw.CharField(max_length=12, null=True)  # LinkKind; None: no link to a session
    live_session = pw.ForeignKeyField(LiveSession, null=True, on_delete="RESTRICT")  # indexed
    created_at = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "drama_episode"
        indexes = ((("series", "number"), True),)


class DramaPlacement(BaseModel):
    """A product (SKU) placed in an episode."""

    episode = pw.ForeignKeyField(DramaEpisode, backref="placements", on_delete="CASCADE", index=False)
    sku = pw.ForeignKeyField(Sku, on_delete="RESTRICT")
    position = pw.IntegerField(default=0)

    class Meta:
        table_name = "drama_placement"
        indexes = ((("episode", "sku"), True),)


# ---- validation ----------------------------------------------------------------------------------

URL_PATTERN = re.compile(r"^https://[A-Za-z0-9.-]+(:\d{1,5})?(/[^\s\x00]*)?$")
MAX_URL = 500
MAX_TITLE = 120
MAX_EPISODE_NUMBER = 10_000
MAX_PRODUCTS = 20


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # a PATCH field that was not sent


@dataclass(frozen=True)
class LinkSpec:
    kind: str  # LinkKind
    session_id: int


@dataclass(frozen=True)
class SeriesSpec:
    title: str
    cover_url: str = ""


@dataclass(frozen=True)
class EpisodeSpec:
    number: int
    title: str
    video_url: str
    sku_codes: list[str] = field(default_factory=list)
    link: LinkSpec | None = None


@dataclass(frozen=True)
class EpisodeChanges:
    """A partial update: UNSET leaves a field alone; link=None removes the link."""

    title: Any = UNSET
    video_url: Any = UNSET
    sku_codes: Any = UNSET
    link: Any = UNSET


def _title(value: object, what: str = "title") -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TITLE or "\x00" in value:
        raise InvalidInput(f"a {what} is 1-{MAX_TITLE} characters", code=f"invalid_{what}")
    return value.strip()


def _url(value: object, what: str, *, optional: bool = False) -> str:
    if optional and value == "":
        return ""
    if not isinstance(value, str) or len(value) > MAX_URL or not URL_PATTERN.fullmatch(value):
        raise InvalidInput(f"the {what} must be an https:// address of at most {MAX_URL} characters",
                           code=f"invalid_{what}")
    return value


def _number(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_EPISODE_NUMBER:
        raise InvalidInput(f"an episode number is 1-{MAX_EPISODE_NUMBER}", code="invalid_episode_number")
    return value


def _skus(codes: object) -> list[Sku]:
    """The active SKUs of `codes`, in the given order: one query."""
    if not isinstance(codes, list | tuple) or len(codes) > MAX_PRODUCTS \
            or not all(isinstance(c, str) and c for c in codes):
        raise InvalidInput(f"products are a list of at most {MAX_PRODUCTS} SKU codes", code="invalid_products")
    if len(set(codes)) != len(codes):
        raise InvalidInput("a product is placed at most once per episode", code="duplicate_product")
    found = {s.code: s for s in Sku.select().where(Sku.code.in_(list(codes)) & Sku.active)} if codes else {}
    for code in codes:
        if code not in found:
            raise NotFound(f"no active SKU has the code {code!r}", code="unknown_sku")
    return [found[c] for c in codes]


def _session(link: object, creator_id: int) -> LiveSession:
    """The session a new link points at: the series creator's own, not over."""
    if not isinstance(link, LinkSpec) or link.kind not in tuple(LinkKind):
        raise InvalidInput("a link is placement, after_show or cliffhanger", code="invalid_link_kind")
    session = LiveSession.get_or_none(LiveSession.id == link.session_id) \
        if isinstance(link.session_id, int) and 0 < link.session_id < 2**62 else None
    if session is None:
        raise NotFound(f"live session {link.session_id} not found", code="live_not_found")
    if session.creator_id != creator_id:
        raise InvalidInput("an episode links to a session of the series' own creator",
                           code="session_of_another_creator")
    if session.state in (LiveState.ENDED, LiveState.CANCELLED):
        raise InvalidInput(f"live session {session.id} is {session.state}", code="live_closed")
    return session


def _check_placement(kind: str | None, product_count: int) -> None:
    if kind == LinkKind.PLACEMENT and product_count == 0:
        raise InvalidInput("a placement link needs a product placed in the episode",
                           code="placement_needs_products")


# ---- writing -------------------------------------------------------------------------------------

def _series_for_update(creator: Creator | None, series_id: int) -> DramaSeries:
    series = lock_owned(DramaSeries.select().where(DramaSeries.id == series_id), DramaSeries.creator, creator)
    if series is None:
        raise NotFound(f"drama series {series_id} not found", code="series_not_found")
    return series


def create_series(creator: Creator, spec: SeriesSpec, *, actor: str | None = None) -> DramaSeries:
    title, cover = _title(spec.title), _url(spec.cover_url, "cover_url", optional=True)
    with db.atomic():
        series = DramaSeries.create(creator=creator.id, title=title, cover_url=cover)
        events.record("drama.series_created", f"drama:{series.id}", actor_of(creator, actor), title=title)
    return series


def update_series(creator: Creator | None, series_id: int, *, title: Any = UNSET, cover_url: Any = UNSET,
                  actor: str | None = None) -> DramaSeries:
    changes: dict[str, str] = {}
    if title is not UNSET:
        changes["title"] = _title(title)
    if cover_url is not UNSET:
        changes["cover_url"] = _url(cover_url, "cover_url", optional=True)
    with db.atomic():
        series = _series_for_update(creator, series_id)
        if changes:
            DramaSeries.update(**changes, updated_at=utcnow()).where(DramaSeries.id == series.id).execute()
            events.record("drama.series_updated", f"drama:{series.id}", actor_of(creator, actor),
                          fields=sorted(changes))
    return DramaSeries.get_by_id(series_id)


def _place(episode_id: int, skus: list[Sku]) -> None:
    DramaPlacement.delete().where(DramaPlacement.episode == episode_id).execute()
    if skus:
        DramaPlacement.insert_many([{"episode": episode_id, "sku": s.id, "position": i}
                                    for i, s in enumerate(skus)]).execute()


def add_episode(creator: Creator | None, series_id: int, spec: EpisodeSpec, *,
                actor: str | None = None) -> DramaEpisode:
    """A new episode of the series. Errors: invalid_episode_number, invalid_title,
    invalid_video_url, invalid_products, duplicate_product, unknown_sku (404),
    invalid_link_kind, live_not_found (404), session_of_another_creator, live_closed,
    placement_needs_products, series_not_found (404), episode_exists (409)."""
    number, title = _number(spec.number), _title(spec.title)
    video = _url(spec.video_url, "video_url")
    skus = _skus(spec.sku_codes)
    with db.atomic():
        series = _series_for_update(creator, series_id)
        session = _session(spec.link, series.creator_id) if spec.link is not None else None
        kind = spec.link.kind if spec.link is not None else None
        _check_placement(kind, len(skus))
        if DramaEpisode.select().where((DramaEpisode.series == series.id)
                                       & (DramaEpisode.number == number)).exists():
            raise Conflict(f"series {series.id} already has an episode {number}", code="episode_exists")
        episode = DramaEpisode.create(series=series.id, number=number, title=title, video_url=video,
                                      link_kind=kind, live_session=session.id if session else None)
        _place(episode.id, skus)
        events.record("drama.episode_added", f"drama:{series.id}", actor_of(creator, actor),
                      episode=episode.id, number=number, link=kind,
                      session=session.id if session else None)
    return episode


def update_episode(creator: Creator | None, episode_id: int, changes: EpisodeChanges, *,
                   actor: str | None = None) -> DramaEpisode:
    """Change an episode's title, video, products or link (link=None removes it). Errors as
    add_episode, and episode_not_found (404)."""
    values: dict[str, Any] = {}
    if changes.title is not UNSET:
        values["title"] = _title(changes.title)
    if changes.video_url is not UNSET:
        values["video_url"] = _url(changes.video_url, "video_url")
    skus = _skus(changes.sku_codes) if changes.sku_codes is not UNSET else None
    with db.atomic():
        episode = lock_owned(DramaEpisode.select(DramaEpisode, DramaSeries).join(DramaSeries)
                             .where(DramaEpisode.id == episode_id), DramaSeries.creator, creator)
        if episode is None:
            raise NotFound(f"episode {episode_id} not found", code="episode_not_found")
        kind = episode.link_kind
        if changes.link is None:
            values.update(link_kind=None, live_session=None)
            kind = None
        elif changes.link is not UNSET:
            same = (changes.link.kind == episode.link_kind and changes.link.session_id == episode.live_session_id)
            if not same:  # an unchanged link to a session that has since ended stays
                values["live_session"] = _session(changes.link, episode.series.creator_id).id
            kind = values["link_kind"] = changes.link.kind
        count = len(skus) if skus is not None else \
            DramaPlacement.select().where(DramaPlacement.episode == episode.id).count()
        _check_placement(kind, count)
        if values:
            DramaEpisode.update(**values, updated_at=utcnow()).where(DramaEpisode.id == episode.id).execute()
        if skus is not None:
            _place(episode.id, skus)
        if values or skus is not None:
            events.record("drama.episode_updated", f"drama:{episode.series_id}", actor_of(creator, actor),
                          episode=episode.id,
                          fields=sorted([*values, *(["products"] if skus is not None else [])]))
    return DramaEpisode.get_by_id(episode_id)


# ---- reading -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlacedProduct:
    sku: str
    name: str
    retail_price_fen: int


@dataclass(frozen=True)
class LiveLink:
    kind: str
    call_to_action: str
    session_id: int
    session_title: str
    state: str
    starts_at: Any  # naive UTC: the planned start, or when it went live; None if unknown


@dataclass(frozen=True)
class EpisodeView:
    id: int
    number: int
    title: str
    video_url: str
    products: list[PlacedProduct]
    link: LiveLink | None


@dataclass(frozen=True)
class SeriesView:
    id: int
    title: str
    cover_url: str
    creator_id: int
    creator_code: str
    creator_name: str
    created_at: Any
    episodes: list[EpisodeView]


def _link(episode: DramaEpisode, sessions: dict[int, LiveSession]) -> LiveLink | None:
    session = sessions.get(episode.live_session_id) if episode.live_session_id else None
    if episode.link_kind is None or session is None:
        return None
    kind = LinkKind(episode.link_kind)
    return LiveLink(kind.value, CALL_TO_ACTION[kind], session.id, session.title, session.state,
                    session.scheduled_at if session.state == LiveState.SCHEDULED else
                    session.started_at or session.scheduled_at)


def get_series(series_id: int, creator: Creator | None = None) -> SeriesView:
    """A series with its episodes in order, their products and live links: four queries. With
    `creator`, only that creator's series is found. Error: series_not_found (404)."""
    query = (DramaSeries.select(DramaSeries, Creator).join(Creator)
             .where(DramaSeries.id == series_id))
    if creator is not None:
        query = query.where(DramaSeries.creator == creator.id)
    series = query.first()
    if series is None:
        raise NotFound(f"drama series {series_id} not found", code="series_not_found")
    episodes = list(DramaEpisode.select().where(DramaEpisode.series == series.id).order_by(DramaEpisode.number))
    products: dict[int, list[PlacedProduct]] = {e.id: [] for e in episodes}
    if episodes:
        for p in (DramaPlacement.select(DramaPlacement, Sku).join(Sku)
                  .where(DramaPlacement.episode.in_([e.id for e in episodes]))
                  .order_by(DramaPlacement.episode, DramaPlacement.position)):
            products[p.episode_id].append(PlacedProduct(p.sku.code, p.sku.name, p.sku.retail_price_fen))
    session_ids = sorted({e.live_session_id for e in episodes if e.live_session_id})
    sessions = {s.id: s for s in LiveSession.select().where(LiveSession.id.in_(session_ids))} if session_ids else {}
    return SeriesView(series.id, series.title, series.cover_url, series.creator_id, series.creator.code,
                      series.creator.name, series.created_at,
                      [EpisodeView(e.id, e.number, e.title, e.video_url, products[e.id], _link(e, sessions))
                       for e in episodes])


def list_series(creator: Creator | None, limit: int = 50, before_id: int | None = None,
                creator_code: str | None = None) -> list[DramaSeries]:
    """Series newest first, a keyset page: one creator's (`creator`), or every creator's (None)
    optionally narrowed to the creator with `creator_code`. The creator is joined in."""
    query = DramaSeries.select(DramaSeries, Creator).join(Creator).order_by(DramaSeries.id.desc()).limit(limit)
    if creator is not None:
        query = query.where(DramaSeries.creator == creator.id)
    if creator_code:
        query = query.where(Creator.code == creator_code)
    if before_id is not None:
        query = query.where(DramaSeries.id < before_id)
    return list(query)


def episode_counts(series_ids: list[int]) -> dict[int, int]:
    if not series_ids:
        return {}
    return dict(DramaEpisode.select(DramaEpisode.series, pw.fn.COUNT(DramaEpisode.id))
                .where(DramaEpisode.series.in_(series_ids)).group_by(DramaEpisode.series).tuples())

