"""The live sessions admin in a real browser: an ops operator signs in, schedules a session for a
creator through the form (Shanghai wall time, a pin with a price ladder), finds it in the list
with its start as typed, reschedules it from its page and starts it; nothing logs a console
error. The session page's screenshot is saved as docs/screenshots/live-session.png."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, expect

from models.db import db
from models.live import LiveSession
from tests.factories import creator, drama_series, operator

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "live-session.png"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_ops_schedules_reschedules_and_starts_a_session(page: Page, shop, rt) -> None:  # noqa: ANN001
    # given a creator, a product, and an ops operator signed in through the login form
    host = creator(name="林小满")
    shop.card_sku(keys=20, price=9_900, code="MASK-1")
    with db.connection_context():
        op, password = operator("ops")
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto("/admin/")
    page.fill("#name", op.name)
    page.fill("#password", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_url("**/admin/")
    # when it schedules a session for tomorrow 20:00 Shanghai time with a two-tier ladder
    day = (dt.datetime.now(SHANGHAI) + dt.timedelta(days=1)).date().isoformat()
    page.goto("/admin/live/sessions/")
    page.click("#new-session")
    page.fill("#creator", host.code)
    page.fill("#title", "周五福利专场")
    page.fill("#start", f"{day} 20:00")
    page.fill("#pins", 'MASK-1, {"tiers": [{"units": 50, "price_fen": 990}, {"units": 50, "price_fen": 1990}]}')
    page.click("#schedule")
    # then its page shows it scheduled, with the ladder's first tier
    expect(page.locator("#state")).to_have_attribute("data-state", "scheduled")
    expect(page.locator("#scheduled-at")).to_contain_text(f"{day} 20:00")
    expect(page.locator("#pins .ladder")).to_contain_text("¥9.90")
    session_id = int(re.search(r"/admin/live/sessions/(\d+)", page.url).group(1))
    drama_series(host, title="霸总的秘密", episodes=3, link=("cliffhanger", session_id))
    # and the list shows it with the start as typed
    page.goto("/admin/live/sessions/")
    expect(page.locator(f'tr[data-session="{session_id}"] .start')).to_have_text(f"{day} 20:00")
    # when it moves the session to 21:30 from the session's page
    page.click(f'tr[data-session="{session_id}"] a >> nth=0')
    page.fill("#reschedule-form input[name=start]", f"{day} 21:30")
    page.click("#reschedule-form button")
    # then the page shows the new start (stored as UTC 13:30)
    expect(page.locator("#scheduled-at")).to_contain_text(f"{day} 21:30")
    with db.connection_context():
        stored = LiveSession.get_by_id(session_id).scheduled_at
    assert stored == dt.datetime.fromisoformat(f"{day}T21:30").replace(tzinfo=SHANGHAI).astimezone(dt.UTC) \
        .replace(tzinfo=None)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    # and starting it turns it live
    page.click("#start-form button")
    expect(page.locator("#state")).to_have_attribute("data-state", "live")
    expect(page.locator("#end-form")).to_be_visible()
    assert errors == []

