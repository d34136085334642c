"""The reminder planner (tasks/reminders.py) with the real sender, drain jobs and the fake
Telegram and WeChat servers: each reminder once per reservation on the channel the rule picks,
exactly once across a planner killed mid-batch, re-planned after a reschedule, a cancellation
notice instead of reminders, nothing sent late."""

from __future__ import annotations

import datetime as dt

import pytest

from models import live, reservations
from models.chat import OutboundMessage
from models.db import db, utcnow
from models.reminders import ReminderRun
from models.reservations import Reservation
from tasks.reminders import SEND_EARLY, plan_reminders
from tests.factories import buyer, linked, live_session


@pytest.fixture
def fakes(telegram, fake_wechat):  # noqa: ANN001, ANN201
    fake_wechat.custom_messages.clear()
    fake_wechat.subscribe_messages.clear()
    return telegram, fake_wechat


def _fans(session_id: int, **who: dict) -> dict[str, int]:
    """Buyers (openid = name) with the given reach, each reserving from the mini-program."""
    users = {}
    with db.connection_context():
        for name, reach in who.items():
            consent = reach.pop("consent", False)
            user = linked(buyer(name), **reach)
            reservations.reserve(user, session_id, "miniapp", wxa_consent=consent)
            users[name] = user.id
    return users


def _rows(state: str | None = None) -> int:
    with db.connection_context():
        query = OutboundMessage.select()
        return (query.where(OutboundMessage.state == state) if state else query).count()


def test_the_t10m_reminder_goes_once_on_each_users_channel(rt, fakes, run_jobs):
    telegram, wechat = fakes
    # given a session 10 minutes away, reserved by a Telegram user, a WeChat user inside the 48 h
    # window, a mini-program user with a subscribe consent and one nobody can reach
    start = utcnow() + dt.timedelta(minutes=10, seconds=5)  # the fans reserve before T-10m
    session = live_session(start=start, title="冬日好物专场")
    fans = _fans(session.id, tg={"telegram": "8001"}, wx={"wechat": "oa-fan"}, mini={"consent": True}, nobody={})
    # when the planner runs at T-10m (twice) and the drains run
    first = plan_reminders(now=start - dt.timedelta(minutes=10))
    second = plan_reminders(now=start - dt.timedelta(minutes=10))
    run_jobs()
    # then three messages were written once and sent once each, on the channel the rule picks
    assert (first["written"], first["skipped"], second["written"]) == (3, 1, 0)
    assert [s.text for s in telegram.sent_to("8001")] == [telegram.sent_to("8001")[0].text]
    assert "10分钟后" in telegram.sent_to("8001")[0].text and "冬日好物专场" in telegram.sent_to("8001")[0].text
    assert [m["touser"] for m in wechat.custom_messages] == ["oa-fan"]
    assert [(m["touser"], m["template_id"], m["page"]) for m in wechat.subscribe_messages] == [
        ("mini", rt.settings.LIVE_SUBSCRIBE_TEMPLATE_ID, f"pages/live/index?id={session.id}")]
    # and the consent is used up: the T-0 reminder reaches the chat users only
    with db.connection_context():
        assert not Reservation.get(Reservation.user == fans["mini"]).wxa_consent
    assert plan_reminders(now=start)["written"] == 2
    run_jobs()
    assert len(telegram.sent_to("8001")) == 2 and len(wechat.custom_messages) == 2
    assert len(wechat.subscribe_messages) == 1 and _rows("sent") == 5


def test_a_planner_killed_mid_batch_writes_the_rest_once(rt, fakes, run_jobs):
    telegram, _ = fakes
    # given 25 Telegram users who reserved a session 10 minutes away
    start = utcnow() + dt.timedelta(minutes=10, seconds=5)  # the fans reserve before T-10m
    session = live_session(start=start)
    _fans(session.id, **{f"f{i}": {"telegram": str(9100 + i)} for i in range(25)})
    now = start - dt.timedelta(minutes=10)

    def crash(run: str, rows: int) -> None:
        raise RuntimeError("worker killed")

    # when the planner dies after its first chunk of 10
    with pytest.raises(RuntimeError):
        plan_reminders(now=now, chunk=10, on_chunk=crash)
    assert _rows() == 10
    # and runs again, and once more from scratch as if its progress were lost
    assert plan_reminders(now=now, chunk=10)["written"] == 15
    with db.connection_context():
        ReminderRun.update(cursor=0, done=False).execute()
    assert plan_reminders(now=now, chunk=10)["written"] == 0
    run_jobs()
    # then every user got the reminder exactly once: no duplicate, none lost
    chats = [s.chat_id for s in telegram.sent]
    assert sorted(chats) == sorted(str(9100 + i) for i in range(25)) and _rows("sent") == 25


def test_a_reschedule_supersedes_the_old_plan_and_notifies_once(rt, fakes, run_jobs):
    telegram, wechat = fakes
    # given a session whose T-10m reminders were written but not yet sent
    start = utcnow() + dt.timedelta(minutes=10, seconds=5)  # the fans reserve before T-10m
    session = live_session(start=start)
    _fans(session.id, a={"telegram": "8101"}, b={"telegram": "8102"}, mini={"consent": True})
    assert plan_reminders(now=start - dt.timedelta(minutes=10))["written"] == 3
    # when the creator moves it an hour later and the planner runs (twice)
    new_start = start + dt.timedelta(hours=1)
    live.reschedule(None, session.id, new_start, actor="test")
    moved = plan_reminders()
    assert plan_reminders()["written"] == 0
    run_jobs()
    # then the old reminders are never sent, and each chat user got one "rescheduled" notice
    assert (moved["superseded"], moved["written"]) == (3, 2)
    for chat in ("8101", "8102"):
        assert [("改期" in s.text) for s in telegram.sent_to(chat)] == [True]
    assert wechat.subscribe_messages == []
    # and at the new T-10m the reminders go out for the new plan, the consent given back used now
    assert plan_reminders(now=new_start - dt.timedelta(minutes=10))["written"] == 3
    run_jobs()
    assert [len(telegram.sent_to(c)) for c in ("8101", "8102")] == [2, 2]
    assert "10分钟后" in telegram.sent_to("8101")[-1].text and len(wechat.subscribe_messages) == 1
    assert _rows("failed") == 3 and _rows("sent") == 5


def test_a_cancelled_session_sends_a_cancellation_once_instead_of_reminders(rt, fakes, run_jobs):
    telegram, wechat = fakes
    # given a session 10 minutes away reserved by a Telegram user and a mini-program user with consent
    start = utcnow() + dt.timedelta(minutes=10, seconds=5)  # the fans reserve before T-10m
    session = live_session(start=start)
    _fans(session.id, a={"telegram": "8201"}, mini={"consent": True})
    # when it is cancelled and the planner runs at T-10m, twice
    live.cancel(None, session.id, actor="test")
    done = [plan_reminders(now=start - dt.timedelta(minutes=10)) for _ in range(2)]
    run_jobs()
    # then both heard of the cancellation once (the consent carried it), and no reminder was written
    assert [d["written"] for d in done] == [2, 0]
    assert ["已取消" in s.text for s in telegram.sent_to("8201")] == [True]
    assert [m["data"]["thing3"]["value"] for m in wechat.subscribe_messages] == ["直播已取消"]


def test_a_reminder_is_never_sent_late(rt, fakes, run_jobs):
    telegram, _ = fakes
    # given a session that started a moment ago, reserved by three Telegram users
    start = utcnow() + dt.timedelta(minutes=10, seconds=5)  # the fans reserve before T-10m
    session = live_session(start=start)
    _fans(session.id, **{f"l{i}": {"telegram": str(8300 + i)} for i in range(3)})
    late = rt.settings.LIVE_REMINDER_LATE_S

    def crash(run: str, rows: int) -> None:
        raise RuntimeError("worker killed")

    # when the T-0 run starts in time but dies after one reservation, and resumes only after start + late
    with pytest.raises(RuntimeError):
        plan_reminders(now=start + dt.timedelta(seconds=late - 1), chunk=1, on_chunk=crash)
    resumed = plan_reminders(now=start + dt.timedelta(seconds=late + 1))
    # and a planner that first looks after start + late writes nothing either
    run_jobs()
    # then only the reminder written in time went out; the rest were not sent late
    assert resumed["written"] == 0 and _rows() == 1 and len(telegram.sent) == 1


def test_reminders_written_ahead_wait_for_their_moment(rt, fakes, run_jobs):
    telegram, _ = fakes
    # given a session whose T-10m moment is 50 s away (inside LIVE_REMINDER_AHEAD_S), reserved on Telegram
    start = utcnow() + dt.timedelta(minutes=10, seconds=50)
    session = live_session(start=start)
    _fans(session.id, a={"telegram": "8401"})
    # when the planner runs now and a drain runs
    assert plan_reminders()["written"] == 1
    run_jobs(include_scheduled=False)
    # then the row waits in the outbox for the due moment: nothing is sent early
    with db.connection_context():
        row = OutboundMessage.get()
    assert row.state == "pending" and row.not_before == start - dt.timedelta(minutes=10) - SEND_EARLY
    assert telegram.sent == []
    # and a fan who reserves after that run but before the moment is still reminded at the next run
    _fans(session.id, b={"telegram": "8402"})
    assert plan_reminders()["written"] == 1
