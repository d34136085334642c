"""The dashboard of one live session as the creator (API, SSE stream, chat) and the admin see
it: the snapshot of the counters (models/live_dashboard.py), a sample kept for the hint rules,
the hints of every provider (models/live_hints.py) and the session's polls
(models/live_votes.py). The one service function the views and the chat command call."""

from __future__ import annotations

import datetime as dt
from typing import Any

from models import live_dashboard, live_hints, live_votes
from models.db import utcnow
from models.errors import NotFound
from models.live import LiveSession, LiveState
from models.live_dashboard import DashboardPolicy
from models.network import Creator


def board(redis: Any, session_id: int, *, creator: Creator | None = None, now: dt.datetime | None = None,
          policy: DashboardPolicy | None = None) -> dict[str, Any]:
    """The session's dashboard: the snapshot's figures, `hints` [{code, text, source}] and
    `polls` (as live_votes.public_polls). With `creator`, only that creator's session. While
    the session is live, a look also keeps a sample for the hints (at most one per sampling
    interval, whoever looks). Raises NotFound (live_not_found)."""
    now, policy = now or utcnow(), policy or DashboardPolicy()
    if creator is not None and not LiveSession.select().where(
            LiveSession.id == session_id, LiveSession.creator == creator.id).exists():
        raise NotFound(f"live session {session_id} not found", code="live_not_found")
    snap = live_dashboard.snapshot(redis, session_id, now=now, policy=policy)
    hints: list[dict[str, str]] = []
    if snap["state"] == LiveState.LIVE:  # samples and hints are for the room on air
        live_dashboard.sample(redis, snap, now, policy)
        ctx = live_hints.HintContext(session_id, now, snap, live_dashboard.history(redis, session_id),
                                     slots(snap))
        hints = [h.as_dict() for h in live_hints.hints_for(ctx)]
    return {**snap, "hints": hints, "polls": live_votes.public_polls(session_id, now=now)}


def slots(snap: dict[str, Any]) -> list[live_hints.Slot]:
    """The planned product slots of the session, from the snapshot's pinned products."""
    return [live_hints.Slot(p["name"] or p["sku"], dt.datetime.fromisoformat(p["slot_at"].removesuffix("Z")))
            for p in snap["products"] if p["slot_at"]]


def keep_sample(redis: Any, session_id: int, *, now: dt.datetime | None = None,
                policy: DashboardPolicy | None = None) -> bool:
    """The periodic job's sample of a live session (so the hint rules have history even when
    nobody has the dashboard open). True when a sample was taken."""
    now, policy = now or utcnow(), policy or DashboardPolicy()
    snap = live_dashboard.snapshot(redis, session_id, now=now, policy=policy)
    return snap["state"] == LiveState.LIVE and live_dashboard.sample(redis, snap, now, policy)


def current_or_latest(creator: Creator) -> LiveSession | None:
    """The creator's live session, else the most recent one that started (the chat command's
    choice)."""
    live_now = live_votes.current_session(creator)
    if live_now is not None:
        return live_now
    return (LiveSession.select().where(LiveSession.creator == creator.id, LiveSession.started_at.is_null(False))
            .order_by(LiveSession.started_at.desc(), LiveSession.id.desc()).first())


def live_sessions(after_id: int = 0, limit: int = 200) -> list[int]:
    """Ids of live sessions, keyset by id (the sampling job)."""
    return [s.id for s in LiveSession.select(LiveSession.id).where(
        LiveSession.state == LiveState.LIVE, LiveSession.id > after_id).order_by(LiveSession.id).limit(limit)]
