"""The provider's call log against the fake OpenAI-compatible server: every outcome (ok, cached,
timeout, http_5xx, http_4xx, connection, invalid, breaker_open, quota) writes one ai_call row
with the caller's purpose, the creator, the model, tokens and an integer cost; the prompt is
stored nowhere; a database that refuses the row does not break the call."""

from __future__ import annotations

import math

import pytest
from pydantic import BaseModel

from content_ai.provider import Provider
from tests.conftest import AI_KEY, free_port
from tests.factories import ai_call_rows, online_ai
from tests.fakes.openai_api import FakeOpenAI

SECRET_PROMPT = "这是绝不能落库的提示词"


class Script(BaseModel):
    title: str
    lines: list[str]


def ask(text: str = SECRET_PROMPT) -> list[dict[str, str]]:
    return [{"role": "system", "content": "你是带货文案助手。"}, {"role": "user", "content": text}]


@pytest.fixture
def ai(rt, fake_openai: FakeOpenAI):  # noqa: ANN001, ANN201
    fake_openai.reset()

    def make(**overrides: object) -> Provider:
        return online_ai(rt, fake_openai, **{
            "AI_EMBED_MODEL": "fake-embed", "AI_DAILY_QUOTA": 5, "AI_CACHE_S": 3600,
            "AI_PRICE_IN_PER_1K_FEN": 1.5, "AI_PRICE_OUT_PER_1K_FEN": 2.2, **overrides})
    yield make
    fake_openai.reset()


def outcomes() -> list[str]:
    return [r.outcome for r in ai_call_rows()]


def test_an_answer_writes_one_ok_row_with_tokens_and_an_integer_cost(ai, fake_openai):
    # given a model that answers, priced 1.5 fen per 1K prompt tokens and 2.2 per 1K completion tokens
    provider = ai()
    fake_openai.answer("家人们，视频会员月卡来了！")
    # when a creator's script call is made
    answer = provider.chat(ask(), creator_id=7, purpose="script")
    # then one row: chat, the purpose, the creator, the model, ok, the tokens, the cost in milli-fen rounded up
    assert answer is not None
    (row,) = ai_call_rows()
    assert (row.kind, row.purpose, row.creator_id, row.model, row.outcome) == ("chat", "script", 7, "fake-chat", "ok")
    assert (row.prompt_tokens, row.completion_tokens) == (answer.prompt_tokens, answer.completion_tokens)
    expected = math.ceil(answer.prompt_tokens * 1.5 + answer.completion_tokens * 2.2 - 1e-9)
    assert isinstance(row.cost_mfen, int) and row.cost_mfen == expected > 0
    assert answer.cost_mfen == expected
    assert answer.cost_fen == pytest.approx(expected / 1000, abs=0.001)  # the float is still there
    assert row.latency_ms >= 0


def test_a_cache_hit_writes_a_cached_row_without_tokens(ai, fake_openai):
    # given one answered question
    provider = ai()
    fake_openai.answer('{"title": "t", "lines": ["a"]}')
    provider.chat(ask(), schema=Script, creator_id=7, purpose="script")
    # when the same question is asked again
    again = provider.chat(ask(), schema=Script, creator_id=7, purpose="script")
    # then the second row is "cached", with no tokens and no cost
    assert again is not None and again.cached
    first, second = ai_call_rows()
    assert (first.outcome, second.outcome) == ("ok", "cached")
    assert (second.prompt_tokens, second.completion_tokens, second.cost_mfen) == (0, 0, 0)


def test_a_stall_writes_a_timeout_row_bounded_by_the_timeout(ai, fake_openai):
    # given a model that stalls past the 0.3 s timeout
    provider = ai(AI_TIMEOUT_S=0.3)
    fake_openai.stall(2)
    # when asked
    assert provider.chat(ask(), purpose="answer") is None
    # then a timeout row whose latency is at least the timeout and well under the stall
    (row,) = ai_call_rows()
    assert row.outcome == "timeout" and row.purpose == "answer"
    assert 300 <= row.latency_ms < 1900
    assert (row.prompt_tokens, row.cost_mfen) == (0, 0)


def test_a_500_writes_an_http_5xx_row(ai, fake_openai):
    provider = ai()
    fake_openai.fail(500)
    assert provider.chat(ask(), purpose="hint") is None
    assert outcomes() == ["http_5xx"]


def test_a_refused_key_writes_an_http_4xx_row(ai, fake_openai):
    provider = ai(AI_API_KEY="sk-wrong")
    assert provider.chat(ask()) is None
    assert outcomes() == ["http_4xx"]


def test_nothing_listening_writes_a_connection_row(ai):
    provider = ai(AI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1")
    assert provider.chat(ask()) is None
    assert outcomes() == ["connection"]


def test_garbage_writes_an_invalid_row_with_the_tokens_it_cost(ai, fake_openai):
    # given a model that answers JSON that is not the schema's
    provider = ai()
    fake_openai.malformed()
    # when asked / then None, and an invalid row that still counts the tokens paid for
    assert provider.chat(ask(), schema=Script, purpose="script") is None
    (row,) = ai_call_rows()
    assert row.outcome == "invalid" and row.prompt_tokens > 0 and row.completion_tokens > 0
    assert row.cost_mfen == math.ceil(row.prompt_tokens * 1.5 + row.completion_tokens * 2.2 - 1e-9)


def test_an_open_breaker_writes_breaker_open_rows(ai, fake_openai):
    # given a breaker that opens after 3 failures
    provider = ai(AI_BREAKER_FAILURES=3, AI_CACHE_S=0)
    fake_openai.fail(500)
    for i in range(3):
        provider.chat(ask(f"问题{i}"))
    # when asked while it is open
    fake_openai.answer("好的")
    assert provider.chat(ask("问题3"), purpose="answer") is None
    # then three failures and one breaker_open row (no call made for it), and the admin sees it open
    assert outcomes() == ["http_5xx"] * 3 + ["breaker_open"]
    assert len(fake_openai.chat_calls) == 3
    state = provider.breaker_state()
    assert state["state"] == "open" and 0 < state["open_for_s"] <= 60


def test_the_breaker_state_reads_closed_then_counts_failures(ai, fake_openai):
    provider = ai(AI_BREAKER_FAILURES=3)
    assert provider.breaker_state() == {"state": "closed", "open_for_s": 0, "fails": 0}
    fake_openai.fail(500)
    provider.chat(ask())
    assert provider.breaker_state()["fails"] == 1


def test_a_used_up_quota_writes_quota_rows(ai, fake_openai):
    # given a daily quota of 2
    provider = ai(AI_DAILY_QUOTA=2)
    fake_openai.answer("好的")
    # when creator 9 asks 3 different questions
    for i in range(3):
        provider.chat(ask(f"问题{i}"), creator_id=9, purpose="answer")
    # then two ok rows and one quota row, all the creator's; the quota counter says 3 used
    assert outcomes() == ["ok", "ok", "quota"]
    assert {r.creator_id for r in ai_call_rows()} == {9}
    assert provider.quota_used([9, 10]) == {9: 3, 10: 0}


def test_embeddings_write_rows_with_their_purpose(ai, fake_openai):
    # given a model serving embeddings
    provider = ai()
    # when texts are embedded, then the server fails
    assert provider.embed(["视频会员月卡", "话费充值"], purpose="hook") is not None
    fake_openai.fail(503)
    assert provider.embed(["话费"], purpose="hook") is None
    # then an ok row with the embed model and its tokens, and an http_5xx row
    ok, failed = ai_call_rows()
    assert (ok.kind, ok.model, ok.purpose, ok.outcome) == ("embed", "fake-embed", "hook", "ok")
    assert ok.prompt_tokens > 0 and ok.completion_tokens == 0 and ok.cost_mfen == math.ceil(ok.prompt_tokens * 1.5)
    assert (failed.kind, failed.outcome) == ("embed", "http_5xx")


def test_existing_callers_without_a_purpose_still_log(ai, fake_openai):
    provider = ai()
    fake_openai.answer("好的")
    assert provider.chat(ask(), creator_id="12") is not None
    (row,) = ai_call_rows()
    assert (row.purpose, row.creator_id) == ("", 12)


def test_no_prompt_is_stored(ai, fake_openai):
    # given calls that succeed, fail and are cached
    provider = ai()
    fake_openai.answer(f"回答：{SECRET_PROMPT}")  # the answer repeats the prompt: not stored either
    provider.chat(ask(), creator_id=1, purpose="answer")
    provider.chat(ask(), creator_id=1, purpose="answer")
    fake_openai.fail(500)
    provider.chat(ask("另一个" + SECRET_PROMPT), creator_id=1)
    provider.embed([SECRET_PROMPT])
    # then no column of any row holds the prompt, the answer or the key
    rows = ai_call_rows()
    assert len(rows) == 4
    for row in rows:
        for value in row.__data__.values():
            assert SECRET_PROMPT not in str(value) and AI_KEY not in str(value)


def test_a_database_that_refuses_the_row_does_not_break_the_call(ai, fake_openai):
    # given a creator id the database cannot store (beyond 64 bits): the row is refused
    provider = ai()
    fake_openai.answer("好的")
    # when asked / then the answer still comes back; no row, and the next call logs as usual
    assert provider.chat(ask(), creator_id=2**70, purpose="answer") is not None
    assert ai_call_rows() == []
    assert provider.chat(ask("再问一次"), creator_id=3) is not None
    assert outcomes() == ["ok"]


def test_offline_writes_nothing(rt, fake_openai):
    # given the runtime's provider with no model configured / when asked / then no row: no call happened
    assert rt.ai.chat(ask(), purpose="answer") is None
    assert rt.ai.embed(["x"], purpose="hook") is None
    assert ai_call_rows() == []


def test_a_server_without_embeddings_does_not_stop_the_chat(ai, fake_openai):
    # given a server whose embeddings endpoint does not exist (404, as DeepSeek's), 3 failures open a breaker
    provider = ai(AI_BREAKER_FAILURES=3)
    fake_openai.fail(404)
    for i in range(4):
        assert provider.embed([f"文本{i}"], purpose="hook") is None
    # when the chat endpoint answers
    fake_openai.answer("好的")
    answer = provider.chat(ask(), purpose="answer")
    # then the embeddings' breaker is open but the chat's is not: the chat call reached the model
    assert answer is not None and len(fake_openai.chat_calls) == 1
    assert provider.breaker_state("embed")["state"] == "open" and provider.breaker_state("chat")["state"] == "closed"
    assert outcomes() == ["http_4xx"] * 3 + ["breaker_open", "ok"]
