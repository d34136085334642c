"""The live-session job through RQ (in-process worker): registered every minute, it cancels
the scheduled sessions that never started once LIVE_NEVER_STARTED_GRACE_S has passed, and a
second run (RQ runs jobs at least once) changes nothing."""

from __future__ import annotations

import datetime as dt

from models import live
from models.db import db, utcnow
from models.live import LiveSession
from tasks.live import close_abandoned_sessions
from tasks.periodic import PERIODIC, resolve
from tests.factories import creator, planned_session

JOB = "tasks.live.close_abandoned_sessions"


def test_the_job_runs_every_minute():
    assert (JOB, 60) in PERIODIC
    assert resolve(JOB) is close_abandoned_sessions


def test_the_job_cancels_sessions_never_started_after_the_grace(rt, run_jobs):
    # given (grace 2 h by default) a session planned 2 h 5 min ago, one 1 h 55 min ago, and
    # one planned 3 h ago that went live
    grace = rt.settings.LIVE_NEVER_STARTED_GRACE_S
    host = creator()
    late, in_grace, on_air = planned_session(host), planned_session(host), planned_session(host)
    now = utcnow()
    with db.connection_context():
        for sid, ago in ((late, grace + 300), (in_grace, grace - 300), (on_air, grace + 3600)):
            LiveSession.update(scheduled_at=now - dt.timedelta(seconds=ago)).where(LiveSession.id == sid).execute()
        live.go_live(host, on_air)
    # when the job runs through the worker, twice
    for _ in range(2):
        rt.queue.enqueue(JOB)
        assert run_jobs() == 1
    # then only the late one is cancelled, once (its plan version grew by one)
    with db.connection_context():
        states = {s.id: (s.state, s.plan_version) for s in LiveSession.select()}
    assert states == {late: ("cancelled", 1), in_grace: ("scheduled", 0), on_air: ("live", 0)}
