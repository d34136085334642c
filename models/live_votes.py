"""Live votes: during a live session the creator opens a poll ("should she buy it?") with 2-6
options and an optional duration; every viewer votes once (unique (poll, user) in the database);
the results show on the dashboard and on the session page; the creator closes it, or its time
runs out, or the session ends.

Bad input writes nothing: a poll on a session that is not live (or not the creator's), too few
or too many options, a vote after the poll closed, a second vote, an option of another poll.
Counts are kept on the option rows, incremented in the vote's transaction: results are a read
of at most six rows, never a count of the votes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import peewee as pw

from models import events
from models.db import BaseModel, db, lock_rows, utcnow
from models.errors import Conflict, InvalidInput, NotFound
from models.live import LiveSession, LiveState
from models.network import Creator

MIN_OPTIONS, MAX_OPTIONS = 2, 6
QUESTION_MAX, OPTION_MAX = 120, 40
MIN_DURATION_S, MAX_DURATION_S = 10, 24 * 3600
MAX_OPEN_POLLS = 3  # open at once per session
PUBLIC_POLLS = 5  # the most recent polls a session page shows


class LivePoll(BaseModel):
    session = pw.ForeignKeyField(LiveSession, backref="polls", on_delete="CASCADE")
    question = pw.CharField(max_length=QUESTION_MAX)
    opened_at = pw.DateTimeField(default=utcnow)
    closes_at = pw.DateTimeField(null=True)  # None: open until the creator closes it or the session ends
    closed_at = pw.DateTimeField(null=True)  # closed by the creator (or an operator)
    total = pw.IntegerField(default=0)

    class Meta:
        indexes = ((("session", "id"), False),)


class LivePollOption(BaseModel):
    poll = pw.ForeignKeyField(LivePoll, backref="options", on_delete="CASCADE")
    position = pw.IntegerField()  # 1..6
    label = pw.CharField(max_length=OPTION_MAX)
    votes = pw.IntegerField(default=0)

    class Meta:
        indexes = ((("poll", "position"), True),)


class LiveVote(BaseModel):
    poll = pw.ForeignKeyField(LivePoll, on_delete="CASCADE", index=False)
    user_id = pw.BigIntegerField()
    option = pw.ForeignKeyField(LivePollOption, on_delete="CASCADE", index=False)
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("poll", "user_id"), True),)  # one vote per viewer


@dataclass(frozen=True)
class PollSpec:
    question: str
    options: tuple[str, ...]
    duration_s: int | None


BLANK = " \t\n\r\f\v"  # trimmed from questions and options (the API's pattern refuses them at the ends)
TRIMMED = r"^[^ \t\n\r\f\v\x00](?:[^\x00]*[^ \t\n\r\f\v\x00])?$"


def _clean(text: Any) -> str:
    return text.strip(BLANK) if isinstance(text, str) else ""


def parse_poll(question: Any, options: Any, duration_s: Any = None) -> PollSpec:
    """A poll as typed: a question (1-120 characters), 2-6 distinct options (1-40 characters
    each) and an optional duration in seconds (10 s to 24 h). Raises InvalidInput
    (invalid_question, invalid_options, duplicate_option, invalid_duration)."""
    q = _clean(question)
    if not q or len(q) > QUESTION_MAX or "\x00" in q:
        raise InvalidInput(f"投票问题需要 1-{QUESTION_MAX} 个字。", code="invalid_question")
    if not isinstance(options, list | tuple) or not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
        raise InvalidInput(f"投票需要 {MIN_OPTIONS}-{MAX_OPTIONS} 个选项。", code="invalid_options")
    labels = tuple(_clean(o) for o in options)
    if any(not o or len(o) > OPTION_MAX or "\x00" in o for o in labels):
        raise InvalidInput(f"每个选项需要 1-{OPTION_MAX} 个字。", code="invalid_options")
    if len(set(labels)) != len(labels):
        raise InvalidInput("选项不能重复。", code="duplicate_option")
    if duration_s is not None and (isinstance(duration_s, bool) or not isinstance(duration_s, int)
                                   or not MIN_DURATION_S <= duration_s <= MAX_DURATION_S):
        raise InvalidInput(f"投票时长需要 {MIN_DURATION_S} 秒到 24 小时。", code="invalid_duration")
    return PollSpec(q, labels, duration_s)


def open_poll(creator: Creator, session_id: int, spec: PollSpec, *, now: dt.datetime | None = None) -> LivePoll:
    """Open a poll in the creator's live session. Raises NotFound (live_not_found), Conflict
    (session_not_live, too_many_open_polls)."""
    now = now or utcnow()
    with db.atomic():
        session = lock_rows(LiveSession.select().where(
            LiveSession.id == session_id, LiveSession.creator == creator.id)).first()
        if session is None:
            raise NotFound(f"live session {session_id} not found", code="live_not_found")
        if session.state != LiveState.LIVE:
            raise Conflict("只有直播中的场次可以发起投票。", code="session_not_live")
        open_now = [p for p in LivePoll.select().where(LivePoll.session == session_id, LivePoll.closed_at.is_null())
                    if not _expired(p, now)]
        if len(open_now) >= MAX_OPEN_POLLS:
            raise Conflict(f"同时最多进行 {MAX_OPEN_POLLS} 个投票，请先结束一个。", code="too_many_open_polls")
        closes_at = now + dt.timedelta(seconds=spec.duration_s) if spec.duration_s else None
        poll = LivePoll.create(session=session_id, question=spec.question, opened_at=now, closes_at=closes_at)
        LivePollOption.insert_many([{"poll": poll.id, "position": i, "label": label}
                                    for i, label in enumerate(spec.options, start=1)]).execute()
        events.record("live.poll_opened", f"live:{session_id}", creator.actor, poll=poll.id)
    return poll


def _expired(poll: LivePoll, now: dt.datetime) -> bool:
    return poll.closes_at is not None and poll.closes_at <= now


def is_closed(poll: LivePoll, session_state: str, now: dt.datetime) -> bool:
    """Closed by the creator, by its time, or because the session is no longer live."""
    return poll.closed_at is not None or _expired(poll, now) or session_state != LiveState.LIVE


def close_poll(creator: Creator | None, poll_id: int, *, actor: str,
               now: dt.datetime | None = None) -> tuple[LivePoll, bool]:
    """Close a poll (the creator's own, or any with creator=None for operators). Closing twice
    is harmless: (poll, closed_now). Raises NotFound (poll_not_found)."""
    now = now or utcnow()
    with db.atomic():
        query = LivePoll.select(LivePoll).join(LiveSession).where(LivePoll.id == poll_id)
        if creator is not None:
            query = query.where(LiveSession.creator == creator.id)
        poll = query.first()
        if poll is None:
            raise NotFound(f"poll {poll_id} not found", code="poll_not_found")
        if poll.closed_at is not None:
            return poll, False
        closed = LivePoll.update(closed_at=now).where(LivePoll.id == poll_id, LivePoll.closed_at.is_null()).execute()
        if closed:
            events.record("live.poll_closed", f"live:{poll.session_id}", actor, poll=poll_id)
        poll.closed_at = now
    return poll, bool(closed)


def vote(user_id: int, poll_id: int, option_id: int, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The viewer's one vote. Raises NotFound (poll_not_found, unknown_option), Conflict
    (poll_closed, already_voted); nothing is written then. Returns the poll's results
    with the viewer's vote."""
    now = now or utcnow()
    poll = LivePoll.get_or_none(LivePoll.id == poll_id)
    if poll is None:
        raise NotFound(f"poll {poll_id} not found", code="poll_not_found")
    option = LivePollOption.get_or_none(LivePollOption.id == option_id, LivePollOption.poll == poll_id)
    if option is None:
        raise NotFound("这个投票没有这个选项。", code="unknown_option")
    state = LiveSession.select(LiveSession.state).where(LiveSession.id == poll.session_id).scalar()
    if is_closed(poll, state, now):
        raise Conflict("投票已经结束了。", code="poll_closed")
    try:
        with db.atomic():
            LiveVote.create(poll=poll_id, user_id=user_id, option=option_id, created_at=now)
            # re-checked in the transaction: a vote never lands after the creator closed it
            counted = LivePoll.update(total=LivePoll.total + 1).where(
                LivePoll.id == poll_id, LivePoll.closed_at.is_null()).execute()
            if not counted:
                raise Conflict("投票已经结束了。", code="poll_closed")
            LivePollOption.update(votes=LivePollOption.votes + 1).where(LivePollOption.id == option_id).execute()
    except pw.IntegrityError:
        raise Conflict("你已经投过票了。", code="already_voted") from None
    return results(poll_id, user_id, now=now)


def _poll_out(poll: LivePoll, options: list[LivePollOption], state: str, mine: int | None,
              now: dt.datetime) -> dict[str, Any]:
    return {"id": poll.id, "session_id": poll.session_id, "question": poll.question,
            "options": [{"id": o.id, "position": o.position, "label": o.label, "votes": o.votes} for o in options],
            "total": sum(o.votes for o in options), "my_vote": mine,
            "closed": is_closed(poll, state, now),
            "opened_at": poll.opened_at.isoformat() + "Z",
            "closes_at": poll.closes_at.isoformat() + "Z" if poll.closes_at else None}


def results(poll_id: int, user_id: int | None = None, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """One poll with its counts, whether it is closed and the viewer's vote (option id).
    Raises NotFound (poll_not_found)."""
    poll = LivePoll.get_or_none(LivePoll.id == poll_id)
    if poll is None:
        raise NotFound(f"poll {poll_id} not found", code="poll_not_found")
    return _polls([poll], user_id, now or utcnow())[0]


def public_polls(session_id: int, user_id: int | None = None, *, now: dt.datetime | None = None,
                 limit: int = PUBLIC_POLLS) -> list[dict[str, Any]]:
    """The session's most recent polls (newest first) for the session page and the dashboard:
    question, options with counts, total, my vote (option id or None), closed. Three small
    indexed reads."""
    polls = list(LivePoll.select().where(LivePoll.session == session_id).order_by(LivePoll.id.desc()).limit(limit))
    return _polls(polls, user_id, now or utcnow())


def session_polls(session_id: int, user_id: int | None = None) -> list[dict[str, Any]]:
    """public_polls of a session that must exist. Raises NotFound (live_not_found)."""
    if not LiveSession.select().where(LiveSession.id == session_id).exists():
        raise NotFound(f"live session {session_id} not found", code="live_not_found")
    return public_polls(session_id, user_id)


def _polls(polls: list[LivePoll], user_id: int | None, now: dt.datetime) -> list[dict[str, Any]]:
    if not polls:
        return []
    ids = [p.id for p in polls]
    options: dict[int, list[LivePollOption]] = {i: [] for i in ids}
    for o in LivePollOption.select().where(LivePollOption.poll.in_(ids)).order_by(LivePollOption.position):
        options[o.poll_id].append(o)
    mine: dict[int, int] = {}
    if user_id is not None:
        mine = {v.poll_id: v.option_id for v in LiveVote.select(LiveVote.poll, LiveVote.option)
                .where(LiveVote.poll.in_(ids), LiveVote.user_id == user_id)}
    states = dict(LiveSession.select(LiveSession.id, LiveSession.state)
                  .where(LiveSession.id.in_({p.session_id for p in polls})).tuples())
    return [_poll_out(p, options[p.id], states.get(p.session_id, ""), mine.get(p.id), now) for p in polls]


def current_session(creator: Creator) -> LiveSession | None:
    """The creator's live session (the most recent if several), for the chat commands."""
    return (LiveSession.select().where(LiveSession.creator == creator.id, LiveSession.state == LiveState.LIVE)
            .order_by(LiveSession.id.desc()).first())


def poll_of_creator(creator: Creator, poll_id: int) -> LivePoll:
    poll = (LivePoll.select(LivePoll).join(LiveSession)
            .where(LivePoll.id == poll_id, LiveSession.creator == creator.id).first())
    if poll is None:
        raise NotFound(f"poll {poll_id} not found", code="poll_not_found")
    return poll
