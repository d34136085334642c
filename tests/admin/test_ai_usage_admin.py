"""The model usage page through the real HTTP interface, signed in: calls made through the
provider against the fake OpenAI-compatible server show up per day (calls, tokens, cost in yuan,
outcomes, purposes), as the cache hit rate, in today's top creators (with the quota counter) and
in the recent calls, never with a prompt; the breaker's state and until when; the offline page;
bad `days` values; who may open it."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from content_ai.provider import Provider
from models import ai_calls
from models.db import utcnow
from tests.conftest import AI_KEY
from tests.factories import ai_call, creator
from tests.fakes.openai_api import FakeOpenAI

PAGE = "/admin/content/ai-usage/"
SECRET = "不能出现在页面上的提示词"


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{SECRET}{text}"}]


@pytest.fixture
def online(rt, fake_openai: FakeOpenAI, monkeypatch):  # noqa: ANN001, ANN201
    """The runtime's provider pointed at the fake server (as AI_BASE_URL would configure it)."""
    fake_openai.reset()
    values = dict(AI_BASE_URL=fake_openai.base_url_v1, AI_API_KEY=AI_KEY, AI_MODEL="fake-chat",
                  AI_EMBED_MODEL="fake-embed", AI_TIMEOUT_S=1.0, AI_RETRIES=0, AI_BREAKER_FAILURES=2,
                  AI_BREAKER_OPEN_S=300, AI_DAILY_QUOTA=7, AI_PRICE_IN_PER_1K_FEN=1000, AI_PRICE_OUT_PER_1K_FEN=0)
    for name, value in values.items():
        monkeypatch.setattr(rt.settings, name, value)
    provider = Provider(rt.settings, rt.redis)
    monkeypatch.setattr(rt, "ai", provider)
    yield provider
    fake_openai.reset()


def row(html: str, attr: str) -> str:
    found = re.search(rf'<tr {attr}.*?</tr>', html, re.S)
    assert found, attr
    return found.group(0)


def test_calls_show_per_day_top_creators_and_recent(admin, online, fake_openai):
    # given a creator's two answered calls and one cached, a failed answer call, an embedding, and a
    # costly call three days ago
    someone = creator(name="小星")
    fake_openai.answer("好的")
    online.chat(ask("1"), creator_id=someone.id, purpose="script")
    online.chat(ask("2"), creator_id=someone.id, purpose="script")
    online.chat(ask("1"), creator_id=someone.id, purpose="script")  # cached
    fake_openai.fail(500)
    online.chat(ask("3"), purpose="answer")
    fake_openai.reset()
    online.embed(["话费"], purpose="hook")
    old_day = ai_calls.beijing_day() - dt.timedelta(days=3)
    ai_call(at=ai_calls.day_bounds(old_day)[0] + dt.timedelta(hours=1), cost_mfen=123_456, purpose="talk_track")
    # when a read-only operator opens the page
    page = admin("readonly").get(PAGE)
    html = page.data.decode()
    # then today's row counts 5 calls with their outcomes and purposes and the cost in yuan
    assert page.status_code == 200
    today = row(html, f'data-day="{ai_calls.beijing_day().isoformat()}"')
    assert '<td class="calls">5</td>' in today
    assert 'data-outcome="ok"' in today and 'data-outcome="cached"' in today and 'data-outcome="http_5xx"' in today
    assert 'data-purpose="script"' in today and 'data-purpose="hook"' in today and 'data-purpose="answer"' in today
    assert re.search(r'class="cost">¥\d+\.\d\d<', today)
    # and three days ago the old call's 123,456 milli-fen show as ¥1.24 (rounded up to the fen)
    assert '<td class="cost">¥1.24</td>' in row(html, f'data-day="{old_day.isoformat()}"')
    # and the cache hit rate is 1 cached of 3 answered calls
    assert 'id="cache-hit">33.33%<' in html
    # and the creator leads today's quota use: 2 model calls (the cached one used none), counter 2 of 7
    top = row(html, f'data-creator="{someone.id}"')
    assert "小星" in top and '<td class="calls">2</td>' in top and '<td class="quota">2 / 7</td>' in top
    # and the recent calls list all 6, the breaker is closed (1 failure), the host is shown; no prompt, no key
    assert html.count("data-call=") == 6
    assert 'id="breaker" data-state="closed"' in html and "127.0.0.1" in html
    assert SECRET not in html and AI_KEY not in html


def test_an_open_breaker_shows_until_when(admin, online, fake_openai):
    # given a breaker that opened after 2 failures for 300 s
    fake_openai.fail(500)
    online.chat(ask("a"))
    online.chat(ask("b"))
    assert online.breaker_state()["state"] == "open"
    # when the page is opened
    html = admin("ops").get(PAGE).data.decode()
    # then the chat breaker shows open, until a time about 5 minutes ahead (Beijing wall time); the
    # embeddings' breaker is still closed
    assert 'id="breaker-embed" data-state="closed"' in html
    until = re.search(r'id="breaker" data-state="open">.*?class="breaker-until">至 (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)<',
                      html, re.S)
    assert until
    shown = dt.datetime.strptime(until.group(1), "%Y-%m-%d %H:%M:%S") - dt.timedelta(hours=8)
    assert dt.timedelta(minutes=3) < shown - utcnow() <= dt.timedelta(minutes=5, seconds=2)


def test_offline_page_and_bad_days(admin, rt):
    # given no model configured and no calls
    reader = admin("readonly")
    # when the page is opened / then it says offline and that there are no calls, 14 days by default
    html = reader.get(PAGE).data.decode()
    assert 'data-state="offline"' in html and 'id="no-calls"' in html and 'id="no-top"' in html
    assert html.count("data-day=") == 14
    # and a bad or out-of-range `days` is a page with the default or the bound, never an error
    for days, rows in (("abc", 14), ("0", 1), ("2", 2), ("500", 60), ("-3", 1)):
        answer = reader.get(f"{PAGE}?days={days}")
        assert answer.status_code == 200 and answer.data.decode().count("data-day=") == rows, days


@pytest.mark.parametrize(("role", "status"), [("readonly", 200), ("ops", 200), ("finance", 200), ("support", 403)])
def test_who_may_open_it(admin, rt, role, status):
    assert admin(role).get(PAGE).status_code == status


def test_it_is_in_the_content_menu(admin, rt):
    html = admin("readonly").get("/admin/").data.decode()
    assert PAGE.rstrip("/") in html and "模型用量" in html
