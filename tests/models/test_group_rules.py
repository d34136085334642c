"""The pure group-buy rules (models/group_rules.py): member transitions, joining, limits,
closing decisions, windows, the refund backoff and how a team is shown."""

from __future__ import annotations

import datetime as dt

import pytest

from models import group_rules as rules
from models.errors import Conflict, InvalidInput, InvalidState

NOW = dt.datetime(2026, 12, 7, 12, 0, 0)


def spec(**changes: object) -> rules.ActivitySpec:
    base = dict(sku_code="S", title="三人团", size=3, window_s=3600, group_price_fen=990,
                starts_at=NOW, ends_at=NOW + dt.timedelta(days=1))
    return rules.ActivitySpec(**{**base, **changes})


def test_every_member_path_of_the_issue_is_in_the_table_and_nothing_else_is_allowed():
    # given the member life cycle of the issue
    paths = [("joining", ["paid", "succeed", "delivered"], "delivered"),
             ("joining", ["paid", "fail", "refunded"], "refunded"),
             ("joining", ["leave", "rejoin", "paid"], "paid"),
             ("joining", ["paid", "refunded"], "refunded"),
             ("joining", ["paid", "succeed", "delivered", "refunded"], "refunded")]
    # when each is walked, then it ends where the issue says
    for start, steps, end in paths:
        state = start
        for step in steps:
            state = rules.next_state(state, step)
        assert state == end
    # and a refunded or delivered member cannot be paid, and nobody skips to deliverable
    for state, event in [("refunded", "paid"), ("delivered", "paid"), ("joining", "succeed"), ("left", "succeed")]:
        with pytest.raises(InvalidState):
            rules.next_state(state, event)
    assert rules.sources("succeed") == ("paid",)


def test_joining_refusals_name_their_reason():
    open_team = rules.TeamFacts("open", NOW + dt.timedelta(minutes=5), 2, 3)
    rules.can_join(open_team, NOW, already_member=False)  # a free seat: fine
    cases = [(rules.TeamFacts("succeeded", open_team.expires_at, 3, 3), False, "group_closed"),
             (rules.TeamFacts("open", NOW, 1, 3), False, "group_expired"),
             (open_team, True, "group_already_member"),
             (rules.TeamFacts("open", open_team.expires_at, 3, 3), False, "group_full")]
    for team, member, code in cases:
        with pytest.raises((InvalidState, Conflict)) as exc:
            rules.can_join(team, NOW, already_member=member)
        assert exc.value.code == code and exc.value.status == 409
    with pytest.raises(Conflict) as exc:
        rules.check_user_limit(1, 1)
    assert exc.value.code == "group_limit"
    rules.check_user_limit(1, 2)


def test_an_activity_spec_is_checked_whole():
    rules.check_spec(spec(), retail_fen=1990)
    for changes, code in [({"size": 1}, "invalid_size"), ({"size": 51}, "invalid_size"),
                          ({"window_s": 59}, "invalid_window_s"), ({"window_s": 604_801}, "invalid_window_s"),
                          ({"group_price_fen": 0}, "invalid_group_price_fen"),
                          ({"group_price_fen": 1991}, "invalid_group_price_fen"),
                          ({"size": True}, "invalid_size"), ({"per_user_limit": 0}, "invalid_per_user_limit"),
                          ({"stock": 2}, "invalid_stock"), ({"max_teams": 0}, "invalid_max_teams"),
                          ({"ends_at": NOW}, "invalid_window"),
                          ({"starts_at": NOW.replace(tzinfo=dt.UTC)}, "invalid_window"),
                          ({"title": " "}, "invalid_title"), ({"virtual_complete": 1}, "invalid_flag")]:
        with pytest.raises(InvalidInput) as exc:
            rules.check_spec(spec(**changes), retail_fen=1990)
        assert exc.value.code == code, changes


def test_closing_decisions_windows_and_deadlines():
    assert rules.close_decision(paid_count=1, size=3, virtual_complete=False) == rules.Closing("failed", 0)
    assert rules.close_decision(paid_count=1, size=3, virtual_complete=True) == rules.Closing("succeeded", 2)
    assert rules.close_decision(paid_count=0, size=3, virtual_complete=True) == rules.Closing("failed", 0)
    assert rules.close_decision(paid_count=3, size=3, virtual_complete=False) == rules.Closing("succeeded", 0)
    ends = NOW + dt.timedelta(minutes=10)
    assert rules.team_expiry(NOW, 3600, ends) == ends  # never past the activity's end
    assert rules.team_expiry(NOW, 60, ends) == NOW + dt.timedelta(seconds=60)
    assert rules.order_deadline(NOW + dt.timedelta(minutes=15), ends) == ends
    with pytest.raises(InvalidState):
        rules.check_open(True, NOW, ends, ends)
    with pytest.raises(InvalidState):
        rules.check_open(False, NOW, ends, NOW)


def test_refund_backoff_follows_the_schedule_then_every_hour():
    schedule = rules.parse_backoff("30,120,600,1800,3600")
    assert [rules.refund_backoff(n, schedule) for n in range(1, 8)] == [30, 120, 600, 1800, 3600, 3600, 3600]
    assert rules.refund_backoff(0, schedule) == 0
    with pytest.raises(ValueError):
        rules.parse_backoff("30,x")


def test_progress_and_masked_names():
    assert rules.progress(2, 3) == "2/3，还差1人"
    assert rules.progress(3, 3) == "3/3，已成团"
    assert rules.mask_name("张三丰") == "张**" and rules.mask_name("Al") == "A*" and rules.mask_name("") == "拼团用户"
