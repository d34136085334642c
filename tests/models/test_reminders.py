"""The reminder rule (models/reminders.py), as pure functions: which reminders may start when,
which channel carries them, what the subscribe message holds; and the offsets setting."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import reminders
from models.reminders import CANCELLED, RESCHEDULED, Plan, Policy, Target
from qianxing.settings import SettingsError, load_settings

START = dt.datetime(2026, 12, 24, 12, 0)  # naive UTC: 20:00 in Shanghai
POLICY = Policy(offsets=(86400, 600, 0), subscribe_offset=600, late_s=60)


def plan(state: str = "scheduled", version: int = 0, start: dt.datetime | None = START, **kw) -> Plan:  # noqa: ANN003
    return Plan(7, "圣诞福利专场", state, start, version, **kw)


def target(**kw) -> Target:  # noqa: ANN003
    values = dict(reservation_id=1, user_id=1, reserved_at=START - dt.timedelta(days=3), wxa_consent=False)
    values.update(kw)
    return Target(**values)


@pytest.mark.parametrize("before, kinds", [
    (dt.timedelta(days=1, seconds=1), []),
    (dt.timedelta(days=1), ["t86400"]),
    (dt.timedelta(days=1) - dt.timedelta(seconds=60), ["t86400"]),
    (dt.timedelta(days=1) - dt.timedelta(seconds=61), []),
    (dt.timedelta(minutes=10), ["t600"]),
    (dt.timedelta(seconds=0), ["t0"]),
    (-dt.timedelta(seconds=60), ["t0"]),
    (-dt.timedelta(seconds=61), []),
])
def test_a_reminder_may_start_from_its_due_moment_until_late_s_after_it(before, kinds):
    assert reminders.due_kinds(plan(), START - before, POLICY) == kinds


def test_a_reminder_is_written_ahead_and_waits_for_its_moment():
    ahead = Policy(offsets=(86400, 600, 0), subscribe_offset=600, late_s=60, ahead_s=60)
    assert reminders.due_kinds(plan(), START - dt.timedelta(minutes=11), ahead) == ["t600"]
    assert reminders.due_kinds(plan(), START - dt.timedelta(minutes=11, seconds=1), ahead) == []
    # the WeChat window is judged at the moment it will be sent, not when it is written
    fan = target(wechat_chat="oa-1", wechat_seen=START - dt.timedelta(hours=47, minutes=55))
    assert reminders.push_for(plan(), "t600", fan, START - dt.timedelta(minutes=11), ahead) is not None
    assert reminders.push_for(plan(), "t0", fan, START - dt.timedelta(minutes=1), ahead) is None


@given(offsets=st.lists(st.integers(0, 7 * 86400), min_size=1, max_size=4, unique=True),
       late=st.integers(5, 3600), ahead=st.integers(0, 600), at=st.integers(-8 * 86400, 86400))
def test_no_reminder_starts_before_ahead_of_its_moment_or_late(offsets, late, ahead, at):
    # given any offsets and tolerances, at any moment around the start
    policy = Policy(tuple(sorted(offsets, reverse=True)), offsets[0], late, ahead)
    now = START + dt.timedelta(seconds=at)
    # then every reminder the rule starts is at most ahead_s early and late_s behind, and runs never continue
    # after start + late
    for kind in reminders.due_kinds(plan(), now, policy):
        due = reminders.due_at(plan(), kind)
        assert due - dt.timedelta(seconds=ahead) <= now <= due + dt.timedelta(seconds=late)
    assert reminders.may_continue(plan(), "t0", now, policy) == (now <= START + dt.timedelta(seconds=late))


def test_notices_of_a_reschedule_and_a_cancellation():
    # a rescheduled session: its notice while the new start is ahead, never after
    assert RESCHEDULED in reminders.due_kinds(plan(version=1), START - dt.timedelta(hours=5), POLICY)
    assert RESCHEDULED not in reminders.due_kinds(plan(version=1), START + dt.timedelta(seconds=1), POLICY)
    assert RESCHEDULED not in reminders.due_kinds(plan(version=0), START - dt.timedelta(hours=5), POLICY)
    # a cancelled one: the cancellation only (no reminder even at its due moment), for a day
    gone = plan("cancelled", 1, cancelled_at=START - dt.timedelta(hours=1))
    assert reminders.due_kinds(gone, START - dt.timedelta(minutes=10), POLICY) == [CANCELLED]
    assert reminders.due_kinds(gone, START + dt.timedelta(days=1), POLICY) == []
    assert not reminders.may_continue(gone, "t600", START - dt.timedelta(minutes=10), POLICY)
    # an ended session: nothing
    assert reminders.due_kinds(plan("ended"), START, POLICY) == []


def test_channel_priority_telegram_then_the_wechat_window_then_the_consent():
    now = START - dt.timedelta(minutes=10)
    everything = target(telegram_chat="42", wechat_chat="oa-1", wechat_seen=now, wxa_consent=True,
                        miniapp_openid="mini-1")
    assert reminders.push_for(plan(), "t600", everything, now, POLICY) == reminders.Push("telegram", "42")
    # the WeChat window: open up to 48 h minus the margin since the user last wrote
    inside = target(wechat_chat="oa-1", wechat_seen=now - dt.timedelta(hours=47, minutes=49))
    outside = target(wechat_chat="oa-1", wechat_seen=now - dt.timedelta(hours=47, minutes=51))
    assert reminders.push_for(plan(), "t600", inside, now, POLICY) == reminders.Push("wechat", "oa-1")
    assert reminders.push_for(plan(), "t600", outside, now, POLICY) is None
    # the consent: only for the chosen reminder (or a cancellation), only with a real mini-program openid
    consenting = target(wechat_chat="oa-1", wechat_seen=now - dt.timedelta(days=3), wxa_consent=True,
                        miniapp_openid="mini-1")
    assert reminders.push_for(plan(), "t600", consenting, now, POLICY) == reminders.Push("wxa", "mini-1", True)
    assert reminders.push_for(plan(), "t0", consenting, START, POLICY) is None
    assert reminders.push_for(plan("cancelled", 1), CANCELLED, consenting, now, POLICY).platform == "wxa"
    assert reminders.push_for(plan(), "t600", target(wxa_consent=False, miniapp_openid="mini-1"), now, POLICY) is None


def test_a_reservation_made_after_a_reminder_was_due_or_a_change_does_not_get_it():
    late_fan = target(telegram_chat="42", reserved_at=START - dt.timedelta(minutes=5))
    assert reminders.push_for(plan(), "t600", late_fan, START - dt.timedelta(seconds=30), POLICY) is None
    assert reminders.push_for(plan(), "t0", late_fan, START, POLICY) is not None
    moved = plan(version=1, changed_at=START - dt.timedelta(hours=1))
    assert reminders.push_for(moved, RESCHEDULED, late_fan, START - dt.timedelta(minutes=4), POLICY) is None
    assert reminders.push_for(moved, RESCHEDULED, target(telegram_chat="42"), START, POLICY) is not None


def test_messages_say_when_in_shanghai_time_and_fit_the_subscribe_template():
    assert "12月24日 20:00" in reminders.text_of(plan(), "t86400", "Asia/Shanghai")
    assert "1天后" in reminders.text_of(plan(), "t86400", "Asia/Shanghai")
    assert "10分钟后" in reminders.text_of(plan(), "t600", "Asia/Shanghai")
    long = Plan(7, "一个非常非常非常非常非常非常长的直播标题超过二十个字", "scheduled", START, 0)
    body = reminders.payload(long, "t600", "wxa", POLICY, "https://x")
    assert body["template_id"] == POLICY.template_id and body["page"] == "pages/live/index?id=7"
    assert all(len(v["value"]) <= 20 for k, v in body["data"].items() if k.startswith("thing"))
    assert body["data"]["time2"]["value"] == "2026-12-24 20:00"
    assert reminders.payload(plan(), "t600", "telegram", POLICY, "https://x/")["link"] == "https://x/live/7"
    assert reminders.message_key(plan(version=2), "t600", 5) == "live:7:v2:t600:r5"


@pytest.mark.parametrize("offsets, subscribe, ok", [
    ("86400,600,0", 600, True),
    ("0,600,86400", 0, True),
    ("600,600,0", 600, False),  # not distinct
    ("600,590,0", 600, False),  # overlapping: closer than LIVE_REMINDER_MIN_GAP_S
    ("600,-10", 600, False),
    ("86400,600", 0, False),  # the subscribe reminder is not one of them
    ("700000", 700000, False),  # beyond 7 days
])
def test_reminder_offsets_are_validated(offsets, subscribe, ok):
    def build():  # noqa: ANN202
        return load_settings(LIVE_REMINDER_OFFSETS=offsets, LIVE_SUBSCRIBE_REMINDER_OFFSET=subscribe)

    if ok:
        assert build().reminder_offsets == sorted((int(o) for o in offsets.split(",")), reverse=True)
    else:
        with pytest.raises(SettingsError):
            build()
