"""The promotions admin (issue 14) in a real browser: an ops operator signs in, creates a 满减
coupon with a claim code through the form, finds it in the list with its terms, issues it to a
list of two shoppers from its page (the grants are in the database), creates a three-person
group-buy activity through its form, and opens a team of it whose members are in different
states; nothing logs a console error. The coupon's page after issuing and the team's page are
saved as docs/screenshots/promo-coupon.png and docs/screenshots/promo-groupbuy.png."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, expect

from models.coupons import Coupon, CouponGrant
from models.db import db
from tests.factories import buyer, group_order, operator, team_of

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_ops_creates_and_issues_a_coupon_and_follows_a_group_buy_team(page: Page, shop, run_jobs) -> None:  # noqa: ANN001
    # given two shoppers, a card-key SKU (retail ¥19.90), and an ops operator signed in through the login form
    ann, bob = buyer("ann-openid"), buyer("bob-openid")
    sku = shop.card_sku(keys=10, price=1_990, code="GROUP-CARD")
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
    now = dt.datetime.now(SHANGHAI)
    starts = (now - dt.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    ends = (now + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M")

    # when it creates a 满减 coupon (¥5 off from ¥30) with a claim code and 100 uses at most
    page.goto("/admin/promo/coupons/")
    page.click("#new-coupon")
    page.fill("#name", "满30减5 新人券")
    page.fill("#code", "WELCOME2026")
    page.select_option("#kind", "amount_off")
    page.fill("#threshold", "30")
    page.fill("#amount_off", "5")
    page.fill("#starts", starts)
    page.fill("#ends", ends)
    page.fill("#max_uses", "100")
    page.click("#create")
    # then its page shows its code, terms and uses
    page.wait_for_url(re.compile(r".*/admin/promo/coupons/\d+$"))
    coupon_id = int(re.search(r"/admin/promo/coupons/(\d+)", page.url).group(1))
    expect(page.locator("#active")).to_have_attribute("data-active", "1")
    expect(page.locator("#coupon")).to_contain_text("WELCOME2026")
    expect(page.locator("#coupon")).to_contain_text("满 ¥30.00 减 ¥5.00")
    expect(page.locator("#uses")).to_have_text("0 / 100")
    # and the list shows it with its code and terms
    page.goto("/admin/promo/coupons/")
    row = page.locator(f'tr[data-coupon="{coupon_id}"]')
    expect(row.locator(".code")).to_have_text("WELCOME2026")
    expect(row.locator(".terms")).to_have_text("满 ¥30.00 减 ¥5.00")
    expect(row.locator(".uses")).to_have_text("0 / 100")

    # when it issues the coupon from its page to a list of the two shoppers (one by id, one by openid)
    row.locator("a >> nth=0").click()
    page.fill("#issue-form textarea[name=recipients]", f"{ann.id}\nbob-openid")
    page.fill("#issue-form input[name=reason]", "新人福利")
    page.click("#issue-form button")
    # then the page says two were issued, and each shopper holds one grant of it
    expect(page.locator(".alert-success")).to_contain_text("已发放 2 张")
    with db.connection_context():
        holders = sorted(g.user_id for g in CouponGrant.select().where(CouponGrant.coupon == coupon_id))
        stored = Coupon.get_by_id(coupon_id)
    assert holders == sorted([ann.id, bob.id])
    assert (stored.threshold_fen, stored.amount_off_fen, stored.max_uses, stored.code) == (3_000, 500, 100,
                                                                                            "WELCOME2026")
    page.screenshot(path=str(SCREENSHOTS / "promo-coupon.png"), full_page=True)

    # when it creates a three-person group-buy activity on the SKU at ¥9.90
    page.goto("/admin/promo/groupbuy/")
    page.click("#new-activity")
    page.fill("#sku", sku.code)
    page.fill("#title", "三人拼团 会员卡")
    page.fill("#size", "3")
    page.fill("#group_price", "9.90")
    page.fill("#window_minutes", "60")
    page.fill("#starts", starts)
    page.fill("#ends", ends)
    page.click("#create")
    # then its page shows the activity with no team yet
    page.wait_for_url(re.compile(r".*/admin/promo/groupbuy/\d+$"))
    activity_id = int(re.search(r"/admin/promo/groupbuy/(\d+)", page.url).group(1))
    expect(page.locator("#activity")).to_contain_text("¥9.90")
    expect(page.locator("#teams")).to_contain_text("还没有团")

    # when ann starts a team and bob joins it, both paying, and carol joins without paying yet
    first = group_order(sku, ("start", activity_id), user=ann)
    team = team_of(first)
    second = group_order(sku, ("join", team), user=bob)
    third = group_order(sku, ("join", team), openid="carol-openid", pay=False)
    run_jobs()
    # then the activity lists the open team with two of three paid
    page.reload()
    team_row = page.locator(f'tr[data-team="{team}"]')
    expect(team_row).to_have_attribute("data-state", "open")
    expect(team_row.locator(".paid")).to_have_text("2/3")
    # and the team's page lists its members with their states, the leader starred
    team_row.locator("a").click()
    expect(page.locator("#state")).to_have_attribute("data-state", "open")
    expect(page.locator("#paid")).to_have_text("2/3")
    members = page.locator("#members tbody tr")
    expect(members).to_have_count(3)
    expect(page.locator(f'#members tr[data-order="{first.no}"]')).to_have_attribute("data-state", "paid")
    expect(page.locator(f'#members tr[data-order="{first.no}"]')).to_contain_text("★")
    expect(page.locator(f'#members tr[data-order="{second.no}"]')).to_have_attribute("data-state", "paid")
    expect(page.locator(f'#members tr[data-order="{third.no}"]')).to_have_attribute("data-state", "joining")
    expect(page.locator(f'#members tr[data-order="{third.no}"]')).to_contain_text("待支付")
    expect(page.locator(f'#members tr[data-order="{first.no}"]')).to_contain_text("¥9.90")
    page.screenshot(path=str(SCREENSHOTS / "promo-groupbuy.png"), full_page=True)
    assert errors == []
