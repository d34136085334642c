"""The model usage page in a real browser: a read-only operator signs in and sees a week of model
calls per day, the breakers, today's top creators and the recent calls, without a console error.
The screenshot is saved as docs/screenshots/ai-usage.png."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Page, expect

from content_ai.provider import Provider
from models import ai_calls
from models.db import db
from tests.conftest import AI_KEY
from tests.factories import ai_call, creator, operator
from tests.fakes.openai_api import FakeOpenAI

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "ai-usage.png"
PURPOSES = (("answer", 6), ("script", 3), ("talk_track", 1), ("hint", 2), ("hook", 1), ("funnel_hint", 1))
OUTCOMES = (("ok", 70), ("cached", 22), ("timeout", 3), ("http_5xx", 2), ("invalid", 2), ("quota", 1))


def seed_a_week(rt, fake_openai: FakeOpenAI, monkeypatch) -> int:  # noqa: ANN001
    """A week of logged calls (the log as the provider writes it) and today's calls made through
    the provider against the fake server; returns the top creator's id."""
    rng = random.Random(16)
    today = ai_calls.beijing_day()
    for back in range(6, 0, -1):
        start, _ = ai_calls.day_bounds(today - dt.timedelta(days=back))
        for _ in range(20 + 6 * (6 - back) + rng.randint(0, 8)):
            outcome = rng.choices([o for o, _ in OUTCOMES], [w for _, w in OUTCOMES])[0]
            purpose = rng.choices([p for p, _ in PURPOSES], [w for _, w in PURPOSES])[0]
            p_tok, c_tok = (rng.randint(300, 1500), rng.randint(60, 400)) if outcome == "ok" else (0, 0)
            ai_call(at=start + dt.timedelta(minutes=rng.randint(8 * 60, 23 * 60)), outcome=outcome,
                    purpose=purpose, model="deepseek-chat", latency_ms=rng.randint(400, 2500) if p_tok else 3,
                    prompt_tokens=p_tok, completion_tokens=c_tok, cost_mfen=p_tok * 2 + c_tok * 8,
                    creator_id=rng.choice([None, 1, 2, 3]))
    values = dict(AI_BASE_URL=fake_openai.base_url_v1, AI_API_KEY=AI_KEY, AI_MODEL="deepseek-chat",
                  AI_EMBED_MODEL="text-embedding-v3", AI_RETRIES=0, AI_DAILY_QUOTA=200,
                  AI_PRICE_IN_PER_1K_FEN=2, AI_PRICE_OUT_PER_1K_FEN=8)
    for name, value in values.items():
        monkeypatch.setattr(rt.settings, name, value)
    provider = Provider(rt.settings, rt.redis)
    monkeypatch.setattr(rt, "ai", provider)
    top, other = creator(name="小鹿爱数码"), creator(name="糖糖追剧")
    fake_openai.reset()
    fake_openai.answer("家人们，腾讯视频会员月卡今天上车！")
    for n in range(9):
        provider.chat([{"role": "user", "content": f"脚本 {n % 6}"}], creator_id=top.id, purpose="script")
    for n in range(4):
        provider.chat([{"role": "user", "content": f"问题 {n}"}], creator_id=other.id, purpose="answer")
    provider.embed(["腾讯视频会员月卡", "QQ音乐绿钻"], purpose="hook")
    fake_openai.fail(500)
    provider.chat([{"role": "user", "content": "直播提示"}], purpose="hint")
    fake_openai.reset()
    return top.id


def test_the_usage_page_in_a_browser(page: Page, rt, fake_openai, monkeypatch) -> None:  # noqa: ANN001
    top = seed_a_week(rt, fake_openai, monkeypatch)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if isinstance(m, ConsoleMessage) and m.type == "error" else None)
    with db.connection_context():
        op, password = operator("readonly")
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto("/admin/")
    page.fill("#name", op.name)
    page.fill("#password", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_url("**/admin/")
    # when the page is opened from the 内容运营 menu
    page.goto("/admin/content/ai-usage/?days=7")
    # then seven days, the breakers, the top creator and the recent calls are shown
    expect(page.locator("#per-day tbody tr")).to_have_count(7)
    expect(page.locator("#breaker")).to_have_attribute("data-state", "closed")
    expect(page.locator("#top-creators tbody tr").first).to_have_attribute("data-creator", str(top))
    expect(page.locator("#recent-calls tbody tr").first).to_be_visible()
    assert errors == []
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    fake_openai.reset()
    fake_openai.reset()
