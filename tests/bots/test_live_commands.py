"""The /live commands through the real conversation core: a creator schedules a session with a
time typed in LIVE_TIMEZONE (直播 明天 20:00 标题 +SKU), lists it with its reservation count,
moves, cancels, starts (开播) and ends (下播) sessions; every mistake gets a polite reply and
writes nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from bots.commands import Command, parse
from bots.commands.live import wall_clock
from bots.types import Incoming, Member
from models import reservations
from models.db import db, utcnow
from models.live import LivePin, LiveSession
from tests.bots.conftest import join, say, text_of
from tests.factories import buyer, creator, planned_session


def shanghai_now() -> dt.datetime:
    return utcnow() + dt.timedelta(hours=8)


def sessions() -> list[LiveSession]:
    with db.connection_context():
        return list(LiveSession.select().order_by(LiveSession.id))


@pytest.mark.parametrize("typed, expected", [
    ("直播", Command("live")),
    ("/live 12-08 20:00 专场", Command("live", ("12-08", "20:00", "专场"), "12-08 20:00 专场")),
    ("预告 明天 20:00 专场", Command("live", ("明天", "20:00", "专场"), "明天 20:00 专场")),
    ("开播 12", Command("golive", ("12",), "12")),
    ("下播 12", Command("endlive", ("12",), "12")),
    ("直播带货怎么做", None),
])
def test_the_live_words_parse(typed, expected):
    assert parse(Incoming("console", "c", "private", Member("c"), text=typed)) == expected


def test_wall_clock_reads_dates_with_and_without_a_year():
    now = dt.datetime(2026, 12, 30, 10, 0)
    # a date without a year is this year's, or next year's once it is past
    assert wall_clock(("12-31", "20:00"), now) == dt.datetime(2026, 12, 31, 20, 0)
    assert wall_clock(("01-02", "20:00"), now) == dt.datetime(2027, 1, 2, 20, 0)
    assert wall_clock(("2027-03-01", "9:30"), now) == dt.datetime(2027, 3, 1, 9, 30)
    assert wall_clock(("明天", "20:00"), now) == dt.datetime(2026, 12, 31, 20, 0)
    assert wall_clock(("20:00",), now) == dt.datetime(2026, 12, 30, 20, 0)


def test_schedule_a_session_in_shanghai_time_with_products(rt, shop):
    # given a creator and a product on sale
    join("ann")
    card = shop.card_sku(keys=10, price=1990)
    # when the creator announces a session tomorrow at 20:00 with the product pinned
    reply = text_of(say(f"直播 明天 20:00 周末福利专场 +{card.code}", who="ann"))
    # then it is scheduled at 20:00 Shanghai time (12:00 UTC) with the product, and the reply says how to start
    [s] = sessions()
    tomorrow = shanghai_now().date() + dt.timedelta(days=1)
    assert s.state == "scheduled" and s.title == "周末福利专场"
    assert s.scheduled_at == dt.datetime.combine(tomorrow, dt.time(12, 0))
    with db.connection_context():
        assert [p.sku_id for p in LivePin.select()] == [card.id]
    assert f"#{s.id}" in reply and f"开播 {s.id}" in reply and "20:00" in reply


def test_the_list_shows_times_states_and_reservation_counts(rt):
    # given a creator with a scheduled session reserved by two fans and an unplanned live one
    host = join("ann")
    sid = planned_session(host, title="晚场")
    with db.connection_context():
        for fan in ("fan-1", "fan-2"):
            reservations.reserve(buyer(fan), sid, "miniapp")
    say("开播 临时", who="ann")
    # when the creator asks for the list
    reply = text_of(say("/live", who="ann"))
    # then both are listed, newest first, with their state and the reservation count
    assert "Asia/Shanghai" in reply
    lines = [line for line in reply.splitlines() if line.startswith("#")]
    assert len(lines) == 2 and "直播中" in lines[0]
    assert f"#{sid}" in lines[1] and "晚场" in lines[1] and "预告中" in lines[1] and "预约 2 人" in lines[1]


def test_start_move_cancel_and_end(rt):
    # given two scheduled sessions
    host = join("ann")
    a, b = planned_session(host), planned_session(host)
    # when one is moved, the other cancelled, and the first goes live and ends
    moved = text_of(say(f"直播 改期 {a} 明天 21:30", who="ann"))
    cancelled = text_of(say(f"直播 取消 {b} 嗓子哑了", who="ann"))
    started = text_of(say(f"开播 #{a}", who="ann"))
    ended = text_of(say(f"下播 {a}", who="ann"))
    again = text_of(say(f"/endlive {a}", who="ann"))
    # then each happened, and each reply says so
    states = {s.id: (s.state, s.plan_version) for s in sessions()}
    assert states == {a: ("ended", 1), b: ("cancelled", 1)}
    assert "21:30" in moved and "取消" in cancelled and "开播" in started and "结算" in ended and "已经结束" in again


@pytest.mark.parametrize("typed, expected", [
    ("直播 改期 {a} 2020-01-01 20:00", "已经过去"),
    ("直播 2020-01-01 20:00 往年", "已经过去"),
    ("直播 明天 25:00 太晚", "时间格式不对"),
    ("直播 02-30 20:00 没这天", "时间格式不对"),
    ("直播 明天 20:00", "标题"),
    ("直播 明天 20:00 专场 +NOPE", "没有找到这个商品"),
    ("直播 周末来看", "直播命令"),
    ("开播 {other}", "没有找到你的这场直播"),
    ("开播 999", "没有找到你的这场直播"),
    ("下播 {a}", "还没有开播"),
    ("下播", "请写上直播编号"),
    ("直播 取消", "请写上直播编号"),
])
def test_mistakes_get_a_polite_reply_and_change_nothing(rt, typed, expected):
    # given a creator's scheduled session and another creator's
    host, other = join("ann"), creator()
    a, o = planned_session(host), planned_session(other)
    before = [(s.id, s.state, s.scheduled_at, s.plan_version) for s in sessions()]
    # when the creator types something wrong
    reply = text_of(say(typed.format(a=a, other=o), who="ann"))
    # then a polite reply names the problem, and nothing changed
    assert expected in reply, reply
    assert [(s.id, s.state, s.scheduled_at, s.plan_version) for s in sessions()] == before


def test_non_creators_are_told_to_join_first(rt):
    # when a shopper who has not joined sends a live command
    reply = text_of(say("直播 明天 20:00 专场", who="bob"))
    # then the join-first answer, and nothing is written
    assert "/join" in reply and sessions() == []


def test_english_replies(rt):
    # given a creator on Telegram in English (no sessions yet)
    say("/join", who="tg-en", platform="telegram")
    from bots.core import handle
    from qianxing import wiring

    replies = handle(Incoming("telegram", "tg-en", "private", Member("tg-en", "Ann"), text="/live",
                              locale="en"), wiring.runtime())
    # then the answer is English
    assert "no live sessions" in text_of(replies).lower()
