"""Real-time prompts (content_ai/live_prompts.py) through the real dashboard path
(models/live_board.board, as the creator's API, the SSE stream, the chat and the admin read it):
offline nothing extra; with the fake model a grounded hint beside the rule hints, at most one
model call per session per LIVE_AI_HINT_INTERVAL_S (the last hint shown in between); an
invented number, a 500, a stall and the open breaker leave the rule hints alone."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from content_ai import live_prompts
from models import live_board, live_dashboard, live_hints
from models.db import db, utcnow
from models.live_dashboard import DashboardPolicy
from models.live_hints import LiveHintRule
from tests.factories import online_ai, talk_session

GOOD = {"hint": "在线 1 人还没有成交，先讲 ¥9.90 的阶梯价"}


@pytest.fixture
def on_air_session(rt, shop):  # noqa: ANN001, ANN201
    """A live session with a viewer, its pinned products, and the low-conversion rule made to
    speak at once (no minimum of viewers, no duration)."""
    host, sid, skus = talk_session(shop, state="live")
    with db.connection_context():
        live_hints.seed_defaults()
        LiveHintRule.update(for_s=0, min_viewers=0).where(LiveHintRule.code == "low_conversion").execute()
        live_dashboard.entered(rt.redis, sid, 42, utcnow())
    return host, sid


@pytest.fixture
def model(rt, fake_openai):  # noqa: ANN001, ANN201
    """Install the hint provider on a model behind the fake server; back to the runtime's after."""
    fake_openai.reset()

    def use(**kw: object) -> None:
        live_prompts.install(online_ai(rt, fake_openai, **kw), rt.redis, rt.settings)

    yield use
    live_prompts.install(rt.ai, rt.redis, rt.settings)
    fake_openai.reset()


def look(rt, host, sid) -> list[dict]:  # noqa: ANN001
    with db.connection_context():
        return live_board.board(rt.redis, sid, creator=host, policy=DashboardPolicy.of(rt.settings))["hints"]


def codes(hints: list[dict]) -> list[tuple[str, str]]:
    return [(h["code"], h["source"]) for h in hints]


def test_offline_only_the_rule_hints_speak(rt, on_air_session, fake_openai):
    fake_openai.reset()
    hints = look(rt, *on_air_session)
    assert codes(hints) == [("low_conversion", "rule")]
    assert fake_openai.chat_calls == []


def test_the_installed_provider_is_registered_once(rt):
    live_prompts.install(rt.ai, rt.redis, rt.settings)
    live_prompts.install(rt.ai, rt.redis, rt.settings)
    assert sum(isinstance(p, live_prompts.ModelHints) for p in live_hints.PROVIDERS) == 1


def test_a_grounded_model_hint_beside_the_rule_hints(rt, on_air_session, model, fake_openai):
    # given a model that answers with figures of the dashboard
    model()
    fake_openai.answer(GOOD)
    # when the creator looks at the dashboard
    hints = look(rt, *on_air_session)
    # then the rule hint and the model's hint are both there
    assert codes(hints) == [("low_conversion", "rule"), ("ai_prompt", "model")]
    assert hints[1]["text"] == GOOD["hint"]
    # and the prompt had the figures and the pinned products with their current price
    prompt = fake_openai.chat_calls[0].json()["messages"][1]["content"]
    assert "在线 1 人" in prompt and "¥9.90" in prompt and "已售 0 件" in prompt


def test_at_most_one_model_call_per_interval(rt, on_air_session, model, fake_openai):
    host, sid = on_air_session
    model()
    fake_openai.answer(GOOD)
    first = look(rt, host, sid)
    # when the dashboard is looked at again within the interval (the model now says otherwise)
    fake_openai.answer({"hint": "换个说法"})
    again = [look(rt, host, sid) for _ in range(3)]
    # then the model was called once, and the last hint is shown again in between
    assert len(fake_openai.chat_calls) == 1
    assert all(h == first for h in again)
    gate = rt.redis.ttl(f"qx:live:{sid}:ai_gate")
    assert 0 < gate <= rt.settings.LIVE_AI_HINT_INTERVAL_S
    # and once the interval is over the model is asked again
    rt.redis.delete(f"qx:live:{sid}:ai_gate")
    assert look(rt, host, sid)[1]["text"] == "换个说法"
    assert len(fake_openai.chat_calls) == 2


@pytest.mark.parametrize("trouble", ["invented_number", "500", "malformed", "promise"])
def test_a_refused_or_failed_model_leaves_the_rule_hints(rt, on_air_session, model, fake_openai, trouble):
    model()
    if trouble == "invented_number":
        fake_openai.answer({"hint": "在线 1 人，转化率 35%，继续保持"})
    elif trouble == "500":
        fake_openai.fail(500)
    elif trouble == "promise":
        fake_openai.answer({"hint": "告诉观众今天下单保证马上发货"})
    else:
        fake_openai.malformed()
    hints = look(rt, *on_air_session)
    assert codes(hints) == [("low_conversion", "rule")]
    assert len(fake_openai.chat_calls) == 1


def test_a_stall_is_bounded_and_the_open_breaker_asks_nobody(rt, on_air_session, model, fake_openai):
    host, sid = on_air_session
    # given a model that stalls past the timeout, and a breaker that opens on the first failure
    model(AI_TIMEOUT_S=0.5, AI_BREAKER_FAILURES=1)
    fake_openai.stall(3)
    started = time.monotonic()
    hints = look(rt, host, sid)
    # then the look is bounded by the timeout and the rule hints speak
    assert time.monotonic() - started < 2.5
    assert codes(hints) == [("low_conversion", "rule")]
    # when the next interval comes while the breaker is open
    fake_openai.reset()
    fake_openai.answer(GOOD)
    rt.redis.delete(f"qx:live:{sid}:ai_gate")
    # then the model is not asked and the rule hints still speak
    assert codes(look(rt, host, sid)) == [("low_conversion", "rule")]
    assert fake_openai.chat_calls == []


def test_the_prompt_summarises_the_kept_samples(rt, on_air_session, model, fake_openai):
    # given two earlier looks at the dashboard, a minute apart, before any model was configured
    host, sid = on_air_session
    policy = DashboardPolicy.of(rt.settings)
    start = utcnow()
    with db.connection_context():
        for minutes in (0, 1):
            live_board.board(rt.redis, sid, creator=host, policy=policy, now=start + dt.timedelta(minutes=minutes))
    # when the model is asked two minutes in
    model()
    fake_openai.answer(GOOD)
    with db.connection_context():
        hints = live_board.board(rt.redis, sid, creator=host, policy=policy, now=start + dt.timedelta(minutes=2))
    # then the prompt had the history's summary, and the hint passed against it
    prompt = fake_openai.chat_calls[0].json()["messages"][1]["content"]
    assert "近 2 分钟（3 个采样）：在线从 1 人到 0 人，订单从 0 笔到 0 笔" in prompt  # the viewer timed out
    assert ("ai_prompt", "model") in codes(hints["hints"])
