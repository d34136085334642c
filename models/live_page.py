"""What people see of live sessions, composed from every live area in one read: a creator's
list of sessions (with reservation counts) and the public session page of the mini-program
(the session, its creator, its pinned products with the current tier price and what is left at
it, whether I reserved, the reservation count, my assists, the lottery, the open polls).

Times are given twice: stored UTC (ISO, 'Z') and as shown in the time zone `tz`
(settings.LIVE_TIMEZONE). Read-only: nothing here writes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from models import assist, live, live_prices, live_votes, lottery, reservations
from models.live import LivePin, LiveSession
from models.live_rules import local_time
from models.network import Creator


def iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() + "Z" if moment is not None else None


def _times(name: str, moment: dt.datetime | None, tz: str) -> dict[str, Any]:
    return {name: iso(moment), f"{name}_local": local_time(moment, tz) or None}


def pin_view(pin: LivePin, tz: str) -> dict[str, Any]:
    return {"id": pin.id, "sku": pin.sku.code, "name": pin.sku.name, "retail_price_fen": pin.sku.retail_price_fen,
            "position": pin.position, **_times("slot_at", pin.slot_at, tz)}


def session_view(session: LiveSession, tz: str, *, pins: list[LivePin] | None = None) -> dict[str, Any]:
    """The session's own fields (no other area's data)."""
    pins = live.pins_of(session.id) if pins is None else pins
    return {"id": session.id, "title": session.title, "state": session.state,
            "expected_minutes": session.expected_minutes, "cover_url": session.cover_url,
            "plan_version": session.plan_version, "timezone": tz,
            **_times("scheduled_at", session.scheduled_at, tz), **_times("started_at", session.started_at, tz),
            **_times("ended_at", session.ended_at, tz), **_times("cancelled_at", session.cancelled_at, tz),
            "pins": [pin_view(p, tz) for p in pins]}


def creator_sessions(creator: Creator, tz: str, *, limit: int = 20,
                     before_id: int | None = None) -> list[dict[str, Any]]:
    """A creator's sessions, newest first, each with its reservation count."""
    sessions = live.sessions_of(creator, limit=limit, before_id=before_id)
    counts = reservations.counts([s.id for s in sessions])
    return [{**session_view(s, tz), "reservations": counts.get(s.id, 0)} for s in sessions]


def public_page(session_id: int, user_id: int | None, tz: str) -> dict[str, Any]:
    """The session page; `user_id` None (anonymous) leaves out what is mine (`reserved` is
    None, `assists` empty). Raises NotFound live_not_found."""
    session = live.get_session(session_id)
    creator = Creator.get_by_id(session.creator_id)
    pins = live.pins_of(session.id)
    offers = live_prices.offers(session.id)
    page = session_view(session, tz, pins=pins)
    for view in page["pins"]:
        view["offer"] = offers.get(view["id"])
    page.update(
        creator={"name": creator.name, "code": creator.code},
        reservations=reservations.count(session.id),
        reserved=reservations.is_reserved(session.id, user_id) if user_id is not None else None,
        assists=assist.state_for(user_id, session.id) if user_id is not None else [],
        lottery=lottery.public_state(session.id),
        polls=live_votes.public_polls(session.id, user_id),
    )
    return page
