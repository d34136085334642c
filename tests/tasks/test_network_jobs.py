"""Creator-network jobs through RQ (in-process worker): level evaluation with the runtime's
settings and notifiers, traffic rewards, and their periodic registration."""

from __future__ import annotations

from bots.notify import THING_MAX, MiniProgramSubscribeNotifier, build_notifiers
from models import activity, ledger, level_evaluation
from models.db import db
from models.network import Creator
from models.notifications import Notification, NotificationAttempt
from tasks.periodic import PERIODIC, resolve
from tests.factories import creator, plays


def test_level_evaluation_runs_as_a_job_with_the_runtime_settings_and_channels(rt, run_jobs, fake_wechat):
    # given a creator with the entry (a video, two invites) and the test runtime's only
    # channel, the mini-program subscribe message (whose template is the delivery notice)
    star = creator()
    plays(star, 3)
    creator(parent=star), creator(parent=star)
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


def test_with_a_level_up_template_the_level_up_goes_out_as_a_subscribe_message(
        rt, run_jobs, fake_wechat, monkeypatch):
    # given the subscribe channel with a level-up template configured as well
    monkeypatch.setattr(rt, "notifiers", build_notifiers(
        ["wxa_subscribe"], rt.wechat, rt.settings.WECHAT_SUBSCRIBE_TEMPLATE_ID,
        levelup_template_id="levelup-tpl"))
    star = creator()
    plays(star, 3)
    creator(parent=star), creator(parent=star)
    with db.connection_context():
        openid = star.user.openid
    sent_before = len(fake_wechat.subscribe_messages)
    # when the evaluation job runs twice
    rt.queue.enqueue("tasks.network.evaluate_levels")
    rt.queue.enqueue("tasks.network.evaluate_levels")
    assert run_jobs() == 2
    # then WeChat got one message on the level-up template, with the new level and its note
    (message,) = fake_wechat.subscribe_messages[sent_before:]
    assert (message["touser"], message["template_id"]) == (openid, "levelup-tpl")
    assert message["data"]["thing1"] == {"value": "一星"}
    assert message["data"]["thing2"] == {"value": "恭喜升级为一星！"}
    assert message["page"] == "pages/earnings/index"
    with db.connection_context():
        note = Notification.get(Notification.key == f"level_up:{star.id}:1:wxa_subscribe")
        assert (note.state, note.attempts) == ("sent", 1)


def test_a_level_up_note_too_long_for_a_thing_field_is_cut_to_fit():
    # given the top level's note with its bonus (longer than WeChat's 20-character `thing`)
    notice = level_evaluation.level_up_notice(6, "千星", 6, 100_000)
    assert len(notice.text) > THING_MAX
    # when it becomes a subscribe message, then the note is cut with an ellipsis to 20
    template, data = MiniProgramSubscribeNotifier(None, "delivery", "levelup")._message(notice)
    assert template == "levelup"
    assert len(data["thing2"]["value"]) == THING_MAX and data["thing2"]["value"].endswith("…")
    assert notice.text.startswith(data["thing2"]["value"][:-1])


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
    assert callable(resolve("tasks.network.evaluate_levels"))
    assert callable(resolve("tasks.network.award_traffic_rewards"))
