"""/dashboard (看板, 数据) and /vote through the real conversation core: a creator reads the
figures, hints and polls of the session live now, opens and closes polls; bad input and a
session that is not live get a polite reply and write nothing."""

from __future__ import annotations

import datetime as dt

from models import live_dashboard, live_votes
from models.db import db, utcnow
from models.live import LivePin
from models.live_votes import LivePoll
from tests.bots.conftest import join, say, text_of
from tests.factories import end_session, live_sale, on_air


def polls() -> int:
    with db.connection_context():
        return LivePoll.select().count()


def test_the_dashboard_of_the_session_live_now(rt, shop, run_jobs):
    # given a creator live now with a viewer, a sale and a product planned in three minutes
    host = join("ann")
    _, sid = on_air(host, title="周五福利")
    card = shop.card_sku(keys=3, price=1990)
    with db.connection_context():
        LivePin.create(session=sid, sku=card.id, slot_at=utcnow() + dt.timedelta(minutes=3))
        live_dashboard.entered(rt.redis, sid, 99, utcnow())
    live_sale(card, host, sid, "chat-buyer")
    run_jobs()
    # when the creator sends the keyword
    answer = text_of(say("看板", who="ann"))
    # then the figures, the product's sales and the slot hint are there
    assert f"直播看板 #{sid}：周五福利（直播中）" in answer
    assert "支付订单 1 笔 · 成交额 ¥19.90 · 买家 1 人" in answer
    assert f"· {card.name}：已售 1 件，¥19.90" in answer
    assert f"剩余3分钟上架{card.name}" in answer


def test_without_a_session_and_for_a_stranger(rt):
    join("bob")
    assert "还没有开过直播" in text_of(say("/dashboard", who="bob"))
    # a session id that is not mine is not found
    _, theirs = on_air()
    assert "没有找到你的这场直播" in text_of(say(f"/dashboard {theirs}", who="bob"))
    assert "请发送：/dashboard" in text_of(say("/dashboard abc", who="bob"))
    # someone who has not joined is told to join first
    assert "/join" in text_of(say("数据", who="stranger"))


def test_the_most_recent_session_after_it_ended(rt):
    host = join("cat")
    _, sid = on_air(host, title="上一场")
    end_session(host, sid)
    assert f"直播看板 #{sid}：上一场（已结束）" in text_of(say("/dashboard", who="cat"))


def test_open_list_and_close_a_poll(rt):
    # given a creator live now
    host = join("dan")
    _, sid = on_air(host)
    # when they open a poll with a duration
    opened = text_of(say("/vote 她该不该买 | 买 | 不买 | 再看看 | 5分钟", who="dan"))
    with db.connection_context():
        poll = LivePoll.get()
    # then it is open with three options for five minutes
    assert f"投票 #{poll.id} 已发起：她该不该买" in opened and "3. 再看看" in opened
    assert (poll.closes_at - poll.opened_at) == dt.timedelta(minutes=5)
    with db.connection_context():
        live_votes.vote(7, poll.id, live_votes.results(poll.id)["options"][0]["id"])
    # and the list shows the votes, the keyword too
    assert f"投票 #{poll.id}（进行中）她该不该买：买 1 · 不买 0 · 再看看 0" in text_of(say("投票", who="dan"))
    # when they close it
    closed = text_of(say(f"/vote close {poll.id}", who="dan"))
    assert "投票已结束" in closed and f"投票 #{poll.id}（已结束）" in closed


def test_bad_votes_are_answered_politely_and_write_nothing(rt):
    host = join("eve")
    for typed, expected in (("/vote 只有问题 | 一个选项", "发起投票：/vote 问题"),
                            ("/vote 问题 | A | A", "选项不能重复"),
                            ("/vote close abc", "结束投票：/vote close 编号"),
                            ("/vote 问题 | A | B", "没有在直播")):
        assert expected in text_of(say(typed, who="eve")), typed
    _, sid = on_air(host)
    assert "没有找到你的这个投票" in text_of(say("/vote close 4242", who="eve"))
    assert polls() == 0
