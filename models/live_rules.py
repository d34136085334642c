"""The rules of a live session as pure functions (no database): which transitions its states
allow, what a valid plan is (title, start, length, cover, slots), and how its times are
stored (naive UTC) and shown (a time zone, settings.LIVE_TIMEZONE).

The state machine, one table (`TRANSITIONS`): (state, action) -> new state.

    scheduled --go_live--> live --end--> ended
    scheduled --reschedule--> scheduled (plan_version + 1)
    scheduled --cancel / abandon--> cancelled (plan_version + 1)

A pair whose new state equals the current one is a harmless repeat (ending an ended session,
cancelling a cancelled one, going live twice): the caller writes nothing. Any pair missing from
the table is refused with an `InvalidState` (409) whose code names the state that forbids it:
`live_not_started` (end a scheduled session: cancel it instead), `live_already_started`
(reschedule or cancel a session that is live), `live_ended`, `live_cancelled`.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from models.errors import InvalidInput, InvalidState

TITLE_MAX = 120
COVER_MAX = 500
REASON_MAX = 200
MINUTES_MIN, MINUTES_MAX = 1, 720
MAX_AHEAD = dt.timedelta(days=90)  # a plan further ahead is a typo (a year for a month)
NEVER_STARTED = "never_started"  # the reason close_abandoned gives


class LiveState(StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"


class Action(StrEnum):
    GO_LIVE = "go_live"
    END = "end"
    RESCHEDULE = "reschedule"
    CANCEL = "cancel"
    ABANDON = "abandon"  # the job: a scheduled session whose start + grace passed


TRANSITIONS: dict[tuple[str, str], str] = {
    ("scheduled", Action.GO_LIVE): "live",
    ("scheduled", Action.RESCHEDULE): "scheduled",
    ("scheduled", Action.CANCEL): "cancelled",
    ("scheduled", Action.ABANDON): "cancelled",
    ("live", Action.GO_LIVE): "live",  # a double tap on "start"
    ("live", Action.END): "ended",
    ("ended", Action.END): "ended",  # ending twice is harmless (as before scheduling existed)
    ("cancelled", Action.CANCEL): "cancelled",
}
REFUSALS = {
    "scheduled": ("live_not_started", "the session has not started; cancel it instead"),
    "live": ("live_already_started", "the session is live; end it instead"),
    "ended": ("live_ended", "the session has ended"),
    "cancelled": ("live_cancelled", "the session was cancelled"),
}


def next_state(state: str, action: str) -> str:
    """The state `action` leads to from `state`; raises InvalidState (see the module's docstring)."""
    new = TRANSITIONS.get((state, action))
    if new is None:
        code, message = REFUSALS.get(state, ("live_invalid_state", f"a session in state {state!r}"))
        raise InvalidState(f"{message}: cannot {action}", code=code)
    return new


def check_title(title: object, *, required: bool = True) -> str:
    if not isinstance(title, str) or len(title.strip()) > TITLE_MAX or "\x00" in title:
        raise InvalidInput(f"a live title is at most {TITLE_MAX} characters", code="invalid_title")
    if required and not title.strip():
        raise InvalidInput("a scheduled session needs a title", code="invalid_title")
    return title.strip()


def to_utc(moment: dt.datetime, tz: str | None = None) -> dt.datetime:
    """A naive UTC datetime (how times are stored). An aware moment is converted; a naive one
    is read in `tz` when given (what a creator types), else taken as UTC already."""
    if not isinstance(moment, dt.datetime):
        raise InvalidInput("a time is a date and a time of day", code="invalid_time")
    if moment.tzinfo is None:
        if tz is None:
            return moment
        moment = moment.replace(tzinfo=zone(tz))
    try:
        return moment.astimezone(dt.UTC).replace(tzinfo=None)
    except OverflowError:  # year 1 or 9999 moved across midnight UTC
        raise InvalidInput("a time between the years 1 and 9999", code="invalid_time") from None


def check_start(start: dt.datetime, now: dt.datetime) -> dt.datetime:
    """A planned start (naive UTC): in the future, at most MAX_AHEAD away."""
    start = to_utc(start)
    if start <= now:
        raise InvalidInput("the start time has passed; choose a time in the future", code="live_start_past")
    if start - now > MAX_AHEAD:
        raise InvalidInput(f"a session is planned at most {MAX_AHEAD.days} days ahead", code="live_start_too_far")
    return start.replace(microsecond=0)


def check_minutes(minutes: object) -> int:
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not MINUTES_MIN <= minutes <= MINUTES_MAX:
        raise InvalidInput(f"expected_minutes is {MINUTES_MIN} to {MINUTES_MAX}", code="invalid_expected_minutes")
    return minutes


def check_cover(url: object) -> str:
    """'' (no cover) or an https URL with a host: the mini-program loads only https images."""
    if url in (None, ""):
        return ""
    if not isinstance(url, str) or len(url) > COVER_MAX or any(c.isspace() or c == "\x00" for c in url):
        raise InvalidInput("the cover is an https URL", code="invalid_cover_url")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidInput("the cover is an https URL", code="invalid_cover_url")
    return url


def check_slot(slot: dt.datetime | None, start: dt.datetime, minutes: int) -> dt.datetime | None:
    """A product's planned slot (naive UTC) lies within the planned session."""
    if slot is None:
        return None
    slot = to_utc(slot)
    if not start <= slot <= start + dt.timedelta(minutes=minutes):
        raise InvalidInput("a product slot lies between the start and the planned end", code="invalid_slot")
    return slot.replace(microsecond=0)


def check_reason(reason: object) -> str:
    if not isinstance(reason, str) or len(reason) > REASON_MAX or "\x00" in reason:
        raise InvalidInput(f"a reason is at most {REASON_MAX} characters", code="invalid_reason")
    return reason.strip()


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"unknown time zone {tz!r}", code="invalid_timezone") from exc


def in_zone(moment: dt.datetime, tz: str) -> dt.datetime:
    """A stored (naive UTC) time as an aware time in `tz`."""
    return moment.replace(tzinfo=dt.UTC).astimezone(zone(tz))


def local_time(moment: dt.datetime | None, tz: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored (naive UTC) time as shown to people in `tz` ('' for None)."""
    return in_zone(moment, tz).strftime(fmt) if moment is not None else ""
