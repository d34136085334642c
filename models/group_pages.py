"""Group-buy activities and pages (issue 14): an operator's new activity (validated whole), the
open activities, one team as a shopper sees it (progress "2/3，还差1人", masked members), the
community group a team was started from. Callers import these through models/groupbuy.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import peewee as pw

from models import events
from models import group_rules as rules
from models.db import db, execute, placeholders, utcnow
from models.errors import InvalidInput, NotFound
from models.group_rules import ActivitySpec
from models.group_seats import open_team_ids
from models.group_tables import GroupActivity, GroupTeam, TeamState


def create_activity(spec: ActivitySpec, *, actor: str) -> GroupActivity:
    """An operator's new activity, validated whole (`group_rules.check_spec` plus: the SKU exists
    and is on sale) before one transaction writes it with its `group.activity_created` event.
    Raises InvalidInput / NotFound (unknown_sku); nothing is written then."""
    if not isinstance(spec.sku_code, str):
        raise InvalidInput("sku_code is a SKU code", code="unknown_sku")
    row = execute("SELECT s.id, s.retail_price_fen FROM sku s JOIN product p ON p.id = s.product_id "
                  "WHERE s.code = %s AND s.active AND p.active", (spec.sku_code,)).fetchone()
    if row is None:
        raise NotFound(f"unknown or inactive SKU {spec.sku_code!r}", code="unknown_sku")
    rules.check_spec(spec, retail_fen=row[1])
    with db.atomic():
        activity = GroupActivity.create(
            sku_id=row[0], title=spec.title.strip(), size=spec.size, window_s=spec.window_s,
            group_price_fen=spec.group_price_fen, per_user_limit=spec.per_user_limit,
            max_teams=spec.max_teams, stock=spec.stock, starts_at=spec.starts_at, ends_at=spec.ends_at,
            leader_must_be_new=spec.leader_must_be_new, virtual_complete=spec.virtual_complete,
            created_by=actor[:64])
        events.record("group.activity_created", f"group_activity:{activity.id}", actor, sku=spec.sku_code,
                      size=spec.size, price_fen=spec.group_price_fen, virtual_complete=spec.virtual_complete)
    return activity


def set_chat(team_id: int, platform: str, chat_id: str) -> None:
    """Remember the community group a team was started from (its card and success message go there)."""
    GroupTeam.update(chat_platform=platform[:16], chat_id=str(chat_id)[:64]).where(GroupTeam.id == team_id).execute()


@dataclass(frozen=True)
class ActivityView:
    id: int
    title: str
    sku: str
    sku_name: str
    size: int
    group_price_fen: int
    retail_price_fen: int
    window_s: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    per_user_limit: int
    leader_must_be_new: bool
    virtual_complete: bool


@dataclass(frozen=True)
class MemberView:
    name: str  # masked
    leader: bool
    paid: bool


@dataclass(frozen=True)
class TeamView:
    id: int
    activity: ActivityView
    state: str
    size: int
    paid_count: int
    seats_free: int
    progress: str  # "2/3，还差1人"
    expires_at: dt.datetime
    closed_at: dt.datetime | None
    virtual_count: int
    members: list[MemberView]
    viewer_is_member: bool
    chat_platform: str | None
    chat_id: str | None


_ACTIVITY = (GroupActivity.id, GroupActivity.title, GroupActivity.size, GroupActivity.group_price_fen,
             GroupActivity.window_s, GroupActivity.starts_at, GroupActivity.ends_at, GroupActivity.per_user_limit,
             GroupActivity.leader_must_be_new, GroupActivity.virtual_complete, GroupActivity.sku_id)


def _activity_views(query: pw.ModelSelect) -> list[ActivityView]:
    rows = list(query)
    skus = {r[0]: r[1:] for r in execute(
        f"SELECT id, code, name, retail_price_fen FROM sku WHERE id IN ({placeholders(rows)})",
        [a.sku_id for a in rows])} if rows else {}
    return [ActivityView(a.id, a.title, skus[a.sku_id][0], skus[a.sku_id][1], a.size, a.group_price_fen,
                         skus[a.sku_id][2], a.window_s, a.starts_at, a.ends_at, a.per_user_limit,
                         a.leader_must_be_new, a.virtual_complete) for a in rows]


def list_activities(now: dt.datetime | None = None, *, limit: int = 20, after_id: int | None = None
                    ) -> list[ActivityView]:
    """Activities open now (active, inside their window), by id, keyset-paginated."""
    now = now or utcnow()
    query = GroupActivity.select(*_ACTIVITY).where(
        GroupActivity.active & (GroupActivity.starts_at <= now) & (GroupActivity.ends_at > now))
    if after_id is not None:
        query = query.where(GroupActivity.id > after_id)
    return _activity_views(query.order_by(GroupActivity.id).limit(limit))


def activity_view(activity_id: int) -> ActivityView:
    found = _activity_views(GroupActivity.select(*_ACTIVITY).where(GroupActivity.id == activity_id))
    if not found:
        raise NotFound(f"group-buy activity {activity_id} not found", code="group_activity_not_found")
    return found[0]


def open_teams(activity_id: int, limit: int = 10) -> list[TeamView]:
    """Teams of the activity a shopper can join now (open, unexpired, a seat free), fullest first."""
    return [team_page(t, viewer_id=None) for t in open_team_ids(activity_id, limit=limit)]


def team_page(team_id: int, *, viewer_id: int | None) -> TeamView:
    """One team as a shopper sees it: progress ("2/3，还差1人"), state, expiry, the members who
    joined with masked nicknames (left and refunded ones are not shown), whether the viewer is
    one of them. Raises NotFound (group_team_not_found)."""
    team = GroupTeam.get_or_none(GroupTeam.id == team_id)
    if team is None:
        raise NotFound(f"group-buy team {team_id} not found", code="group_team_not_found")
    shown = ("joining", "paid", "deliverable", "delivered", "refunding")
    rows = execute("SELECT m.user_id, m.leader, m.state, u.nickname FROM group_member m "
                   'JOIN "user" u ON u.id = m.user_id WHERE m.team_id = %s '
                   f"AND m.state IN ({placeholders(shown)}) ORDER BY m.leader DESC, m.id",
                   (team_id, *shown)).fetchall()
    paid_states = ("paid", "deliverable", "delivered")
    members = [MemberView(rules.mask_name(r[3]), bool(r[1]), r[2] in paid_states) for r in rows]
    members += [MemberView("拼团用户", False, True)] * team.virtual_count
    return TeamView(
        team.id, activity_view(team.activity_id), team.state, team.size, team.paid_count,
        max(team.size - team.seats_taken, 0) if team.state == TeamState.OPEN else 0,
        rules.progress(team.paid_count + team.virtual_count, team.size), team.expires_at, team.closed_at,
        team.virtual_count, members, viewer_id is not None and any(r[0] == viewer_id for r in rows),
        team.chat_platform, team.chat_id)
