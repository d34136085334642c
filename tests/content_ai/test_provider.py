"""The model provider against the fake OpenAI-compatible server: answers, validated JSON, the
offline fallback (None) on stalls, 500s and garbage, the circuit breaker, the cache, quotas, the
call log without the key, embeddings; and offline when no model is configured."""

from __future__ import annotations

import logging
import time

import pytest
from pydantic import BaseModel

from content_ai.provider import Provider
from tests.conftest import AI_KEY
from tests.factories import online_ai
from tests.fakes.openai_api import FakeOpenAI, vector


class Script(BaseModel):
    title: str
    lines: list[str]


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "你是带货文案助手。"}, {"role": "user", "content": text}]


@pytest.fixture
def ai(rt, fake_openai: FakeOpenAI):  # noqa: ANN001, ANN201
    fake_openai.reset()

    def make(**overrides: object) -> Provider:
        return online_ai(rt, fake_openai, **{
            "AI_EMBED_MODEL": "fake-embed", "AI_RETRIES": 1, "AI_BREAKER_OPEN_S": 1, "AI_DAILY_QUOTA": 3,
            "AI_CACHE_S": rt.settings.AI_CACHE_S, "AI_PRICE_IN_PER_1K_FEN": 10, "AI_PRICE_OUT_PER_1K_FEN": 20,
            **overrides})
    yield make
    fake_openai.reset()


def test_offline_by_default(rt, fake_openai):
    # given the runtime's provider with no AI_BASE_URL (the default)
    assert rt.ai.online is False
    # when asked / then None (the offline path), and nothing is called
    assert rt.ai.chat(ask("写个脚本")) is None
    assert rt.ai.embed(["会员卡"]) is None
    assert fake_openai.chat_calls == []


def test_answer_with_tokens_and_cost(ai, fake_openai):
    # given a model that answers
    provider = ai()
    fake_openai.answer("家人们，视频会员月卡来了！")
    # when asked
    answer = provider.chat(ask("写一句开场"), creator_id=1)
    # then the content, the usage and the cost estimate come back, and the key was sent as Bearer
    assert answer is not None and answer.content == "家人们，视频会员月卡来了！"
    assert answer.prompt_tokens > 0 and answer.completion_tokens == len(answer.content)
    assert answer.cost_fen == pytest.approx(answer.prompt_tokens / 100 + answer.completion_tokens / 50)
    assert fake_openai.chat_calls[0].json()["model"] == "fake-chat"


def test_wrong_key_is_an_error_not_an_exception(ai, fake_openai):
    # given a provider with a key the server refuses
    provider = ai(AI_API_KEY="sk-wrong")
    # when asked / then None
    assert provider.chat(ask("你好")) is None


def test_schema_valid_json_is_accepted(ai, fake_openai):
    # given a model that answers the JSON the schema asks for, fenced as models often do
    provider = ai()
    fake_openai.answer('```json\n{"title": "好物推荐", "lines": ["开场", "卖点"]}\n```')
    # when asked with the schema
    answer = provider.chat(ask("写脚本"), schema=Script)
    # then the validated object comes back, and JSON mode was requested
    assert answer is not None and isinstance(answer.data, Script)
    assert answer.data.lines == ["开场", "卖点"]
    assert fake_openai.chat_calls[0].json()["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize("content", [
    None,  # malformed JSON (the fake's malformed())
    '{"title": "好物推荐"}',  # valid JSON, missing a field
    '{"title": "好物推荐", "lines": "不是列表"}',  # wrong type
    '["title", "lines"]',  # not an object
    "",  # nothing at all
])
def test_malformed_or_invalid_json_is_rejected(ai, fake_openai, content):
    # given a model that answers garbage
    provider = ai()
    if content is None:
        fake_openai.malformed()
    else:
        fake_openai.answer(content)
    # when asked with a schema / then None, never an exception
    assert provider.chat(ask("写脚本"), schema=Script) is None


def test_stall_returns_none_within_the_timeout_bound(ai, fake_openai, caplog):
    # given a model that stalls longer than the 1 s timeout (one retry)
    provider = ai(AI_TIMEOUT_S=0.5, AI_RETRIES=1)
    fake_openai.stall(3)
    caplog.set_level(logging.INFO, logger="content_ai.provider")
    # when asked
    started = time.monotonic()
    answer = provider.chat(ask("写脚本"))
    elapsed = time.monotonic() - started
    # then None within timeout x attempts plus the client's short backoff, with both attempts made
    assert answer is None
    assert elapsed < 0.5 * 2 + 1.5
    assert len(fake_openai.chat_calls) == 2
    assert "outcome=timeout" in caplog.text


def test_server_error_returns_none(ai, fake_openai, caplog):
    # given a model that fails with 500 (retried once by the client)
    provider = ai()
    fake_openai.fail(500)
    caplog.set_level(logging.INFO, logger="content_ai.provider")
    # when asked / then None, after the first try and one retry
    assert provider.chat(ask("写脚本")) is None
    assert len(fake_openai.chat_calls) == 2
    assert "outcome=http_5xx" in caplog.text


def test_breaker_opens_half_opens_and_closes(ai, fake_openai, caplog):
    # given a failing model and a breaker that opens after 3 failures for 1 s (no retries)
    provider = ai(AI_RETRIES=0, AI_BREAKER_FAILURES=3, AI_BREAKER_OPEN_S=1, AI_CACHE_S=0)
    fake_openai.fail(500)
    caplog.set_level(logging.INFO, logger="content_ai.provider")
    # when it fails 3 times in a row
    for i in range(3):
        assert provider.chat(ask(f"问题{i}")) is None
    assert len(fake_openai.chat_calls) == 3
    # then the breaker is open: answers come from the offline path and the fake is not called
    fake_openai.answer("好的")
    assert provider.chat(ask("问题3")) is None
    assert len(fake_openai.chat_calls) == 3
    assert "outcome=breaker_open" in caplog.text
    # when the open period is over, a trial call fails: open again, no further call
    time.sleep(1.1)
    fake_openai.fail(500)
    assert provider.chat(ask("问题4")) is None
    assert len(fake_openai.chat_calls) == 4
    assert provider.chat(ask("问题5")) is None
    assert len(fake_openai.chat_calls) == 4
    # when the next trial succeeds, the breaker closes and calls flow again
    time.sleep(1.1)
    fake_openai.answer("好的")
    assert provider.chat(ask("问题6")) is not None
    assert provider.chat(ask("问题7")) is not None
    assert len(fake_openai.chat_calls) == 6


def test_success_resets_the_failure_count(ai, fake_openai):
    # given 2 failures, a success, then 2 more failures (threshold 3: never consecutive)
    provider = ai(AI_RETRIES=0, AI_BREAKER_FAILURES=3, AI_CACHE_S=0)
    for status, n in ((500, 2), (200, 1), (500, 2)):
        fake_openai.fail(status) if status != 200 else fake_openai.answer("好")
        for i in range(n):
            provider.chat(ask(f"{status}-{i}"))
    # when asked again / then the model is still called (the breaker stayed closed)
    fake_openai.answer("好")
    assert provider.chat(ask("再问")) is not None
    assert len(fake_openai.chat_calls) == 6


def test_cache_hit_does_not_call_the_model(ai, fake_openai, caplog):
    # given one answered question
    provider = ai()
    fake_openai.answer('{"title": "t", "lines": ["a"]}')
    first = provider.chat(ask("同一个问题"), schema=Script)
    caplog.set_level(logging.INFO, logger="content_ai.provider")
    # when the same question is asked again (even as the model now fails)
    fake_openai.fail(500)
    again = provider.chat(ask("同一个问题"), schema=Script)
    # then the cached answer comes back without a call
    assert first is not None and again is not None and again.cached
    assert again.data == first.data
    assert len(fake_openai.chat_calls) == 1
    assert "outcome=cached" in caplog.text
    # and another schema or question is not a hit
    assert provider.chat(ask("同一个问题")) is None
    assert len(fake_openai.chat_calls) == 3  # 1 + the 500 and its retry


def test_quota_per_creator_per_day(ai, fake_openai, caplog):
    # given a daily quota of 3 calls per creator
    provider = ai(AI_DAILY_QUOTA=3)
    fake_openai.answer("好的")
    caplog.set_level(logging.INFO, logger="content_ai.provider")
    # when creator 7 asks 4 different questions
    answers = [provider.chat(ask(f"问题{i}"), creator_id=7) for i in range(4)]
    # then the 4th is refused (the offline path), without calling the model
    assert all(a is not None for a in answers[:3]) and answers[3] is None
    assert len(fake_openai.chat_calls) == 3
    assert "outcome=quota" in caplog.text
    # and another creator still gets answers
    assert provider.chat(ask("问题0"), creator_id=8) is not None  # a cache hit, no quota used
    assert provider.chat(ask("别的问题"), creator_id=8) is not None
    assert len(fake_openai.chat_calls) == 4


def test_key_and_prompt_never_logged(ai, fake_openai, caplog):
    # given every logger at DEBUG (the openai and HTTP libraries included)
    provider = ai()
    caplog.set_level(logging.DEBUG)
    # when calls succeed, fail and time out
    fake_openai.answer("好的")
    provider.chat(ask("秘密的提示词内容"), creator_id=1)
    fake_openai.fail(500)
    provider.chat(ask("另一个秘密提示"), creator_id=1)
    provider.embed(["秘密的向量文本"])
    # then the key appears in no record, and our own log lines carry neither key nor prompt
    assert AI_KEY not in caplog.text
    ours = [r.getMessage() for r in caplog.records if r.name == "content_ai.provider"]
    assert ours and all("秘密" not in line for line in ours)
    assert any("ms=" in line and "prompt_tokens=" in line and "cost_fen=" in line for line in ours)


def test_embeddings(ai, fake_openai):
    # given a model serving embeddings
    provider = ai()
    # when two texts are embedded
    vectors = provider.embed(["视频会员月卡", "话费充值"])
    # then one vector per text, in order, as the server computed them
    assert vectors is not None and len(vectors) == 2
    assert vectors[0] == pytest.approx(vector("视频会员月卡"), abs=1e-6)
    assert vectors[1] == pytest.approx(vector("话费充值"), abs=1e-6)
    assert fake_openai.embed_calls[0].json()["model"] == "fake-embed"


def test_embeddings_fail_to_none(ai, fake_openai):
    # given a failing embeddings endpoint / when embedding / then None
    provider = ai(AI_RETRIES=0)
    fake_openai.fail(500)
    assert provider.embed(["视频会员月卡"]) is None
    assert provider.embed([]) is None


def test_invented_numbers_pass_through_unguarded(ai, fake_openai):
    # given a model that invents a price (the grounding guards come with the answers slice)
    provider = ai()
    fake_openai.invent_number(9.9)
    # when asked / then the provider returns the text as the model wrote it: guarding is the caller's
    answer = provider.chat(ask("多少钱"))
    assert answer is not None and "9.9元" in answer.content
