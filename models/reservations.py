"""Reservations of a scheduled live session: one per person per session, whatever the channel.

A person is a `User`: chat identities that are linked to a user (models/identities.py) reserve
as that user, so the unique key (session_id, user_id) counts a person once. The channel the
reservation came through is recorded (`miniapp`, `telegram`, `wechat_oa`).

`wxa_consent` is an unused mini-program subscribe consent: the mini-program asks the user for
it when they reserve (one consent = one subscribe message). The reminder planner
(tasks/reminders.py) clears it in the transaction that writes the subscribe message it uses;
reserving again from the mini-program with consent re-arms it.

Reservations close at T-0 (the planned start): a session that started, ended, was cancelled or
whose start has passed takes no new reservation, so the list `reserved_after` streams is
stable once the start has passed (the lottery's draw hashes it). `reserve` holds a share lock
on the session row (PostgreSQL; SQLite serialises writers), so a reschedule or a start never
interleaves with a reservation being written.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import peewee as pw

from models.db import BaseModel, db, execute, for_update, utcnow
from models.errors import Conflict, InvalidInput, NotFound
from models.live import LiveSession, LiveState
from models.users import User

CHUNK = 1000
_ts = pw.DateTimeField().db_value


class Channel(StrEnum):
    MINIAPP = "miniapp"
    TELEGRAM = "telegram"
    WECHAT_OA = "wechat_oa"


class Reservation(BaseModel):
    session = pw.ForeignKeyField(LiveSession, backref="reservations", on_delete="CASCADE", index=False)
    user = pw.ForeignKeyField(User, on_delete="RESTRICT")
    channel = pw.CharField(max_length=16)
    wxa_consent = pw.BooleanField(default=False)  # an unused mini-program subscribe consent
    created_at = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("session", "user"), True),)


def _open_session(session_id: int, now: dt.datetime) -> LiveSession:
    """The session, if it takes reservations now (share-locked on PostgreSQL); else a 4xx."""
    table = LiveSession._meta.table_name
    row = execute(f"SELECT id FROM {table} WHERE id = %s{for_update('FOR SHARE')}", (session_id,)).fetchone()
    session = LiveSession.get_or_none(LiveSession.id == session_id) if row else None
    if session is None:
        raise NotFound(f"live session {session_id} not found", code="live_not_found")
    if session.state == LiveState.CANCELLED:
        raise Conflict("这场直播已取消，不能预约了", code="live_cancelled")
    if session.state == LiveState.ENDED:
        raise Conflict("这场直播已经结束了", code="live_ended")
    if session.state != LiveState.SCHEDULED or session.scheduled_at is None or session.scheduled_at <= now:
        raise Conflict("这场直播已经开播，预约已截止", code="reservations_closed")
    return session


def reserve(user: User | int, session_id: int, channel: str, *, wxa_consent: bool = False,
            now: dt.datetime | None = None) -> tuple[Reservation, bool]:
    """Reserve a session for a user (once: a second call returns the first reservation and
    False). Refused: unknown session (404 live_not_found), cancelled (409 live_cancelled), ended
    (409 live_ended), started or past its start (409 reservations_closed), unknown channel
    (400 invalid_channel); nothing is written then. A mini-program call with consent arms the
    reservation's subscribe consent (again)."""
    try:
        channel = Channel(channel).value
    except ValueError:
        raise InvalidInput(f"unknown reservation channel {channel!r}", code="invalid_channel") from None
    user_id = user if isinstance(user, int) else user.id
    now = now or utcnow()
    consent = bool(wxa_consent) and channel == Channel.MINIAPP
    with db.atomic():
        _open_session(session_id, now)
        fresh = execute(
            "INSERT INTO reservation (session_id, user_id, channel, wxa_consent, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (session_id, user_id) DO NOTHING",
            (session_id, user_id, channel, consent, _ts(now), _ts(now))).rowcount == 1
        found = Reservation.get((Reservation.session == session_id) & (Reservation.user == user_id))
        if not fresh and consent and not found.wxa_consent:
            Reservation.update(wxa_consent=True, updated_at=now).where(Reservation.id == found.id).execute()
            found.wxa_consent = True
    return found, fresh


def cancel(user: User | int, session_id: int, *, now: dt.datetime | None = None) -> bool:
    """Withdraw one's reservation before T-0 (True when there was one). After the start the
    list is closed (409 reservations_closed): the lottery has drawn from it."""
    user_id = user if isinstance(user, int) else user.id
    with db.atomic():
        _open_session(session_id, now or utcnow())
        return Reservation.delete().where((Reservation.session == session_id)
                                          & (Reservation.user == user_id)).execute() > 0


def is_reserved(session_id: int, user_id: int) -> bool:
    return Reservation.select(pw.SQL("1")).where((Reservation.session == session_id)
                                                 & (Reservation.user == user_id)).exists()


def count(session_id: int) -> int:
    return Reservation.select().where(Reservation.session == session_id).count()


def reserved_after(session_id: int, after_id: int, limit: int = CHUNK) -> list[tuple[int, int]]:
    """The next `limit` reservations after id `after_id` as (reservation_id, user_id), ascending
    id (keyset over the (session_id, user_id) index's session prefix)."""
    rows = execute("SELECT id, user_id FROM reservation WHERE session_id = %s AND id > %s ORDER BY id LIMIT %s",
                   (session_id, after_id, limit)).fetchall()
    return [(int(r[0]), int(r[1])) for r in rows]


def counts(session_ids: list[int]) -> dict[int, int]:
    """Reservations per session, for a creator's list (one GROUP BY)."""
    if not session_ids:
        return {}
    rows = (Reservation.select(Reservation.session, pw.fn.COUNT(Reservation.id))
            .where(Reservation.session.in_(session_ids)).group_by(Reservation.session).tuples())
    return {int(s): int(n) for s, n in rows}
