"""The periodic broadcast sweep (tasks.broadcasts.resume_unfinished), run by the real worker
(run_jobs) with the real sender and the fake Telegram Bot API: a broadcast whose job was lost,
or whose fan-out died half-way, is queued again and every recipient gets the message once; what
is progressing, finished, or older than a day is left alone, and a stalled broadcast is queued
again once however often the sweep runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from models import broadcasts
from models.broadcasts import Audience, Broadcast
from models.chat import OutboundMessage
from models.db import db, utcnow
from tasks.broadcasts import RESUME_AFTER_S, queue_broadcast, resume_unfinished
from tests.factories import chat_user
from tests.fakes.telegram_api import FakeTelegramAPI

SWEEP = "tasks.broadcasts.resume_unfinished"
CHATS = ["8001", "8002", "8003", "8004", "8005"]


class WorkerKilled(Exception):
    """The worker running the fan-out died (kill -9, out of memory) after its first chunk."""


def users() -> None:
    for chat in CHATS:
        chat_user("telegram", chat)


def sent() -> Broadcast:
    """A broadcast as the admin leaves it when the job could not be queued (Redis refused it)."""
    with db.connection_context():
        return broadcasts.create(Audience("platform", "telegram"), "周末特惠", share_base="https://shop.example")


def fresh(b: Broadcast) -> Broadcast:
    with db.connection_context():
        return Broadcast.get_by_id(b.id)


def age(b: Broadcast, minutes: float) -> None:
    """Move the broadcast and its outbox rows `minutes` into the past (time passing)."""
    then = utcnow() - dt.timedelta(minutes=minutes)
    with db.connection_context():
        started = Broadcast.get_by_id(b.id).started_at
        Broadcast.update(created_at=then, started_at=then if started else None).where(Broadcast.id == b.id).execute()
        OutboundMessage.update(created_at=then).where(OutboundMessage.broadcast_id == b.outbox_id).execute()


def first_chunk_then_killed(rt, b: Broadcast) -> None:  # noqa: ANN001
    """The fan-out hands its first chunk (2 chats) to the real sender, then its worker dies."""
    calls = []

    def write(chats: Sequence[str]) -> int:
        calls.append(chats)
        if len(calls) > 1:
            raise WorkerKilled
        return rt.sender.broadcast(b.outbox_id, chats, b.payload, platform=b.platform, chat_kind=b.chat_kind)

    with db.connection_context():
        try:
            broadcasts.fan_out(b.id, write, chunk=2)
        except WorkerKilled:
            pass


STALLED = RESUME_AFTER_S / 60 + 1  # minutes


def test_a_broadcast_whose_job_was_lost_is_sent_by_the_sweep(rt, run_jobs, telegram: FakeTelegramAPI) -> None:  # noqa: ANN001
    """Given a broadcast to five Telegram users whose job never reached the queue; when the sweep
    runs at once, then it waits (the job may still be on its way); when it runs once the
    broadcast has been waiting longer than RESUME_AFTER_S, then every user gets the message
    once and the broadcast is written; a later sweep queues nothing, and a job that comes late
    (queued twice) finds it written and sends nothing, not even to a user who joined since."""
    users()
    b = sent()
    rt.queue.enqueue(SWEEP)
    run_jobs()
    assert telegram.sent == [] and fresh(b).state == "queued"
    # when it has waited long enough
    age(b, STALLED)
    rt.queue.enqueue(SWEEP)
    run_jobs()
    assert sorted(s.chat_id for s in telegram.sent) == CHATS
    done = fresh(b)
    assert (done.state, done.written) == ("written", 5)
    # and a finished broadcast is not queued again
    age(b, STALLED)
    assert resume_unfinished() == [] and rt.queue.count == 0
    chat_user("telegram", "8006")
    assert queue_broadcast(b.id)
    run_jobs()
    assert len(telegram.sent) == 5 and fresh(b).written == 5


def test_a_fan_out_that_died_half_way_is_resumed_where_it_stopped(rt, run_jobs,
                                                                   telegram: FakeTelegramAPI) -> None:  # noqa: ANN001
    """Given a broadcast whose worker died after handing its first two recipients to the
    outbox (they got it); when the sweep runs while that is recent, then nothing is queued; when
    nothing has happened for longer than RESUME_AFTER_S, then the sweep queues it again, the
    other three get the message, and nobody gets it twice."""
    users()
    b = sent()
    first_chunk_then_killed(rt, b)
    run_jobs()
    assert sorted(s.chat_id for s in telegram.sent) == CHATS[:2]
    assert (fresh(b).state, fresh(b).written) == ("writing", 2)
    assert resume_unfinished() == []
    # when it has stalled
    age(b, STALLED)
    rt.queue.enqueue(SWEEP)
    run_jobs()
    assert sorted(s.chat_id for s in telegram.sent) == CHATS
    assert (fresh(b).state, fresh(b).written) == ("written", 5)


def test_the_sweep_queues_a_stalled_broadcast_once_and_leaves_the_rest(rt, run_jobs,
                                                                        telegram: FakeTelegramAPI) -> None:  # noqa: ANN001
    """Given a stalled broadcast, one that started long ago but wrote outbox rows a minute ago
    (progressing), and one unfinished since two days (left to the operator); when the sweep
    runs twice, then only the stalled one is queued, once; when the jobs run, its recipients get
    it once and the other two are untouched."""
    users()
    stalled, progressing, old = sent(), sent(), sent()
    age(stalled, STALLED)
    first_chunk_then_killed(rt, progressing)
    with db.connection_context():
        then = utcnow() - dt.timedelta(minutes=30)
        Broadcast.update(created_at=then, started_at=then).where(Broadcast.id == progressing.id).execute()
    age(old, 2 * 24 * 60)
    queued = rt.queue.count  # the drain of the progressing broadcast's rows
    assert resume_unfinished() == [stalled.id]
    assert resume_unfinished() == []  # a second sweep (another cron, the next round) waits
    assert rt.queue.count == queued + 1
    run_jobs()
    assert fresh(stalled).state == "written" and fresh(progressing).written == 2 and fresh(old).state == "queued"
    assert sorted(s.chat_id for s in telegram.sent if "周末特惠" in s.text) == sorted(CHATS + CHATS[:2])
