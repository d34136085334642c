"""/talk (直播话术) and /funnel (漏斗) through the real conversation core: the talk track of the
creator's next session (or the one named) and the funnel hint, offline and with the model
behind the fake server (a good answer, an invented number, a stall); bad input, another
creator's session, an ended one and no session at all get polite replies."""

from __future__ import annotations

import time

import pytest

from models import activity
from models.activity import TrackEvent
from models.db import db, utcnow
from tests.bots.conftest import join, say, text_of
from tests.factories import (
    end_session,
    funnel_creator,
    online_ai,
    order_rows,
    planned_session,
    talk_session,
    track_json,
)


@pytest.fixture
def model(rt, fake_openai, monkeypatch):  # noqa: ANN001, ANN201
    """The runtime's provider on the fake model for this test."""
    fake_openai.reset()

    def use(**kw: object) -> None:
        monkeypatch.setattr(rt, "ai", online_ai(rt, fake_openai, **kw))

    yield use
    fake_openai.reset()


def test_the_talk_track_of_my_next_session(rt, shop):
    # given a creator with a scheduled session: a laddered product, a plain one and a lottery
    host = join("ann")
    _, sid, (laddered, plain) = talk_session(shop, host=host)
    # when the creator asks for the talk track
    answer = text_of(say("话术", who="ann"))
    # then every part is there, with the tier prices from the database
    assert f"直播话术 #{sid}「周五福利专场」" in answer
    assert "【开场】" in answer and "【福利】" in answer and "【收尾】" in answer
    assert f"【商品1·{laddered.name}】" in answer and f"【商品2·{plain.name}】" in answer
    assert "第1-50位买家 ¥9.90" in answer and "第51-100位买家 ¥19.90" in answer and "¥49.80" in answer
    # and naming the session gives the same
    assert text_of(say(f"/talk {sid}", who="ann")) == answer == text_of(say(f"直播话术{sid}", who="ann"))


def test_a_long_track_comes_in_messages_that_fit_a_chat_message(rt, shop):
    # given a session with twelve pinned products
    host = join("ann")
    skus = [shop.card_sku(keys=1, price=1000 + i) for i in range(12)]
    planned_session(host, skus=tuple(s.code for s in skus))
    # when the creator asks for its talk track
    replies = say("话术", who="ann")
    # then it comes in several messages, none over 600 characters, with every product in order
    assert len(replies) > 1 and all(len(r.text) <= 600 for r in replies)
    joined = text_of(replies)
    assert [joined.index(f"【商品{i + 1}·{s.name}】") for i, s in enumerate(skus)] == sorted(
        joined.index(f"【商品{i + 1}·{s.name}】") for i, s in enumerate(skus))


def test_polite_replies(rt, shop):
    join("bob")
    assert "还没有预告中的直播" in text_of(say("/talk", who="bob"))
    assert "请发送：/talk" in text_of(say("/talk abc", who="bob"))
    other, theirs, _ = talk_session(shop)
    assert "没有找到你的这场直播" in text_of(say(f"/talk {theirs}", who="bob"))
    mine = join("cat")
    _, sid, _ = talk_session(shop, host=mine, state="live")
    end_session(mine, sid)
    assert "已经结束了" in text_of(say(f"/talk {sid}", who="cat"))
    assert "/join" in text_of(say("/talk", who="stranger"))


def test_the_model_writes_the_track_and_an_invented_price_is_refused(rt, shop, model, fake_openai):
    host = join("ann")
    _, sid, skus = talk_session(shop, host=host)
    model()
    fake_openai.answer(track_json(skus))
    assert "前50位只要¥9.90" in text_of(say("/talk", who="ann"))
    # when the model invents a price
    fake_openai.answer(track_json(skus, price="¥1.90"))
    answer = text_of(say("/talk", who="ann"))
    # then the templates answer and the invented price is not shown
    assert "¥1.90" not in answer and "第1-50位买家 ¥9.90" in answer


def test_a_stalled_model_is_bounded(rt, shop, model, fake_openai):
    host = join("ann")
    talk_session(shop, host=host)
    model(AI_TIMEOUT_S=0.5)
    fake_openai.stall(3)
    started = time.monotonic()
    answer = text_of(say("/talk", who="ann"))
    assert "第1-50位买家 ¥9.90" in answer
    assert time.monotonic() - started < 2.5


def test_the_funnel_hint(rt, shop, model, fake_openai):
    # given peers of my level and my funnel (weak at getting viewers into the live room)
    sku = shop.card_sku(keys=1)
    funnel_creator(2, plays=100, entries=20, orders=4, sku=sku)
    funnel_creator(2, plays=100, entries=10, orders=2, sku=sku)
    me = join("ann", rank=2)
    funnel_creator(0)  # another level
    order_rows(sku, 1, seller=me, openid="ann-buyer")
    with db.connection_context():
        activity.record_events([TrackEvent("me-1", me.code, "video_play", "v1", 100, utcnow()),
                                TrackEvent("me-2", me.code, "live_entry", "v1", 1, utcnow())],
                               user_id=None, source="csv")
    # when I ask offline
    answer = text_of(say("漏斗", who="ann"))
    # then my figures, the medians and the weakest step with its action
    assert "视频播放 100 次 → 进直播间 1 次 → 订单 1 笔" in answer
    assert "进直播间率 1%（同等级中位数 10%）" in answer
    assert "你的短板在「从视频进直播间」" in answer
    # and with a model, its wording when it states only those numbers
    model()
    fake_openai.answer({"hint": "你的进直播间率 1%，同等级中位数 10%，在视频结尾置顶直播预告。"})
    assert "在视频结尾置顶直播预告" in text_of(say("/funnel", who="ann"))
    fake_openai.answer({"hint": "你的进直播间率 1%，只要 7 天就能翻倍。"})
    assert "7 天" not in text_of(say("/funnel", who="ann"))
