"""Group-buy (拼团) in the mini-program API (issue 14), read-only: the open activities (paged by
id), one activity with the teams a shopper can join, and one team's page (progress "2/3，还差1人",
state, expiry, members with masked nicknames, whether the viewer is one of them). Starting or
joining a team is placing an order: POST /orders with `group_activity` or `team` (it pays the
group price; delivered when the team fills, refunded if it does not)."""

from __future__ import annotations

from typing import Literal

from flask import request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from miniapp_api.api import _iso, _json_object_body
from miniapp_api.auth import current_user
from miniapp_api.errors import ErrorOut
from miniapp_api.live.sessions import OPTIONAL_BEARER
from miniapp_api.schemas import CachedSchema
from models import groupbuy

bp = APIBlueprint("shop_groupbuy", __name__, url_prefix="/api/v1")
bp.before_request(_json_object_body)
tag = Tag(name="group-buy", description="group-buy (拼团): activities and teams; start or join with POST /orders")

PAGE_MAX = 50
TEAMS_SHOWN = 10


class ActivityPath(BaseModel):
    activity_id: int = Field(ge=1, le=2**62)


class TeamPath(BaseModel):
    team_id: int = Field(ge=1, le=2**62)


class GroupPageQuery(CachedSchema):
    after: int = Field(default=0, ge=0, le=2**62, description="the last activity id of the previous page")
    limit: int = Field(default=20, ge=1, le=PAGE_MAX)


class ActivityOut(BaseModel):
    id: int
    title: str
    sku: str = Field(description="the SKU to order (POST /orders `sku`)")
    product: str
    size: int = Field(description="members that make a team")
    group_price_fen: int
    retail_price_fen: int
    window_s: int = Field(description="a team's time to fill (never past the activity's end)")
    starts_at: str
    ends_at: str
    per_user_limit: int
    leader_must_be_new: bool = Field(description="only a buyer without an earlier paid order may start a team")
    virtual_complete: bool = Field(description="an unfilled team with a paid member succeeds at expiry")


class ActivityPage(BaseModel):
    activities: list[ActivityOut]
    next_after: int | None = Field(description="`after` for the next page; null: this was the last")


class GroupMemberOut(BaseModel):
    name: str = Field(description="nickname, masked")
    leader: bool
    paid: bool


class GroupTeamOut(BaseModel):
    id: int
    activity: ActivityOut
    state: Literal["open", "succeeded", "failed"]
    size: int
    paid_count: int
    seats_free: int = Field(description="seats a new member can take now (0 once closed)")
    progress: str = Field(description='e.g. "2/3，还差1人"')
    expires_at: str
    closed_at: str | None
    virtual_count: int = Field(description="seats filled virtually at expiry")
    members: list[GroupMemberOut]
    viewer_is_member: bool = Field(description="with a Bearer token: whether I am in this team")


class ActivityDetail(ActivityOut):
    open_teams: list[GroupTeamOut] = Field(description="teams to join now, fullest first")


def _activity(a: groupbuy.ActivityView) -> dict:
    return ActivityOut(
        id=a.id, title=a.title, sku=a.sku, product=a.sku_name, size=a.size, group_price_fen=a.group_price_fen,
        retail_price_fen=a.retail_price_fen, window_s=a.window_s, starts_at=_iso(a.starts_at),
        ends_at=_iso(a.ends_at), per_user_limit=a.per_user_limit, leader_must_be_new=a.leader_must_be_new,
        virtual_complete=a.virtual_complete).model_dump()


def _team(t: groupbuy.TeamView) -> dict:
    return GroupTeamOut(
        id=t.id, activity=_activity(t.activity), state=t.state, size=t.size, paid_count=t.paid_count,
        seats_free=t.seats_free, progress=t.progress, expires_at=_iso(t.expires_at), closed_at=_iso(t.closed_at),
        virtual_count=t.virtual_count,
        members=[GroupMemberOut(name=m.name, leader=m.leader, paid=m.paid) for m in t.members],
        viewer_is_member=t.viewer_is_member).model_dump()


@bp.get("/group-activities", tags=[tag], responses={200: ActivityPage, 400: ErrorOut})
def list_group_activities(query: GroupPageQuery):  # noqa: ANN201
    """Group-buy activities open now, by id, `limit` at a time after `after`."""
    found = groupbuy.list_activities(limit=query.limit, after_id=query.after or None)
    return {"activities": [_activity(a) for a in found],
            "next_after": found[-1].id if len(found) == query.limit else None}


@bp.get("/group-activities/<int:activity_id>", tags=[tag], responses={200: ActivityDetail, 404: ErrorOut})
def get_group_activity(path: ActivityPath):  # noqa: ANN201
    """One activity and the teams a shopper can join now (404 group_activity_not_found)."""
    activity = groupbuy.activity_view(path.activity_id)
    return {**_activity(activity), "open_teams": [_team(t) for t in groupbuy.open_teams(activity.id, TEAMS_SHOWN)]}


@bp.get("/group-teams/<int:team_id>", tags=[tag], security=OPTIONAL_BEARER,
        responses={200: GroupTeamOut, 401: ErrorOut, 404: ErrorOut})
def get_group_team(path: TeamPath):  # noqa: ANN201
    """One team's page (404 group_team_not_found). Public; with a Bearer token it also says
    whether I am a member (an invalid token is 401)."""
    viewer = current_user().id if request.headers.get("Authorization") else None
    return _team(groupbuy.team_page(path.team_id, viewer_id=viewer))
