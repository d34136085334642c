"""Live sessions: a creator schedules a session (or goes live at once), fans reserve it, orders
placed through the live room carry its id (they count as live GMV), and ending the session
triggers settlement of its orders.

States: scheduled -> live -> ended, and scheduled -> cancelled; which transition is allowed is
one table in models/live_rules.py (`next_state`). Times are stored in UTC (naive) and shown in
settings.LIVE_TIMEZONE (`local_time`). `plan_version` grows with every reschedule or
cancellation: reminder keys carry it, so a reminder planned for an old start time is never sent
for the new one. Every transition writes an event (live.scheduled, live.rescheduled,
live.cancelled, live.started, live.ended) in its own transaction.

Scheduling with pinned products, ladders, assist offers and a lottery is
models/live_planning.py (`schedule`): it calls the modules of those areas, which import this
one, so it cannot live here (no import cycles between sibling modules)."""

from __future__ import annotations

import datetime as dt

import peewee as pw

from models import events
from models.catalog import Sku
from models.db import BaseModel, db, execute, lock_rows, utcnow
from models.errors import NotFound
from models.live_rules import NEVER_STARTED, Action, LiveState, check_reason, check_start, check_title, next_state
from models.live_rules import local_time as local_time
from models.network import Creator, actor_of, lock_owned

__all__ = ["LivePin", "LiveSession", "LiveState", "cancel", "close_abandoned", "end_live", "get_session",
           "go_live", "local_time", "pins_of", "reschedule", "sessions_of", "start_live"]
ABANDON_CHUNK = 200


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

    @property
    def subject(self) -> str:
        return f"live:{self.id}"


class LivePin(BaseModel):
    """A product pinned to a session: shown on the session page, optionally with a session price
    ladder (models/live_prices.py) and a planned slot (when the creator means to put it up)."""

    session = pw.ForeignKeyField(LiveSession, backref="pins", on_delete="CASCADE")
    sku = pw.ForeignKeyField(Sku, on_delete="RESTRICT")
    position = pw.IntegerField(default=0)
    slot_at = pw.DateTimeField(null=True)  # planned moment to put the product up (UTC)

    class Meta:
        indexes = ((("session", "sku"), True),)


def get_session(session_id: int) -> LiveSession:
    """Raises NotFound live_not_found."""
    session = LiveSession.get_or_none(LiveSession.id == session_id)
    if session is None:
        raise NotFound(f"live session {session_id} not found", code="live_not_found")
    return session


def pins_of(session_id: int) -> list[LivePin]:
    """The session's pinned products in their order, each with its SKU loaded."""
    return list(LivePin.select(LivePin, Sku).join(Sku).where(LivePin.session == session_id)
                .order_by(LivePin.position, LivePin.id))


def sessions_of(creator: Creator, *, limit: int = 20, before_id: int | None = None) -> list[LiveSession]:
    """A creator's sessions, newest first (keyset on id: the creator_id index)."""
    query = LiveSession.select().where(LiveSession.creator == creator.id)
    if before_id is not None:
        query = query.where(LiveSession.id < before_id)
    return list(query.order_by(LiveSession.id.desc()).limit(limit))


def _locked(creator: Creator | None, session_id: int) -> LiveSession:
    """The session row, locked (inside the caller's transaction): the owner's, or any session
    for creator=None (operators). Another creator's session is 'not found', as a missing one."""
    session = lock_owned(LiveSession.select().where(LiveSession.id == session_id), LiveSession.creator, creator)
    if session is None:
        raise NotFound(f"live session {session_id} not found", code="live_not_found")
    return session


def start_live(creator: Creator, title: str = "") -> LiveSession:
    """Go live at once, without a plan (the session starts in state live)."""
    title = check_title(title, required=False)
    with db.atomic():
        session = LiveSession.create(creator=creator.id, title=title)
        events.record("live.started", session.subject, creator.actor, planned=False)
    return session


def go_live(creator: Creator | None, session_id: int, *, actor: str | None = None) -> LiveSession:
    """A scheduled session goes live now (early or late: the creator decides). Going live twice
    is harmless. Raises NotFound live_not_found, InvalidState live_ended / live_cancelled."""
    now = utcnow()
    with db.atomic():
        session = _locked(creator, session_id)
        if next_state(session.state, Action.GO_LIVE) == session.state:
            return session
        session.state, session.started_at, session.updated_at = LiveState.LIVE.value, now, now
        session.save()
        events.record("live.started", session.subject, actor_of(creator, actor), planned=True,
                      scheduled_at=session.scheduled_at.isoformat() if session.scheduled_at else None)
    return session


def end_live(creator: Creator | None, live_id: int, *, actor: str | None = None) -> tuple[LiveSession, bool]:
    """End a live session (the owner's, or any with creator=None for operators). Returns
    (session, ended_now); ending twice is harmless; the caller queues the settlement of its
    orders when ended_now. Raises NotFound live_not_found, InvalidState live_not_started
    (a scheduled session is cancelled, not ended) / live_cancelled."""
    now = utcnow()
    with db.atomic():
        session = _locked(creator, live_id)
        if next_state(session.state, Action.END) == session.state:
            return session, False
        session.state, session.ended_at, session.updated_at = LiveState.ENDED.value, now, now
        session.save()
        events.record("live.ended", session.subject, actor_of(creator, actor))
    return session, True


def reschedule(creator: Creator | None, session_id: int, new_start: dt.datetime, *, actor: str | None = None,
               now: dt.datetime | None = None) -> LiveSession:
    """Move a scheduled session to `new_start` (naive UTC, or aware): its planned product slots
    move with it, and plan_version + 1 re-plans its reminders. The same start again changes
    nothing. Raises InvalidInput live_start_past / live_start_too_far, NotFound live_not_found,
    InvalidState live_already_started / live_ended / live_cancelled."""
    now = now or utcnow()
    new_start = check_start(new_start, now)
    with db.atomic():
        session = _locked(creator, session_id)
        next_state(session.state, Action.RESCHEDULE)
        old = session.scheduled_at
        if old == new_start:
            return session
        if old is not None:
            shift = new_start - old
            for pin in LivePin.select().where(LivePin.session == session.id, LivePin.slot_at.is_null(False)):
                LivePin.update(slot_at=pin.slot_at + shift).where(LivePin.id == pin.id).execute()
        session.scheduled_at, session.updated_at = new_start, now
        session.plan_version += 1
        session.save()
        events.record("live.rescheduled", session.subject, actor_of(creator, actor),
                      old=old.isoformat() if old else None, new=new_start.isoformat(),
                      plan_version=session.plan_version)
    return session


def cancel(creator: Creator | None, session_id: int, *, actor: str | None = None, reason: str = "") -> LiveSession:
    """Cancel a scheduled session; plan_version + 1, so the reservations get a cancellation
    instead of their reminders. Cancelling twice is harmless. Raises InvalidInput
    invalid_reason, NotFound live_not_found, InvalidState live_already_started / live_ended."""
    reason = check_reason(reason)
    now = utcnow()
    with db.atomic():
        session = _locked(creator, session_id)
        if next_state(session.state, Action.CANCEL) == session.state:
            return session
        session.state, session.cancelled_at, session.updated_at = LiveState.CANCELLED.value, now, now
        session.plan_version += 1
        session.save()
        events.record("live.cancelled", session.subject, actor_of(creator, actor), reason=reason,
                      plan_version=session.plan_version)
    return session


def close_abandoned(now: dt.datetime, grace: dt.timedelta) -> int:
    """Cancel the scheduled sessions whose planned start + `grace` passed without going live
    (reason never_started, plan_version + 1: the reservations hear of the cancellation, and
    they do not count as live sessions that ended with no sales). Chunks of ABANDON_CHUNK rows,
    one transaction each, rows locked so a concurrent go_live either wins or waits. Returns
    how many were closed; running it again closes nothing twice."""
    cutoff, closed = now - grace, 0
    while True:
        with db.atomic():
            found = list(lock_rows(
                LiveSession.select(LiveSession.id, LiveSession.state, LiveSession.plan_version)
                .where(LiveSession.state == LiveState.SCHEDULED.value, LiveSession.scheduled_at < cutoff)
                .order_by(LiveSession.id).limit(ABANDON_CHUNK)))
            if not found:
                return closed
            new_state = next_state(LiveState.SCHEDULED.value, Action.ABANDON)
            ids = [s.id for s in found]
            (LiveSession.update(state=new_state, cancelled_at=now, updated_at=now,
                                plan_version=LiveSession.plan_version + 1)
             .where(LiveSession.id.in_(ids), LiveSession.state == LiveState.SCHEDULED.value).execute())
            execute(*events.many_statement("live.cancelled", "system", [
                (s.subject, {"reason": NEVER_STARTED, "plan_version": s.plan_version + 1}) for s in found]))
            closed += len(found)
