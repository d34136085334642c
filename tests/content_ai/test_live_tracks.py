"""Live talk tracks (content_ai/live_tracks.py) from a session scheduled through the real
service: offline templates filled from the database's facts, and the model behind the fake
OpenAI-compatible server — a good answer, an invented price caught by the guard, a missing
product, garbage, a stall bounded by the timeout, a 500, and the circuit breaker."""

from __future__ import annotations

import time

import pytest

from content_ai import guard, live_tracks
from models import live_content
from models.db import db
from models.errors import InvalidState, NotFound
from tests.factories import creator, end_session, online_ai, talk_session, track_json

TZ = "Asia/Shanghai"


@pytest.fixture
def ai(rt, fake_openai):  # noqa: ANN001, ANN201
    fake_openai.reset()
    yield lambda **kw: online_ai(rt, fake_openai, **kw)
    fake_openai.reset()


def facts_of(session_id: int, **kw) -> live_content.TalkFacts:  # noqa: ANN003
    with db.connection_context():
        return live_content.talk_facts(session_id, TZ, **kw)


def test_offline_track_has_every_part_from_the_database(rt, shop):
    # given a scheduled session with a laddered product, a plain one and a lottery
    host, sid, (laddered, plain) = talk_session(shop)
    facts = facts_of(sid)
    # when the track is written without a model
    track = live_tracks.talk_track(facts, ai=rt.ai)
    # then opening, both products (the ladder with its tiers), the welfare item and a closing
    assert track.source == "offline"
    assert [s.kind for s in track.sections] == ["opening", "product", "product", "welfare", "closing"]
    by_sku = {s.sku: s.text for s in track.sections if s.kind == "product"}
    assert "¥29.90" in by_sku[laddered.code] and "第1-50位买家 ¥9.90" in by_sku[laddered.code]
    assert "第51-100位买家 ¥19.90" in by_sku[laddered.code]
    assert "¥49.80" in by_sku[plain.code]
    assert "预约满 10 人" in track.sections[3].text and "抽 2 位" in track.sections[3].text
    assert "小星" in track.sections[0].text and facts.when in track.sections[0].text
    # and every part passes the guard against the facts it was written from
    for section in track.sections:
        assert guard.check(section.text, facts.facts_text()).ok, section


def test_no_welfare_part_without_a_lottery_or_assist(rt, shop):
    _, sid, _ = talk_session(shop, lottery=False)
    track = live_tracks.talk_track(facts_of(sid), ai=None)
    assert "welfare" not in [s.kind for s in track.sections]


def test_ended_and_foreign_sessions_are_refused(rt, shop):
    host, sid, _ = talk_session(shop, state="live")
    stranger = creator()
    with pytest.raises(NotFound):
        facts_of(sid, creator=stranger)
    end_session(host, sid)
    with pytest.raises(InvalidState) as caught:
        facts_of(sid, creator=host)
    assert caught.value.code == "live_ended"


def test_the_model_writes_it_when_it_passes_the_guard(rt, shop, ai, fake_openai):
    # given a model that answers a grounded track
    _, sid, skus = talk_session(shop)
    fake_openai.answer(track_json(skus))
    # when the track is written
    track = live_tracks.talk_track(facts_of(sid), ai=ai(), creator_id=1)
    # then the model's parts are shown, in the session's product order
    assert track.source == "model"
    assert [s.sku for s in track.sections if s.kind == "product"] == [s.code for s in skus]
    assert "前50位只要¥9.90" in track.sections[1].text
    # and the prompt carried the facts from the database, asking for JSON
    body = fake_openai.chat_calls[0].json()
    assert body["response_format"] == {"type": "json_object"}
    assert "¥19.90" in body["messages"][1]["content"] and skus[1].code in body["messages"][1]["content"]


@pytest.mark.parametrize("answer", [
    "invented_price",  # a tier price the ladder does not have
    "invented_number",  # the fake's fluent answer with a made-up number (not even JSON)
    "missing_product",  # a pinned product without its part
    "no_welfare",  # the lottery left out
    "malformed",
])
def test_a_refused_model_answer_falls_back_to_the_templates(rt, shop, ai, fake_openai, answer):
    _, sid, skus = talk_session(shop)
    if answer == "invented_price":
        fake_openai.answer(track_json(skus, price="¥5.90"))
    elif answer == "invented_number":
        fake_openai.invent_number(3.3)
    elif answer == "missing_product":
        data = track_json(skus)
        data["products"] = data["products"][:1]
        fake_openai.answer(data)
    elif answer == "no_welfare":
        fake_openai.answer(track_json(skus, welfare=""))
    else:
        fake_openai.malformed()
    track = live_tracks.talk_track(facts_of(sid), ai=ai())
    assert track.source == "offline" and len(fake_openai.chat_calls) == 1
    assert "¥5.90" not in "".join(s.text for s in track.sections)


def test_a_stalled_model_is_bounded_by_the_timeout(rt, shop, ai, fake_openai):
    _, sid, _ = talk_session(shop)
    fake_openai.stall(3)
    started = time.monotonic()
    track = live_tracks.talk_track(facts_of(sid), ai=ai(AI_TIMEOUT_S=0.5))
    assert track.source == "offline"
    assert time.monotonic() - started < 2.5  # one attempt of 0.5 s, generously bounded


def test_a_500_and_then_the_open_breaker(rt, shop, ai, fake_openai):
    # given a model that fails, and a breaker that opens after 3 failures
    _, sid, skus = talk_session(shop)
    provider = ai(AI_BREAKER_FAILURES=3)
    fake_openai.fail(500)
    facts = facts_of(sid)
    # when the track is asked for four times
    sources = [live_tracks.talk_track(facts, ai=provider).source for _ in range(4)]
    # then the templates answer each time and the fourth never reached the model
    assert sources == ["offline"] * 4
    assert len(fake_openai.chat_calls) == 3
    # and a healthy model is not asked while the breaker is open
    fake_openai.answer(track_json(skus))
    assert live_tracks.talk_track(facts, ai=provider).source == "offline"
    assert len(fake_openai.chat_calls) == 3
