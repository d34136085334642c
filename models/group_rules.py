"""The rules of group-buy (拼团) as pure functions (no database): which member transitions exist,
whether a shopper may start or join, when a team succeeds, what expiry does with an unfilled team,
when a team's window ends, how a failing refund backs off, and how a team is shown.

Team: open -> succeeded (N members paid, or virtually completed at expiry) | failed (expired).

Members, one table (`MEMBER_TRANSITIONS`): (state, event) -> new state.

    joining --paid--> paid --succeed--> deliverable --delivered--> delivered
    joining --leave--> left            (its unpaid order expired or was cancelled: seat freed)
    joining --fail--> refunding        (paid after its team's window closed)
    paid --fail--> refunding --refunded--> refunded
    paid --refunded--> refunded        (before success: the seat and the paid place are free)
    left --rejoin--> joining           (a late payment retakes a free seat of its open team)
    left --fail--> refunding           (a late payment with no seat to take: refunded)
    deliverable|delivered --refunded--> refunded   (after success: the normal refund path)

Anything missing from the table is refused (`InvalidState`); the services only make
transitions through conditional updates whose WHERE names the allowed source states, so a
repeated event writes nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from models.errors import Conflict, InvalidInput, InvalidState

SIZE_MIN, SIZE_MAX = 2, 50
WINDOW_MIN_S, WINDOW_MAX_S = 60, 7 * 86_400
TITLE_MAX = 60
FAILING_AFTER = 3  # refund attempts after which the admin lists a member's refund as failing
HOURLY = 3600  # the backoff after the schedule runs out: every hour, until WeChat Pay confirms


class Event(StrEnum):
    PAID = "paid"
    LEAVE = "leave"
    SUCCEED = "succeed"
    DELIVERED = "delivered"
    FAIL = "fail"
    REFUNDED = "refunded"
    REJOIN = "rejoin"


MEMBER_TRANSITIONS: dict[tuple[str, str], str] = {
    ("joining", Event.PAID): "paid",
    ("joining", Event.LEAVE): "left",
    ("joining", Event.FAIL): "refunding",  # paid after its team's window closed
    ("joining", Event.REFUNDED): "refunded",  # paid but not yet advanced, refunded by an operator
    ("paid", Event.SUCCEED): "deliverable",
    ("paid", Event.FAIL): "refunding",
    ("paid", Event.REFUNDED): "refunded",
    ("deliverable", Event.DELIVERED): "delivered",
    ("deliverable", Event.REFUNDED): "refunded",
    ("delivered", Event.REFUNDED): "refunded",
    ("refunding", Event.REFUNDED): "refunded",
    ("left", Event.REJOIN): "joining",
    ("left", Event.FAIL): "refunding",
    ("left", Event.REFUNDED): "refunded",
}
HOLDS_SEAT = ("joining", "paid")  # while the team is open, seats_taken counts these
COUNTS_FOR_LIMIT = ("joining", "paid", "deliverable", "delivered", "refunding")  # per-user limit


def next_state(state: str, event: str) -> str:
    """The member state `event` leads to from `state`; InvalidState when the table has no such pair."""
    new = MEMBER_TRANSITIONS.get((state, event))
    if new is None:
        raise InvalidState(f"a group member in state {state!r} cannot {event}", code="group_member_state")
    return new


def sources(event: str) -> tuple[str, ...]:
    """The member states `event` may leave (the WHERE of its conditional update)."""
    return tuple(sorted({s for (s, e) in MEMBER_TRANSITIONS if e == event}))


# ---- activities --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivitySpec:
    """What an operator sets on an activity; `create_activity` validates it whole."""

    sku_code: str
    title: str
    size: int
    window_s: int
    group_price_fen: int
    starts_at: dt.datetime  # naive UTC
    ends_at: dt.datetime
    per_user_limit: int = 1
    max_teams: int | None = None
    stock: int | None = None
    leader_must_be_new: bool = False
    virtual_complete: bool = False  # off by default: an unfilled team fails and is refunded


def _whole(value: object, name: str, low: int, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidInput(f"{name} must be a whole number {bound}", code=f"invalid_{name}")
    return value


def check_spec(spec: ActivitySpec, *, retail_fen: int) -> None:
    """Every rule of an activity at once (raises InvalidInput naming the first broken one):
    title 1-60 characters; size 2..50; window 60 s..7 days; group price 1 fen..the SKU's retail
    price; per-user limit >= 1; max teams and stock, when given, >= 1 (stock >= size: one
    team must fit); starts before it ends."""
    if not isinstance(spec.title, str) or not spec.title.strip() or len(spec.title) > TITLE_MAX:
        raise InvalidInput(f"a title is 1-{TITLE_MAX} characters", code="invalid_title")
    _whole(spec.size, "size", SIZE_MIN, SIZE_MAX)
    _whole(spec.window_s, "window_s", WINDOW_MIN_S, WINDOW_MAX_S)
    _whole(spec.group_price_fen, "group_price_fen", 1, retail_fen)
    _whole(spec.per_user_limit, "per_user_limit", 1)
    if spec.max_teams is not None:
        _whole(spec.max_teams, "max_teams", 1)
    if spec.stock is not None:
        _whole(spec.stock, "stock", spec.size)
    if not isinstance(spec.starts_at, dt.datetime) or not isinstance(spec.ends_at, dt.datetime):
        raise InvalidInput("starts_at and ends_at are times", code="invalid_window")
    if spec.starts_at.tzinfo is not None or spec.ends_at.tzinfo is not None:
        raise InvalidInput("times are naive UTC", code="invalid_window")
    if not spec.starts_at < spec.ends_at:
        raise InvalidInput("an activity starts before it ends", code="invalid_window")
    for flag in (spec.leader_must_be_new, spec.virtual_complete):
        if not isinstance(flag, bool):
            raise InvalidInput("flags are true or false", code="invalid_flag")


def check_open(active: bool, starts_at: dt.datetime, ends_at: dt.datetime, now: dt.datetime) -> None:
    """An activity takes new teams only while active and inside [starts_at, ends_at)."""
    if not active or not starts_at <= now < ends_at:
        raise InvalidState("this group-buy activity is not open", code="group_activity_closed")


def team_expiry(now: dt.datetime, window_s: int, activity_ends_at: dt.datetime) -> dt.datetime:
    """A team has `window_s` to fill, but never outlives its activity: the end of an activity is
    the last moment anything of it is sold, so a team started near the end has less time."""
    return min(now + dt.timedelta(seconds=window_s), activity_ends_at)


def order_deadline(order_expires_at: dt.datetime, team_expires_at: dt.datetime) -> dt.datetime:
    """A member's unpaid order never outlives its team: it expires when the team does (the
    team's closing cancels it if the expiry job has not expired it first)."""
    return min(order_expires_at, team_expires_at)


# ---- joining -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeamFacts:
    state: str
    expires_at: dt.datetime
    seats_taken: int
    size: int


def can_join(team: TeamFacts, now: dt.datetime, *, already_member: bool) -> None:
    """Whether a shopper may take a seat in this team now; raises the refusal:
    group_closed (409, succeeded or failed), group_expired (409, its window passed),
    group_already_member (409, "your own twice"), group_full (409, every seat taken)."""
    if team.state != "open":
        raise InvalidState("this team is closed", code="group_closed")
    if team.expires_at <= now:
        raise InvalidState("this team has expired", code="group_expired")
    if already_member:
        raise Conflict("you are already in this team", code="group_already_member")
    if team.seats_taken >= team.size:
        raise Conflict("this team is full", code="group_full")


def check_user_limit(teams_in: int, per_user_limit: int) -> None:
    """A shopper is in at most `per_user_limit` teams of an activity (members not left or
    refunded before success count)."""
    if teams_in >= per_user_limit:
        raise Conflict(f"you are already in {teams_in} team(s) of this activity (limit {per_user_limit})",
                       code="group_limit")


def succeeded(paid_count: int, size: int) -> bool:
    return paid_count >= size


@dataclass(frozen=True)
class Closing:
    state: str  # succeeded | failed
    virtual_count: int  # seats filled virtually


def close_decision(*, paid_count: int, size: int, virtual_complete: bool) -> Closing:
    """An open team whose window passed: with virtual completion on and at least one paid
    member it succeeds, the missing seats filled virtually; otherwise it fails (paid members
    refunded, unpaid ones cancelled)."""
    if paid_count >= size:
        return Closing("succeeded", 0)
    if virtual_complete and paid_count >= 1:
        return Closing("succeeded", size - paid_count)
    return Closing("failed", 0)


# ---- refunds -----------------------------------------------------------------------------------


def refund_backoff(attempts: int, schedule: list[int]) -> int:
    """Seconds before the next try of a refund that failed `attempts` times: the schedule
    (GROUP_REFUND_BACKOFF_S) in order, then every hour, for ever (until WeChat Pay confirms)."""
    if attempts < 1:
        return 0
    return schedule[attempts - 1] if attempts <= len(schedule) else HOURLY


def parse_backoff(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError("must be a comma-separated list of whole seconds > 0, e.g. 30,120,600")
    return [int(p) for p in parts]


# ---- showing -----------------------------------------------------------------------------------


def progress(paid_count: int, size: int) -> str:
    """"2/3，还差1人" (paid members of the size; "已成团" once full)."""
    if paid_count >= size:
        return f"{size}/{size}，已成团"
    return f"{paid_count}/{size}，还差{size - paid_count}人"


def mask_name(name: str) -> str:
    """A member's nickname as others see it: first character, then stars ("张**");
    no nickname -> "拼团用户"."""
    name = (name or "").strip()
    if not name:
        return "拼团用户"
    return name[0] + "*" * min(max(len(name) - 1, 1), 4)
