"""Short-drama routes (issue 13, seed 000): creators manage their series and episodes and see
their drama funnel (/api/v1/creator/drama/...); the mini-program reads a series with its
episodes, placed products and live links (/api/v1/drama/series/<id>, no login). Plays and
click-throughs arrive through POST /api/v1/track (kinds drama_play, drama_click)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask_openapi3 import APIBlueprint, Tag

from miniapp_api.api import BEARER, ERRORS, _iso, _json_object_body
from miniapp_api.auth import current_user
from miniapp_api.deps import runtime
from miniapp_api.errors import ErrorOut
from miniapp_api.live.drama_schemas import (
    CreatorFunnelOut,
    EpisodeIn,
    EpisodeOut,
    EpisodePatch,
    EpisodePath,
    SeriesIn,
    SeriesList,
    SeriesListQuery,
    SeriesOut,
    SeriesPatch,
    SeriesPath,
)
from models import drama, drama_funnel, network
from models.network import Creator

bp = APIBlueprint("live_drama", __name__, url_prefix="/api/v1")
bp.before_request(_json_object_body)
tag = Tag(name="live-drama", description="live commerce: short dramas that lead into the live room")
READ_ERRORS = {401: ErrorOut, 404: ErrorOut}


def _me() -> Creator:
    return network.creator_of(current_user().id)


def _local(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    zone = ZoneInfo(runtime().settings.LIVE_TIMEZONE)
    return value.replace(tzinfo=dt.UTC).astimezone(zone).isoformat()


def _series_out(view: drama.SeriesView) -> dict:
    episodes = []
    for e in view.episodes:
        link = None
        if e.link is not None:
            link = {"kind": e.link.kind, "call_to_action": e.link.call_to_action,
                    "session_id": e.link.session_id, "session_title": e.link.session_title,
                    "state": e.link.state, "starts_at": _iso(e.link.starts_at),
                    "starts_at_local": _local(e.link.starts_at)}
        episodes.append({"id": e.id, "number": e.number, "title": e.title, "video_url": e.video_url,
                         "products": [p.__dict__ for p in e.products], "link": link})
    return SeriesOut(id=view.id, title=view.title, cover_url=view.cover_url, creator_code=view.creator_code,
                     creator_name=view.creator_name, created_at=_iso(view.created_at),
                     episodes=episodes).model_dump()


def _link(body: EpisodeIn | EpisodePatch) -> drama.LinkSpec | None:
    return drama.LinkSpec(body.link.kind, body.link.session_id) if body.link is not None else None


# ---- creators ----------------------------------------------------------------------------------

@bp.post("/creator/drama/series", tags=[tag], security=BEARER, responses={201: SeriesOut, **ERRORS})
def create_series(body: SeriesIn):  # noqa: ANN201
    """Start a short-drama series."""
    me = _me()
    series = drama.create_series(me, drama.SeriesSpec(body.title, body.cover_url))
    return _series_out(drama.get_series(series.id, me)), 201


@bp.get("/creator/drama/series", tags=[tag], security=BEARER,
        responses={200: SeriesList, 400: ErrorOut, **READ_ERRORS})
def my_series(query: SeriesListQuery):  # noqa: ANN201
    """My series, newest first."""
    found = drama.list_series(_me(), query.limit, query.before_id)
    counts = drama.episode_counts([s.id for s in found])
    return {"series": [{"id": s.id, "title": s.title, "cover_url": s.cover_url, "episodes": counts.get(s.id, 0),
                        "created_at": _iso(s.created_at)} for s in found],
            "next_before_id": found[-1].id if len(found) == query.limit else None}


@bp.get("/creator/drama/series/<int:series_id>", tags=[tag], security=BEARER,
        responses={200: SeriesOut, 400: ErrorOut, **READ_ERRORS})
def my_one_series(path: SeriesPath):  # noqa: ANN201
    """One of my series with its episodes."""
    return _series_out(drama.get_series(path.series_id, _me()))


@bp.patch("/creator/drama/series/<int:series_id>", tags=[tag], security=BEARER,
          responses={200: SeriesOut, **ERRORS})
def edit_series(path: SeriesPath, body: SeriesPatch):  # noqa: ANN201
    """Change my series' title or cover (fields left out stay)."""
    me = _me()
    sent = body.model_fields_set
    drama.update_series(me, path.series_id,
                        title=body.title if "title" in sent and body.title is not None else drama.UNSET,
                        cover_url=body.cover_url if "cover_url" in sent and body.cover_url is not None
                        else drama.UNSET)
    return _series_out(drama.get_series(path.series_id, me))


@bp.post("/creator/drama/series/<int:series_id>/episodes", tags=[tag], security=BEARER,
         responses={201: EpisodeOut, **ERRORS})
def add_episode(path: SeriesPath, body: EpisodeIn):  # noqa: ANN201
    """Add an episode: its video, the products placed in it and optionally its link to one of my
    live sessions. Errors: unknown_sku, live_not_found, series_not_found (404); live_closed,
    session_of_another_creator, placement_needs_products (400); episode_exists (409)."""
    me = _me()
    episode = drama.add_episode(me, path.series_id, drama.EpisodeSpec(
        body.number, body.title, body.video_url, list(body.sku_codes), _link(body)))
    view = drama.get_series(path.series_id, me)
    return _episode_out(view, episode.id), 201


def _episode_out(view: drama.SeriesView, episode_id: int) -> dict:
    return next(e for e in _series_out(view)["episodes"] if e["id"] == episode_id)


@bp.patch("/creator/drama/episodes/<int:episode_id>", tags=[tag], security=BEARER,
          responses={200: EpisodeOut, **ERRORS})
def edit_episode(path: EpisodePath, body: EpisodePatch):  # noqa: ANN201
    """Change an episode of mine: title, video, products (the list replaces them) or link
    (`null` removes it). Errors as adding one, and episode_not_found (404)."""
    me = _me()
    sent = body.model_fields_set

    def given(name: str):  # noqa: ANN202
        value = getattr(body, name)
        return value if name in sent and value is not None else drama.UNSET

    changes = drama.EpisodeChanges(
        title=given("title"), video_url=given("video_url"),
        sku_codes=list(body.sku_codes) if "sku_codes" in sent and body.sku_codes is not None else drama.UNSET,
        link=_link(body) if "link" in sent else drama.UNSET)
    episode = drama.update_episode(me, path.episode_id, changes)
    return _episode_out(drama.get_series(episode.series_id, me), episode.id)


@bp.get("/creator/drama/funnel", tags=[tag], security=BEARER,
        responses={200: CreatorFunnelOut, 400: ErrorOut, **READ_ERRORS})
def my_funnel(query: SeriesListQuery):  # noqa: ANN201
    """My drama funnel: plays -> click-throughs -> live entries of the linked sessions ->
    paid orders in them, in total and per series (newest first, a page)."""
    me = _me()
    found = drama.list_series(me, query.limit, query.before_id)
    per = drama_funnel.by_series([s.id for s in found])
    return {"total": drama_funnel.of_creator(me).as_dict(),
            "series": [{"series_id": s.id, "title": s.title, **per[s.id].as_dict()} for s in found],
            "next_before_id": found[-1].id if len(found) == query.limit else None}


# ---- the mini-program --------------------------------------------------------------------------

@bp.get("/drama/series/<int:series_id>", tags=[tag], responses={200: SeriesOut, 400: ErrorOut, 404: ErrorOut})
def public_series(path: SeriesPath):  # noqa: ANN201
    """A series for the mini-program: episodes in order, their products and their link to the
    live room (session, state, start time in UTC and in LIVE_TIMEZONE, the call to action)."""
    return _series_out(drama.get_series(path.series_id))
