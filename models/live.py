"""Live sessions: a creator goes live, orders placed through the live room carry its id (they
count as live GMV), and ending the session triggers settlement of its orders."""

from __future__ import annotations

from enum import StrEnum

import peewee as pw

from models import events
from models.db import BaseModel, db, lock_rows, utcnow
from models.errors import InvalidInput, NotFound
from models.network import Creator


class LiveState(StrEnum):
    LIVE = "live"
    ENDED = "ended"


class LiveSession(BaseModel):
    creator = pw.ForeignKeyField(Creator, backref="live_sessions", on_delete="RESTRICT")
    title = pw.CharField(max_length=120, default="")
    state = pw.CharField(max_length=8, default=LiveState.LIVE.value)
    started_at = pw.DateTimeField(default=utcnow)
    ended_at = pw.DateTimeField(null=True)


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
