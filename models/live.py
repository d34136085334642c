"""Live sessions: a creator schedules a session (or goes live at once), fans reserve it, orders
placed through the live room carry its id (they count as live GMV), and ending the session
triggers settlement of its orders.

States: scheduled -> live -> ended, and scheduled -> cancelled. Times are stored in UTC.
`plan_version` grows with every reschedule or cancellation: reminder keys carry it, so a
reminder planned for an old start time is never sent for the new one."""

from __future__ import annotations

from enum import StrEnum

import peewee as pw

from models import events
from models.catalog import Sku
from models.db import BaseModel, db, lock_rows, utcnow
from models.errors import InvalidInput, NotFound
from models.network import Creator


class LiveState(StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"


class LiveSession(BaseModel):
    creator = pw.ForeignKeyField(Creator, backref="live_sessions", on_delete="RESTRICT")
    title = pw.CharField(max_length=120, default="")
    state = pw.CharField(max_length=10, default=LiveState.LIVE.value)
    scheduled_at = pw.DateTimeField(null=True)  # planned start (UTC); None: went live unplanned
    expected_minutes = pw.IntegerField(default=60)
    cover_url = pw.CharField(max_length=500, default="")
    started_at = pw.DateTimeField(null=True, default=utcnow)  # None while scheduled
    ended_at = pw.DateTimeField(null=True)
    cancelled_at = pw.DateTimeField(null=True)
    plan_version = pw.IntegerField(default=0)  # +1 per reschedule / cancel
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("state", "scheduled_at"), False),)


class LivePin(BaseModel):
    """A product pinned to a session: shown on the session page, optionally with a session price
    ladder (models/live_prices.py) and a planned slot (when the creator means to put it up)."""

    session = pw.ForeignKeyField(LiveSession, backref="pins", on_delete="CASCADE")
    sku = pw.ForeignKeyField(Sku, on_delete="RESTRICT")
    position = pw.IntegerField(default=0)
    slot_at = pw.DateTimeField(null=True)  # planned moment to put the product up (UTC)

    class Meta:
        indexes = ((("session", "sku"), True),)


def start_live(creator: Creator, title: str = "") -> LiveSession:
    if not isinstance(title, str) or len(title) > 120:
        raise InvalidInput("a live title is at most 120 characters", code="invalid_title")
    with db.atomic():
        session = LiveSession.create(creator=creator.id, title=title)
        events.record("live.started", f"live:{session.id}", creator.actor)
    return session


def end_live(creator: Creator | None, live_id: int, *, actor: str | None = None) -> tuple[LiveSession, bool]:
    """End a live session (the owner's, or any with creator=None for operators). Returns
    (session, ended_now); ending twice is harmless."""
    with db.atomic():
        query = LiveSession.select().where(LiveSession.id == live_id)
        if creator is not None:
            query = query.where(LiveSession.creator == creator.id)
        session = lock_rows(query).first()
        if session is None:
            raise NotFound(f"live session {live_id} not found", code="live_not_found")
        if session.state == LiveState.ENDED:
            return session, False
        session.state, session.ended_at = LiveState.ENDED.value, utcnow()
        session.save()
        events.record("live.ended", f"live:{session.id}", actor or (creator.actor if creator else "operator"))
    return session, True
