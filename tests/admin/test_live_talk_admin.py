"""The admin's live talk tracks (内容运营 › 直播话术) through the real HTTP interface: the list of
scheduled and live sessions, the audited 生成话术 action for content.manage / live.manage (the
templates offline, the model behind the fake server when it passes the guard), readers who may
not act, a form sent twice, an ended session, and the page in English."""

from __future__ import annotations

import pytest

from miniapp_api.deps import EXTENSION
from models.audit import AuditEntry
from models.db import db
from tests.factories import end_session, online_ai, talk_session, track_json

BASE = "/admin/content/talk"


def audits() -> list[AuditEntry]:
    with db.connection_context():
        return list(AuditEntry.select().where(AuditEntry.action == "content.talk_track"))


def test_the_list_and_an_offline_track(admin, shop):
    # given a scheduled session with a laddered product and a lottery
    _, sid, (laddered, _) = talk_session(shop)
    ops = admin("ops")
    # when the operator opens the list and asks for the talk track
    listing = ops.get(f"{BASE}/")
    page = ops.post(f"{BASE}/{sid}", page=f"{BASE}/")
    # then the session is listed with the action, and the track is shown, from the templates
    assert listing.status_code == 200 and f'data-session="{sid}"'.encode() in listing.data
    assert b"talk-form" in listing.data
    assert page.status_code == 200, page.data[:500]
    assert b'data-source="offline"' in page.data and laddered.name.encode() in page.data
    assert "第51-100位买家 ¥19.90".encode() in page.data and b'data-kind="welfare"' in page.data
    # and the action is audited
    rows = audits()
    assert len(rows) == 1 and rows[0].object == f"live:{sid}"
    assert rows[0].after == {"source": "offline", "sections": 5}


def test_the_model_writes_it_when_configured(admin, app, shop, fake_openai, monkeypatch):
    _, sid, skus = talk_session(shop)
    fake_openai.reset()
    served = app.extensions[EXTENSION]  # the app's runtime (a CLI test may have rebuilt `rt`)
    monkeypatch.setattr(served, "ai", online_ai(served, fake_openai))
    fake_openai.answer(track_json(skus))
    page = admin("owner").post(f"{BASE}/{sid}", page=f"{BASE}/")
    assert b'data-source="model"' in page.data and "前50位只要¥9.90".encode() in page.data
    fake_openai.answer(track_json(skus, price="¥2.50"))
    page = admin("ops").post(f"{BASE}/{sid}", page=f"{BASE}/")
    assert b'data-source="offline"' in page.data and "¥2.50".encode() not in page.data
    fake_openai.reset()


@pytest.mark.parametrize("role", ["readonly", "finance"])
def test_readers_may_not_act(admin, shop, role):
    _, sid, _ = talk_session(shop)
    reader = admin(role)
    listing = reader.get(f"{BASE}/")
    assert listing.status_code == 200 and b"talk-form" not in listing.data
    assert reader.post(f"{BASE}/{sid}", page=f"{BASE}/").status_code == 403
    assert audits() == []


def test_a_form_sent_twice_and_an_ended_session(admin, shop):
    host, sid, _ = talk_session(shop, state="live")
    ops = admin("ops")
    token = {"action_token": "talk-token-0123456789abcdef"}
    assert ops.post(f"{BASE}/{sid}", dict(token), page=f"{BASE}/").status_code == 200
    again = ops.post(f"{BASE}/{sid}", dict(token), page=f"{BASE}/", follow_redirects=True)
    assert "没有重复执行".encode() in again.data and len(audits()) == 1
    end_session(host, sid)
    ended = ops.post(f"{BASE}/{sid}", page=f"{BASE}/", follow_redirects=True)
    assert "不能生成话术".encode() in ended.data and len(audits()) == 1
    assert f'data-session="{sid}"'.encode() not in ops.get(f"{BASE}/").data


def test_the_page_speaks_english(admin, shop):
    talk_session(shop)
    ops = admin("ops")
    ops.post("/admin/lang", {"lang": "en", "next": "/admin/"}, action=False)
    page = ops.get(f"{BASE}/")
    assert b"Write talk track" in page.data and b"Pinned products" in page.data


def test_the_model_prompt_on_the_admin_live_dashboard(admin, rt, shop, fake_openai):
    # given a session on air with a viewer, the rule speaking at once, and the hint provider on a model
    from content_ai import live_prompts
    from models import live_dashboard, live_hints
    from models.db import utcnow
    from models.live_hints import LiveHintRule

    _, sid, _ = talk_session(shop, state="live")
    with db.connection_context():
        live_hints.seed_defaults()
        LiveHintRule.update(for_s=0, min_viewers=0).where(LiveHintRule.code == "low_conversion").execute()
        live_dashboard.entered(rt.redis, sid, 7, utcnow())
    fake_openai.reset()
    fake_openai.answer({"hint": "在线 1 人，先讲 ¥9.90 的阶梯价"})
    live_prompts.install(online_ai(rt, fake_openai), rt.redis, rt.settings)
    try:
        # when an operator's dashboard page polls its JSON
        data = admin("readonly").get(f"/admin/live/dashboard/{sid}/data.json").json
    finally:
        live_prompts.install(rt.ai, rt.redis, rt.settings)
        fake_openai.reset()
    # then the rule hint and the model's prompt are both there
    assert [(h["code"], h["source"]) for h in data["hints"]] == [("low_conversion", "rule"), ("ai_prompt", "model")]
