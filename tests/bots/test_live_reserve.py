"""Reservations in chat (bots/commands/live_reserve.py) through the real core: the session card's
button on Telegram, the WeChat keyword, polite refusals, the creator's count and poster."""

from __future__ import annotations

from bots.commands import Command, parse
from bots.types import Incoming, Member
from models import live
from models.db import db
from models.reservations import Reservation
from tests.bots.conftest import join, say, text_of
from tests.factories import live_session


def _reservations() -> list[tuple[int, str]]:
    with db.connection_context():
        return [(r.session_id, r.channel) for r in Reservation.select().order_by(Reservation.id)]


def test_the_card_button_data_parses_as_the_reserve_command():
    press = Incoming("telegram", "-100", "group", Member("1"), callback="reserve:12")
    assert parse(press) == Command("reserve", ("12",), "12", via_button=True)
    assert parse(Incoming("telegram", "1", "private", Member("1"), callback="reserve:")).name == "stale_button"


def test_a_telegram_user_reserves_from_the_card_a_creator_shared_into_a_group(rt):
    # given a creator's scheduled session and its card, asked for in a group
    host = join("host")
    session = live_session(host, title="年货节直播")
    card = say(f"/livecard {session.id}", who="host", chat="-1001")
    assert "年货节直播" in text_of(card) and "已有 0 人预约" in text_of(card)
    data = [b.data for r in card for row in r.buttons for b in row]
    assert data == [f"reserve:{session.id}"]
    # when a Telegram group member presses the button, twice
    first = say(callback=data[0], who="555", name="小美", chat="-1001", platform="telegram")
    again = say(callback=data[0], who="555", name="小美", chat="-1001", platform="telegram")
    # then one reservation through Telegram, and the second press is told so
    assert "预约成功" in text_of(first) and "小美" in text_of(first)
    assert "已经预约过" in text_of(again)
    assert _reservations() == [(session.id, "telegram")]
    assert "已有 1 人预约" in text_of(say(f"/livecard {session.id}", who="host"))


def test_the_wechat_keyword_reserves_and_refusals_are_polite(rt):
    # given a scheduled session and a cancelled one
    session, gone = live_session(), live_session()
    with db.connection_context():
        live.cancel(None, gone.id, actor="test")
    # when a WeChat user sends the keyword with each, a bad number and an unknown session
    ok = say(f"预约 {session.id}", who="oa-user", platform="wechat")
    cancelled = say(f"预约{gone.id}", who="oa-user", platform="wechat")
    bad = say("预约 明天", who="oa-user", platform="wechat")
    unknown = say("/reserve 99999", who="oa-user", platform="wechat")
    # then only the first is a reservation (channel wechat_oa); the others are polite answers
    assert "预约成功" in text_of(ok)
    assert "已取消" in text_of(cancelled)
    assert "预约 12" in text_of(bad)
    assert "没有找到这场直播" in text_of(unknown)
    assert _reservations() == [(session.id, "wechat_oa")]


def test_a_creator_sees_counts_of_their_own_sessions_and_gets_a_poster(rt):
    # given two sessions of a creator, one reserved by two people, and another creator's session
    host = join("host2")
    one, two = live_session(host, title="第一场"), live_session(host, title="第二场")
    foreign = live_session(title="别人的")
    for who in ("a", "b"):
        say(f"预约 {one.id}", who=who, platform="wechat")
    # when the creator asks for the counts, another creator's session, and a poster
    counts = text_of(say("预约人数", who="host2"))
    other = say(f"/reservations {foreign.id}", who="host2")
    poster = say(f"预约海报 {two.id}", who="host2")
    # then their sessions with their counts, the other's is not found, and a PNG poster with the link
    assert f"直播 {one.id}「第一场」" in counts and "2 人预约" in counts and "0 人预约" in counts
    assert "没有找到这场直播" in text_of(other)
    assert poster[0].image is not None and poster[0].image.startswith(b"\x89PNG")
    assert poster[0].link.endswith(f"/live/{two.id}")
    # and someone who is no creator is told to join first
    assert "还不是千星创作者" in text_of(say("预约人数", who="stranger"))
