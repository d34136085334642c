"""The coaching routes through the real app: GET /api/v1/creator/live/<id>/talk-track and GET
/api/v1/creator/funnel/hint, offline and with the model behind the fake server (a good answer,
an invented number, a 500), with the JSON error shape for another creator's session, an ended
one, a missing one and a user who has not joined; and the model's real-time prompt on the
creator's dashboard route beside the rule hints."""

from __future__ import annotations

import pytest

from content_ai import live_prompts
from miniapp_api.deps import EXTENSION
from models import live_dashboard, live_hints
from models.db import db, utcnow
from models.live_hints import LiveHintRule
from models.network import Creator
from tests.factories import end_session, fresh, funnel_creator, online_ai, order_rows, talk_session, track_json

API = "/api/v1"


@pytest.fixture
def me(client, login):  # noqa: ANN001, ANN201
    """A logged-in creator of star level 2: (auth headers, creator)."""
    auth = login("talk-host")
    assert client.post(f"{API}/creator/join", json={"name": "小星"}, headers=auth).status_code == 200
    with db.connection_context():
        creator = Creator.select().order_by(Creator.id.desc()).first()
        Creator.update(rank=2).where(Creator.id == creator.id).execute()
    return auth, fresh(creator)


@pytest.fixture
def model(app, rt, fake_openai, monkeypatch):  # noqa: ANN001, ANN201
    """The app's runtime on the fake model (the app keeps the runtime it was created with, which
    is not always `rt`: a CLI test rebuilds the process's runtime)."""
    fake_openai.reset()
    served = app.extensions[EXTENSION]

    def use(**kw: object) -> None:
        provider = online_ai(served, fake_openai, **kw)
        monkeypatch.setattr(served, "ai", provider)
        live_prompts.install(provider, served.redis, served.settings)

    yield use
    monkeypatch.undo()
    live_prompts.install(rt.ai, rt.redis, rt.settings)
    fake_openai.reset()


def error_of(resp) -> tuple[int, str]:  # noqa: ANN001
    return resp.status_code, resp.json["error"]["code"]


def test_the_talk_track_offline_and_from_the_model(client, me, shop, model, fake_openai):
    auth, creator = me
    _, sid, skus = talk_session(shop, host=creator)
    # when read offline
    resp = client.get(f"{API}/creator/live/{sid}/talk-track", headers=auth)
    # then the templates, with the tier prices from the database
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert body["source"] == "offline" and body["session_id"] == sid and body["title"] == "周五福利专场"
    assert [s["kind"] for s in body["sections"]] == ["opening", "product", "product", "welfare", "closing"]
    assert "第51-100位买家 ¥19.90" in body["sections"][1]["text"] and body["sections"][1]["sku"] == skus[0].code
    # when a model writes a grounded track
    model()
    fake_openai.answer(track_json(skus))
    body = client.get(f"{API}/creator/live/{sid}/talk-track", headers=auth).json
    assert body["source"] == "model" and "前50位只要¥9.90" in body["sections"][1]["text"]
    # and when it invents a price, or fails, the templates answer again
    fake_openai.answer(track_json(skus, price="¥0.99"))
    assert client.get(f"{API}/creator/live/{sid}/talk-track", headers=auth).json["source"] == "offline"
    fake_openai.fail(500)
    assert client.get(f"{API}/creator/live/{sid}/talk-track", headers=auth).json["source"] == "offline"


def test_talk_track_errors(client, me, login, shop):
    auth, creator = me
    _, theirs, _ = talk_session(shop)
    assert error_of(client.get(f"{API}/creator/live/{theirs}/talk-track", headers=auth)) == (404, "live_not_found")
    assert error_of(client.get(f"{API}/creator/live/987654/talk-track", headers=auth)) == (404, "live_not_found")
    _, sid, _ = talk_session(shop, host=creator, state="live")
    end_session(creator, sid)
    assert error_of(client.get(f"{API}/creator/live/{sid}/talk-track", headers=auth)) == (409, "live_ended")
    assert client.get(f"{API}/creator/live/{sid}/talk-track").status_code == 401
    stranger = login("not-a-creator")
    assert error_of(client.get(f"{API}/creator/live/{sid}/talk-track", headers=stranger)) == (404, "not_a_creator")


def test_the_funnel_hint(client, me, shop, model, fake_openai):
    auth, creator = me
    sku = shop.card_sku(keys=1)
    funnel_creator(2, plays=100, entries=20, orders=4, sku=sku)
    funnel_creator(2, plays=100, entries=10, orders=1, sku=sku)
    order_rows(sku, 2, seller=creator, openid="hint-buyer")
    # when I have no plays at all
    body = client.get(f"{API}/creator/funnel/hint", headers=auth).json
    # then plays is the weakest step, with the medians of my level
    assert body["step"] == "plays" and body["source"] == "offline"
    assert body["funnel"]["peers"] == {"count": 3, "plays": 100, "entry_bp": 1000, "order_bp": 1000}
    assert body["funnel"]["orders"] == 2 and "同等级中位数是 100 次" in body["text"]
    # and the model's wording when it keeps to the numbers
    model()
    fake_openai.answer({"hint": "同等级中位数是 100 次播放，你还是 0 次：先固定时间发短视频。"})
    body = client.get(f"{API}/creator/funnel/hint", headers=auth).json
    assert body["source"] == "model" and body["text"].startswith("同等级中位数是 100 次播放")
    fake_openai.answer({"hint": "发 5 条视频就能追上中位数。"})
    assert client.get(f"{API}/creator/funnel/hint", headers=auth).json["source"] == "offline"
    assert client.get(f"{API}/creator/funnel/hint").status_code == 401


def test_the_model_prompt_on_the_dashboard_route(client, rt, me, shop, model, fake_openai):
    # given my session on air with a viewer, and the low-conversion rule speaking at once
    auth, creator = me
    _, sid, _ = talk_session(shop, host=creator, state="live")
    with db.connection_context():
        live_hints.seed_defaults()
        LiveHintRule.update(for_s=0, min_viewers=0).where(LiveHintRule.code == "low_conversion").execute()
        live_dashboard.entered(rt.redis, sid, 7, utcnow())
    model()
    fake_openai.answer({"hint": "在线 1 人，先讲 ¥9.90 的阶梯价"})
    # when I poll my dashboard twice
    first = client.get(f"{API}/creator/live/sessions/{sid}/dashboard", headers=auth).json["hints"]
    second = client.get(f"{API}/creator/live/sessions/{sid}/dashboard", headers=auth).json["hints"]
    # then the rule hint and the model's prompt, from one model call
    assert [(h["code"], h["source"]) for h in first] == [("low_conversion", "rule"), ("ai_prompt", "model")]
    assert second == first and len(fake_openai.chat_calls) == 1
