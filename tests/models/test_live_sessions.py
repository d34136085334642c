"""Live sessions as a service: scheduling with pins, ladders, assist offers and a lottery (all
validated before anything is written), the state machine (go live, end, reschedule, cancel,
close the never-started), and the times (stored UTC, shown in LIVE_TIMEZONE)."""

from __future__ import annotations

import datetime as dt

import pytest

from models import assist, live, live_planning, live_prices, lottery
from models.db import db, utcnow
from models.errors import InvalidInput, InvalidState, NotFound
from models.events import events_for
from models.live import LivePin, LiveSession, LiveState
from models.live_planning import PinSpec, SessionSpec
from models.live_rules import TRANSITIONS, Action, in_zone, local_time, next_state, to_utc
from tests.factories import creator, planned_session

SHANGHAI = "Asia/Shanghai"


def soon(hours: float = 2) -> dt.datetime:
    return utcnow() + dt.timedelta(hours=hours)


def topics(session_id: int) -> list[str]:
    with db.connection_context():
        return [e.topic for e in events_for(f"live:{session_id}")]


def reload(session_id: int) -> LiveSession:
    with db.connection_context():
        return LiveSession.get_by_id(session_id)


def test_schedule_writes_the_session_its_pins_ladder_assist_and_lottery(rt, shop):
    # given two products on sale and a host
    host, tea, card = creator(name="小美"), shop.card_sku(keys=20, price=9900), shop.card_sku(keys=20, price=1990)
    start = soon(3)
    spec = SessionSpec("周末福利专场", start, 90, "https://cdn.example.com/c.jpg", pins=[
        PinSpec(tea.code, start + dt.timedelta(minutes=10),
                ladder={"tiers": [{"units": 50, "price_fen": 990}, {"units": 50, "price_fen": 1990}]},
                assist={"helpers_needed": 3, "price_fen": 6900}),
        PinSpec(card.code)], lottery={"threshold": 100, "prizes": 10, "prize_sku": card.code})
    # when the host schedules it
    with db.connection_context():
        session = live_planning.schedule(host, spec)
        pins = live.pins_of(session.id)
        offers, draw = live_prices.offers(session.id), lottery.public_state(session.id)
        assisted = [o.price_fen for o in assist.PinOffer.select().where(assist.PinOffer.pin == pins[0].id)]
    # then it is scheduled (not started) at the planned time, with both pins in order
    assert (session.state, session.started_at, session.plan_version) == ("scheduled", None, 0)
    assert session.scheduled_at == start.replace(microsecond=0) and session.expected_minutes == 90
    assert [(p.sku.code, p.position) for p in pins] == [(tea.code, 0), (card.code, 1)]
    assert pins[0].slot_at == (start + dt.timedelta(minutes=10)).replace(microsecond=0) and pins[1].slot_at is None
    # and the ladder, the assist offer and the lottery were saved by their areas
    assert offers[pins[0].id]["price_fen"] == 990 and offers[pins[0].id]["left_total"] == 100
    assert pins[1].id not in offers and assisted == [6900]
    assert draw["threshold"] == 100 and len(draw["seed_hash"]) == 64
    assert topics(session.id) == ["live.scheduled"]


@pytest.mark.parametrize("change, code", [
    ({"title": "  "}, "invalid_title"),
    ({"scheduled_at": -1}, "live_start_past"),
    ({"scheduled_at": 24 * 91}, "live_start_too_far"),
    ({"expected_minutes": 0}, "invalid_expected_minutes"),
    ({"expected_minutes": 721}, "invalid_expected_minutes"),
    ({"cover_url": "http://cdn.example.com/c.jpg"}, "invalid_cover_url"),
    ({"cover_url": "javascript:alert(1)"}, "invalid_cover_url"),
    ({"pins": [PinSpec("NOPE")]}, "unknown_sku"),
    ({"pins": [PinSpec("CARD-1"), PinSpec("CARD-1")]}, "duplicate_pin"),
    ({"pins": [PinSpec("CARD-1"), PinSpec("CARD-2"), PinSpec("CARD-3")]}, "too_many_pins"),
    ({"pins": [PinSpec("CARD-1", slot_at=-1)]}, "invalid_slot"),
    ({"pins": [PinSpec("CARD-1", ladder={"tiers": [{"units": 5, "price_fen": -1}]})]}, "negative_price"),
    ({"pins": [PinSpec("CARD-1", ladder={"tiers": [{"units": 5, "price_fen": 99_999}]})]}, "price_over_retail"),
    ({"pins": [PinSpec("CARD-1", ladder={"tiers": [{"units": 0, "price_fen": 100}]})]}, "zero_units"),
    ({"pins": [PinSpec("CARD-2"), PinSpec("CARD-1", assist={"helpers_needed": 0, "price_fen": 1})]},
     "invalid_assist"),
    ({"lottery": {"threshold": 5, "prizes": 6, "prize_sku": "CARD-1"}}, "lottery_prizes_over_threshold"),
])
def test_bad_plans_are_refused_and_nothing_is_written(rt, shop, change, code):
    # given a host and three products on sale; a plan with one bad field (the rest valid)
    host = creator()
    for _ in range(3):
        shop.card_sku(keys=10, price=1990)
    start = soon(2)
    fields = {"title": "新品首发", "scheduled_at": start, "expected_minutes": 60, "cover_url": "",
              "pins": [PinSpec("CARD-2")], "lottery": None, **change}
    if isinstance(fields["scheduled_at"], int):
        fields["scheduled_at"] = utcnow() + dt.timedelta(hours=fields["scheduled_at"])
    fields["pins"] = [PinSpec(p.sku_code, start - dt.timedelta(minutes=5), p.ladder, p.assist)
                      if p.slot_at == -1 else p for p in fields["pins"]]
    # when it is scheduled (two pins at most)
    with db.connection_context(), pytest.raises(InvalidInput) as refused:
        live_planning.schedule(host, SessionSpec(**fields), max_pins=2)
    # then it is refused with the rule's code, and nothing at all was written
    assert refused.value.code == code
    with db.connection_context():
        assert LiveSession.select().count() == 0 and LivePin.select().count() == 0


def test_the_state_machine_is_one_table():
    refusals = {"scheduled": "live_not_started", "live": "live_already_started", "ended": "live_ended",
                "cancelled": "live_cancelled"}
    for state in LiveState:
        for action in Action:
            # when an action is asked of a session in a state
            if (state.value, action) in TRANSITIONS:
                # then an allowed pair leads where the table says
                assert next_state(state.value, action) == TRANSITIONS[(state.value, action)]
                continue
            # and any other is refused with a code naming the state that forbids it
            with pytest.raises(InvalidState) as refused:
                next_state(state.value, action)
            assert refused.value.code == refusals[state.value], (state, action)
    # the lifecycle: planned sessions go live, then end; only planned ones are moved or cancelled
    assert [s for s, a in TRANSITIONS if a == Action.RESCHEDULE] == ["scheduled"]
    assert {TRANSITIONS[(s, a)] for s, a in TRANSITIONS if a in (Action.CANCEL, Action.ABANDON)} == {"cancelled"}


def test_go_live_then_end_and_repeats_are_harmless(rt):
    # given a scheduled session
    host = creator()
    sid = planned_session(host)
    with db.connection_context():
        # when the host ends it before going live: refused, it was never live
        with pytest.raises(InvalidState) as refused:
            live.end_live(host, sid)
        assert refused.value.code == "live_not_started"
        # when the host goes live (twice: a double tap)
        started = live.go_live(host, sid)
        again = live.go_live(host, sid)
        # then it is live since the first tap
        assert started.state == "live" and started.started_at is not None
        assert again.started_at == started.started_at
        # and ending it works once; the second end changes nothing
        ended, now = live.end_live(host, sid)
        _, twice = live.end_live(host, sid)
    assert ended.state == "ended" and now is True and twice is False
    assert topics(sid) == ["live.scheduled", "live.started", "live.ended"]


def test_someone_elses_session_is_not_found(rt):
    # given a session of one creator
    host, other = creator(), creator()
    sid = planned_session(host)
    with db.connection_context():
        # when another creator acts on it, or anyone on a session that does not exist
        for act in (lambda: live.go_live(other, sid), lambda: live.cancel(other, sid),
                    lambda: live.reschedule(other, sid, soon(5)), lambda: live.end_live(other, sid),
                    lambda: live.get_session(sid + 100)):
            # then it is not found (another's session is not revealed), and nothing changed
            with pytest.raises(NotFound) as missing:
                act()
            assert missing.value.code == "live_not_found"
    assert reload(sid).state == "scheduled" and reload(sid).plan_version == 0


def test_reschedule_moves_the_slots_and_bumps_the_plan_version(rt, shop):
    # given a session in 2 hours with a product slot 15 minutes in
    host, card = creator(), shop.card_sku()
    start = soon(2).replace(microsecond=0)
    with db.connection_context():
        session = live_planning.schedule(host, SessionSpec("晚场", start, pins=[
            PinSpec(card.code, start + dt.timedelta(minutes=15))]))
        # when it is moved a day later, then once more to the same time
        later = start + dt.timedelta(days=1)
        moved = live.reschedule(host, session.id, later)
        same = live.reschedule(host, session.id, later)
        pins = live.pins_of(session.id)
    # then the start and the slot moved together, and only the real move counted
    assert moved.scheduled_at == later and same.plan_version == moved.plan_version == 1
    assert pins[0].slot_at == later + dt.timedelta(minutes=15)
    assert topics(session.id) == ["live.scheduled", "live.rescheduled"]


def test_reschedule_and_cancel_are_refused_in_the_wrong_state(rt):
    # given a session that went live and one that was cancelled
    host = creator()
    on_air, gone = planned_session(host), planned_session(host)
    with db.connection_context():
        live.go_live(host, on_air)
        live.cancel(host, gone, reason="主播生病")
        # when they are rescheduled or cancelled, or moved into the past
        cases = [(lambda: live.reschedule(host, on_air, soon(4)), "live_already_started"),
                 (lambda: live.cancel(host, on_air), "live_already_started"),
                 (lambda: live.reschedule(host, gone, soon(4)), "live_cancelled"),
                 (lambda: live.go_live(host, gone), "live_cancelled")]
        for act, code in cases:
            with pytest.raises(InvalidState) as refused:
                act()
            assert refused.value.code == code
        with pytest.raises(InvalidInput) as past:
            live.reschedule(host, planned_session(host), utcnow() - dt.timedelta(minutes=1))
    # then each is refused with its code; a cancel twice is harmless and kept its reason
    assert past.value.code == "live_start_past"
    with db.connection_context():
        assert live.cancel(host, gone).plan_version == 1
        cancelled = [e for e in events_for(f"live:{gone}") if e.topic == "live.cancelled"]
    assert [e.payload["reason"] for e in cancelled] == ["主播生病"]
    assert reload(gone).cancelled_at is not None and reload(on_air).state == "live"


def test_close_abandoned_cancels_only_the_never_started_after_the_grace(rt):
    # given sessions planned 3 h ago, 1 h ago and 3 h ago but live, and one in the future
    host = creator()
    old, recent, started, future = (planned_session(host) for _ in range(4))
    now = utcnow()
    with db.connection_context():
        for sid, ago in ((old, 3), (recent, 1), (started, 3)):
            LiveSession.update(scheduled_at=now - dt.timedelta(hours=ago)).where(LiveSession.id == sid).execute()
        live.go_live(host, started)
        # when the never-started are closed with a 2-hour grace, twice
        first = live.close_abandoned(now, dt.timedelta(hours=2))
        second = live.close_abandoned(now, dt.timedelta(hours=2))
    # then only the one 3 h late is cancelled (never_started, plan_version + 1), once
    assert (first, second) == (1, 0)
    assert (reload(old).state, reload(old).plan_version) == ("cancelled", 1)
    assert [reload(s).state for s in (recent, started, future)] == ["scheduled", "live", "scheduled"]
    with db.connection_context():
        event = [e for e in events_for(f"live:{old}") if e.topic == "live.cancelled"][0]
    assert event.payload == {"reason": "never_started", "plan_version": 1} and event.actor == "system"


def test_times_are_stored_in_utc_and_shown_in_the_live_timezone():
    # given 20:00 typed in Shanghai (naive) and the same moment with an offset
    typed = dt.datetime(2026, 12, 8, 20, 0)
    aware = dt.datetime(2026, 12, 8, 20, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    # then both are stored as 12:00 UTC, naive; a naive time without a zone is UTC already
    assert to_utc(typed, SHANGHAI) == to_utc(aware) == dt.datetime(2026, 12, 8, 12, 0)
    assert to_utc(typed) == typed
    # and a stored time is shown in Shanghai again
    assert local_time(dt.datetime(2026, 12, 8, 12, 0), SHANGHAI) == "2026-12-08 20:00"
    assert in_zone(dt.datetime(2026, 12, 31, 20, 0), SHANGHAI).date() == dt.date(2027, 1, 1)
    assert local_time(None, SHANGHAI) == ""
    with pytest.raises(InvalidInput):
        to_utc(typed, "Mars/Olympus")


def test_unplanned_start_still_goes_live_at_once(rt):
    # given a creator who goes live without a plan
    host = creator()
    with db.connection_context():
        session = live.start_live(host, "临时开播")
        # then it is live now, unplanned, and ends as before
        assert (session.state, session.scheduled_at) == ("live", None) and session.started_at is not None
        assert live.end_live(host, session.id)[1] is True
        with pytest.raises(InvalidInput):
            live.start_live(host, "x" * 121)
