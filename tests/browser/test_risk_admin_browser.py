"""The risk admin (issue 15) in a real browser: a finance operator signs in (password and TOTP),
finds an open case in the queue, opens it, sees the evidence graph drawn by the vendored
ECharts (a canvas with pixels on it), clears the case with a note and sees it cleared; the
rules page lists the rules in force; nothing logs a console error. The case page and the rules
page are saved as docs/screenshots/risk-case.png and docs/screenshots/risk-rules.png."""

from __future__ import annotations

import re
from pathlib import Path

import pyotp
from playwright.sync_api import Page, expect

from models.db import db
from models.operators import totp_secret_of
from models.risk_tables import RiskCase
from tests.factories import creator, operator, risk_case

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
INKED = """() => {
  const canvas = document.querySelector('#risk-graph canvas');
  if (!canvas || !canvas.width || !canvas.height) { return 0; }
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let inked = 0;
  for (let i = 3; i < data.length; i += 4) { if (data[i]) { inked++; } }
  return inked;
}"""


def test_finance_opens_a_case_sees_the_graph_and_clears_it(page: Page, rt) -> None:  # noqa: ANN001
    # given a creator whose three sales came from shoppers on one IP and device, held in an open
    # case with the creator's first withdrawal, and a finance operator
    parent = creator(name="阿泽聊游戏")
    seller = creator(name="小鹿爱数码", parent=parent)
    case_id = risk_case(rt, seller=seller, orders=3, ip="10.20.30.40", device="device-of-the-farm",
                        withdrawal_fen=30_000)
    with db.connection_context():
        op, password = operator("finance", "fin-risk")
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/admin/login")
    page.fill("#name", op.name)
    page.fill("#password", password)
    page.click("#login-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/admin/totp$"))
    page.fill("#code", pyotp.TOTP(totp_secret_of(op)).now())
    page.click("#totp-form button[type=submit]")
    expect(page.locator("#qx-operator")).to_contain_text(op.name)

    # when it opens the queue: the case is listed with the rules that fired, the header counts it
    page.goto("/admin/risk/cases/")
    row = page.locator(f'tr[data-case="{case_id}"]')
    expect(row.locator(".codes")).to_contain_text("circular_buying")
    expect(row.locator(".codes")).to_contain_text("withdrawal_first")
    expect(page.locator("#open-cases")).to_have_text("1")
    expect(page.locator("#held-orders")).to_have_text("3")

    # and opens the case: the rules, orders, withdrawal and identities are there, the graph drawn
    row.locator("a >> nth=0").click()
    expect(page).to_have_url(re.compile(rf".*/admin/risk/cases/{case_id}$"))
    expect(page.locator("#case-state")).to_have_attribute("data-state", "open")
    expect(page.locator("#orders tbody tr")).to_have_count(3)
    expect(page.locator("#withdrawals tbody tr[data-state=review]")).to_have_count(1)
    expect(page.locator("#identities")).to_contain_text("10.20.30.x")
    expect(page.locator("#risk-graph")).to_have_attribute("data-drawn", "1")
    expect(page.locator("#risk-graph canvas")).to_have_count(1)
    assert page.evaluate(INKED) > 1000
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "risk-case.png"), full_page=True)

    # when it clears the case with a note
    page.fill("#clear-form input[name=note]", "同一家人共用 WiFi，已电话核实")
    page.click("#clear")
    # then the page says so and the case is cleared
    expect(page.locator(".alert-success")).to_contain_text("已放行")
    expect(page.locator("#case-state")).to_have_attribute("data-state", "cleared")
    expect(page.locator("#clear-form")).to_have_count(0)
    with db.connection_context():
        assert RiskCase.get_by_id(case_id).state == "cleared"

    # and the rules page lists the rules in force
    page.goto("/admin/risk/rules/")
    expect(page.locator('#rules tr[data-rule="self_purchase"]')).to_have_count(1)
    expect(page.locator('#rules tr[data-rule="coupon_farming"]')).to_contain_text("24")
    page.screenshot(path=str(SCREENSHOTS / "risk-rules.png"), full_page=True)
    assert errors == []
