"""Creator-network jobs through RQ (in-process worker): level evaluation with the runtime's
settings and notifiers, traffic rewards, and their periodic registration."""

from __future__ import annotations

import itertools

from models import activity, ledger, network
from models.activity import TrackEvent
from models.db import db, utcnow
from models.network import Creator
from models.notifications import Notification, NotificationAttempt
from tasks.worker import PERIODIC, _resolve
from tests.conftest import buyer

_n = itertools.count(1)


def creator(parent: Creator | None = None) -> Creator:
    with db.connection_context():
        c = network.become_creator(buyer(f"job-creator-{next(_n)}"))
        return network.bind(c, parent.code, "typed") if parent else c


def plays(c: Creator, count: int, ref: str = "v1") -> None:
    with db.connection_context():
        activity.record_events([TrackEvent(f"job-{next(_n)}", c.code, "video_play", ref, count, utcnow())],
                               user_id=None, source="csv")


def test_level_evaluation_runs_as_a_job_with_the_runtime_settings_and_channels(rt, run_jobs, fake_wechat):
    # given a creator with the entry (a video, two invites) and the test runtime's only
    # channel, the mini-program subscribe message (whose template is the delivery notice)
    star = creator()
    plays(star, 3)
    creator(star), creator(star)
    sent_before = len(fake_wechat.subscribe_messages)
    # when the job is enqueued by its dotted name (as settlement does) twice and run
    rt.queue.enqueue("tasks.network.evaluate_levels")
    rt.queue.enqueue("tasks.network.evaluate_levels")
    assert run_jobs() == 2
    # then the creator is one-star once; the level-up could not go out on the delivery
    # template, so it is recorded as failed (one attempt) and nothing was sent to WeChat
    with db.connection_context():
        assert Creator.get_by_id(star.id).rank == 1
        note = Notification.get(Notification.key == f"level_up:{star.id}:1:wxa_subscribe")
        assert (note.state, note.attempts, note.order_id) == ("failed", 1, 0)
        assert "no subscribe template" in note.last_error
        assert NotificationAttempt.select().where(NotificationAttempt.notification == note.id).count() == 1
    assert len(fake_wechat.subscribe_messages) == sent_before


def test_traffic_rewards_run_as_a_job_and_pay_once(rt, run_jobs):
    # given a video past 500k plays
    c = creator()
    plays(c, 550_000)
    # when the job runs twice
    rt.queue.enqueue("tasks.network.award_traffic_rewards")
    rt.queue.enqueue("tasks.network.award_traffic_rewards")
    run_jobs()
    # then the 500-yuan tier was paid once, straight to the available balance
    with db.connection_context():
        assert ledger.balance(ledger.creator_account(c.id, ledger.AVAILABLE)) == -50_000
        assert ledger.LedgerTransaction.select().where(
            ledger.LedgerTransaction.kind == activity.TRAFFIC_REWARD).count() == 1


def test_both_jobs_are_periodic():
    periodic = dict(PERIODIC)
    assert periodic["tasks.network.evaluate_levels"] <= 86400
    assert periodic["tasks.network.award_traffic_rewards"] <= 86400
    assert callable(_resolve("tasks.network.evaluate_levels"))
    assert callable(_resolve("tasks.network.award_traffic_rewards"))
