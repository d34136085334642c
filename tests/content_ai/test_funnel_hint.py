"""The funnel hint: the weakest step of a creator's funnel against the medians of creators of
the same star level (models/funnel_compare.py, computed from the database), worded by the
model behind the fake server under the guard (content_ai/funnel_hint.py) or by the template
per step offline; an invented number, garbage, a stall, a 500 and the breaker fall back."""

from __future__ import annotations

import time

import pytest

from content_ai import funnel_hint, guard
from models import funnel_compare
from models.db import db
from tests.factories import funnel_creator, online_ai

GOOD = {"hint": "你的进直播间率是 2%，同等级中位数是 10%。建议在视频结尾和评论区置顶直播预告与预约入口。"}


@pytest.fixture
def level(rt, shop):  # noqa: ANN001, ANN201
    """Three peers of star level 2, one inactive and one of level 3 that must not count, and
    `me` (level 2): 100 plays, 2 entries (2%), 1 order (50%)."""
    sku = shop.card_sku(keys=1, price=1000)
    funnel_creator(2, plays=100, entries=20, orders=4, sku=sku)  # 20%, 20%
    funnel_creator(2, plays=200, entries=40, orders=10, sku=sku)  # 20%, 25%
    funnel_creator(2, plays=50, entries=5, orders=1, sku=sku)  # 10%, 20%
    funnel_creator(3, plays=10_000, entries=9_000, orders=5, sku=sku)  # another level
    gone = funnel_creator(2, plays=1, entries=0)
    with db.connection_context():
        type(gone).update(active=False).where(type(gone).id == gone.id).execute()
    return funnel_creator(2, plays=100, entries=2, orders=1, sku=sku, name="我")


@pytest.fixture
def ai(rt, fake_openai):  # noqa: ANN001, ANN201
    fake_openai.reset()
    yield lambda **kw: online_ai(rt, fake_openai, **kw)
    fake_openai.reset()


def compared(me, redis=None) -> funnel_compare.Comparison:  # noqa: ANN001
    with db.connection_context():
        return funnel_compare.compare(me, redis=redis)


def test_the_weakest_step_against_the_level_medians(rt, level):
    # when my funnel is compared with my level's
    c = compared(level, rt.redis)
    # then the medians are those of the four active level-2 creators, and entries is the weakest
    assert (c.plays, c.entries, c.orders, c.entry_bp, c.order_bp) == (100, 2, 1, 200, 5000)
    assert c.medians == funnel_compare.Medians(peers=4, plays=100, entry_bp=1000, order_bp=2000)
    assert c.weakest == "entries"
    # and the medians are kept in Redis for the next look
    assert compared(level, rt.redis).medians == c.medians and rt.redis.exists("qx:funnel:medians:2")


def test_offline_template_names_the_step_and_one_action(rt, level):
    c = compared(level)
    hint = funnel_hint.funnel_hint(c, ai=rt.ai)
    assert hint.source == "offline" and hint.step == "entries"
    assert "从视频进直播间" in hint.text and "你是 2%" in hint.text and "中位数是 10%" in hint.text
    assert funnel_hint.ACTIONS["entries"] in hint.text
    assert guard.check(hint.text, funnel_hint.facts_text(c)).ok


def test_no_plays_is_the_weakest_step_and_no_peers_is_no_step(rt, shop):
    sku = shop.card_sku(keys=1)
    funnel_creator(4, plays=80, entries=8, orders=1, sku=sku)
    silent = funnel_creator(4)
    assert compared(silent).weakest == "plays"
    alone = funnel_creator(5)
    c = compared(alone)
    assert c.weakest is None
    assert funnel_hint.funnel_hint(c, ai=None).text == funnel_hint.NO_DATA


def test_the_model_words_the_numbers(rt, level, ai, fake_openai):
    fake_openai.answer(GOOD)
    hint = funnel_hint.funnel_hint(compared(level), ai=ai(), creator_id=level.id)
    assert hint.source == "model" and hint.text == GOOD["hint"] and hint.step == "entries"
    prompt = fake_openai.chat_calls[0].json()["messages"][1]["content"]
    assert "同等级中位数 10%" in prompt and "视频播放 100 次" in prompt


@pytest.mark.parametrize("trouble", ["invented", "invent_number", "malformed", "500"])
def test_a_refused_or_failed_model_gives_the_template(rt, level, ai, fake_openai, trouble):
    if trouble == "invented":
        fake_openai.answer({"hint": "你的进直播间率只有 3%，同等级中位数 10%，照做能多赚 500 元。"})
    elif trouble == "invent_number":
        fake_openai.invent_number(77)
    elif trouble == "malformed":
        fake_openai.malformed()
    else:
        fake_openai.fail(500)
    c = compared(level)
    hint = funnel_hint.funnel_hint(c, ai=ai(), creator_id=level.id)
    assert hint.source == "offline" and hint.text == funnel_hint.offline_text(c)
    assert len(fake_openai.chat_calls) == 1


def test_a_stall_is_bounded_and_the_breaker_opens(rt, level, ai, fake_openai):
    provider = ai(AI_TIMEOUT_S=0.5, AI_BREAKER_FAILURES=2)
    fake_openai.stall(3)
    c = compared(level)
    started = time.monotonic()
    assert funnel_hint.funnel_hint(c, ai=provider).source == "offline"
    assert time.monotonic() - started < 2.5
    assert funnel_hint.funnel_hint(c, ai=provider).source == "offline"  # the second failure opens it
    fake_openai.reset()
    fake_openai.answer(GOOD)
    assert funnel_hint.funnel_hint(c, ai=provider).source == "offline"
    assert fake_openai.chat_calls == []


def test_nothing_to_compare_asks_no_model(rt, ai, fake_openai):
    alone = funnel_creator(6)
    assert funnel_hint.funnel_hint(compared(alone), ai=ai()).source == "offline"
    assert fake_openai.chat_calls == []
