"""An operator's day in a real browser (Debian's chromium through Playwright): the owner's first
login with TOTP enrolment, a product and SKU created, keys imported from a CSV file, a shopper
buying through the mini-program API, the order found and refunded with a reason, a creator's
large withdrawal approved by two finance operators, a support operator refused a refund, and the
audit log showing all of it. Screenshots for the README are saved under docs/screenshots/."""

from __future__ import annotations

import re
from pathlib import Path

import pyotp
from playwright.sync_api import Browser, Page, expect

from models.audit import AuditEntry
from models.db import db
from models.operators import create_operator, totp_secret_of
from models.orders import Order
from models.vault import CardKey
from models.withdrawals import Withdrawal
from tests.factories import api_buy, api_login, creator, due_withdrawal, earn, operator

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def sign_in(page: Page, name: str, password: str, secret: str | None = None) -> None:
    page.goto("/admin/login")
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("#login-form button[type=submit]")
    if secret:
        expect(page).to_have_url(re.compile(r"/admin/totp$"))
        page.fill("#code", pyotp.TOTP(secret).now())
        page.click("#totp-form button[type=submit]")
    expect(page.locator("#qx-operator")).to_contain_text(name)


def new_page(browser: Browser, base_url: str) -> Page:
    context = browser.new_context(base_url=base_url, locale="zh-CN", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    return context.new_page()


def choose(page: Page, select: str, text: str) -> None:
    """Select the option whose label contains `text`."""
    page.select_option(select, page.locator(f"{select} option", has_text=text).get_attribute("value"))


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def test_an_operators_day(page: Page, browser: Browser, base_url: str, client, fake_wechat, fake_pay,  # noqa: ANN001
                          run_jobs, settings, tmp_path: Path) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    # -- given a new owner with a one-time password, who signs in for the first time ------------
    with db.connection_context():
        _, one_time = create_operator("boss", "owner")
    page.goto("/admin/")
    page.fill("#name", "boss")
    page.fill("#password", one_time)
    page.click("#login-form button[type=submit]")
    # then two-factor is enrolled with the QR code, and the one-time password replaced
    expect(page.locator("#totp-qr")).to_be_visible()
    secret = page.inner_text("#totp-secret").strip()
    page.fill("#code", pyotp.TOTP(secret).now())
    page.click("#enrol-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/admin/password$"))
    page.fill("#current", one_time)
    page.fill("#new", "boss-password-2026")
    page.fill("#confirm", "boss-password-2026")
    page.click("#password-form button[type=submit]")
    expect(page.locator("#qx-operator")).to_contain_text("boss")

    # -- when the owner creates a product and a card-key SKU (prices in yuan) ---------------------
    page.goto("/admin/catalog/products/new/")
    page.fill("#title", "优酷VIP会员")
    page.fill("#description", "官方卡密，自动发货")
    page.click("#product-save")
    expect(page.locator(".alert-danger")).to_have_count(0)
    page.goto("/admin/catalog/skus/new/")
    choose(page, "#product", "优酷VIP会员")
    page.fill("#code", "YOUKU-VIP-1M")
    page.select_option("#kind", "card_key")
    page.fill("#name", "优酷VIP 月卡")
    page.fill("#retail_price", "25.00")
    page.fill("#supply_price", "18.50")
    page.fill("#commission", "15")
    page.check("#active")
    page.click("#sku-save")
    expect(page.locator(".alert-danger")).to_have_count(0)

    # -- and imports three card keys from a CSV file --------------------------------------------
    keys = ["YK-AAAA-0001", "YK-AAAA-0002", "YK-AAAA-0003"]
    csv_file = tmp_path / "keys.csv"
    csv_file.write_text("卡密\n" + "\n".join(keys) + "\n", encoding="utf-8-sig")
    page.goto("/admin/vault/")
    choose(page, "#sku", "YOUKU-VIP-1M")
    page.set_input_files("#file", str(csv_file))
    page.fill("#reason", "首批到货")
    page.click("#vault-upload-submit")
    expect(page.locator("body")).to_contain_text("3")
    with db.connection_context():
        assert CardKey.select().join_from(CardKey, CardKey.sku.rel_model).where(
            CardKey.sku.rel_model.code == "YOUKU-VIP-1M").count() == 3
    assert all(k not in page.content() for k in keys)  # keys are never shown

    # -- a shopper buys one through the mini-program API -----------------------------------------
    shopper = api_login(client, fake_wechat, "shopper-walk")
    order = api_buy(client, fake_pay, shopper, "YOUKU-VIP-1M")
    run_jobs()
    with db.connection_context():
        assert Order.get_by_id(order["id"]).status == "delivered"

    # -- a finance operator finds the order in the list and refunds it with a reason -------------
    with db.connection_context():
        fin1, fin_password = operator("finance", "fin-a")
    finance = new_page(browser, base_url)
    sign_in(finance, "fin-a", fin_password, totp_secret_of(fin1))
    finance.goto("/admin/orders/")
    finance.fill("#f-sku", "YOUKU-VIP-1M")
    finance.click("#search")
    row = finance.locator("#orders tbody tr", has_text=order["no"])
    expect(row).to_have_count(1)
    row.locator("a").first.click()
    expect(finance.locator("#order-status")).to_have_attribute("data-status", "delivered")
    finance.fill("#action-refund input[name=reason]", "买家误购，未查看卡密")
    finance.click("#action-refund button")
    expect(finance.locator("#order-status")).to_have_attribute("data-status", "refunded")
    expect(finance.locator("#order-refund")).to_contain_text("买家误购")
    shot(finance, "order-detail.png")

    # -- a support operator is refused a refund (no button; a forged POST is a 403) --------------
    with db.connection_context():
        _, sup_password = operator("support", "sup-a")
    support = new_page(browser, base_url)
    sign_in(support, "sup-a", sup_password)
    support.goto(f"/admin/orders/{order['id']}")
    expect(support.locator("#action-refund")).to_have_count(0)
    token = support.locator("meta[name=csrf-token]").get_attribute("content")
    forged = support.request.post(f"/admin/orders/{order['id']}/refund",
                                  form={"csrf_token": token, "reason": "试试", "action_token": "f" * 24})
    assert forged.status == 403

    # -- a creator with a team withdraws above the second-approval threshold ---------------------
    amount = settings.WITHDRAW_SECOND_APPROVAL_ABOVE_FEN + 200_000
    star = creator("star-walk", name="星主阿千")
    team = [creator(f"team-walk-{i}", name=f"队员{i}", parent=star) for i in range(3)]
    creator("team-walk-deep", name="二级队员", parent=team[0])
    earn(star, amount + 50_000)
    star_auth = api_login(client, fake_wechat, "star-walk")
    asked = client.post("/api/v1/creator/withdrawals", json={"amount_fen": amount, "method": "wallet"},
                        headers=star_auth)
    assert asked.status_code == 201, asked.json
    withdrawal_id = asked.json["id"]
    for other in (800_000, 650_000):  # others waiting in the queue beside it
        due_withdrawal(other)
    finance.goto("/admin/withdrawals/")
    expect(finance.locator("#withdrawals")).to_contain_text(asked.json["no"])
    shot(finance, "withdrawal-queue.png")
    # when the first finance operator approves, it still waits for a second one
    finance.goto(f"/admin/withdrawals/{withdrawal_id}")
    finance.click("#approve-form button")
    expect(finance.locator("#state")).to_have_attribute("data-state", "review")
    expect(finance.locator("#approvals li")).to_have_count(1)
    # and the same operator cannot be the second approver
    expect(finance.locator("#approve-form button")).to_be_disabled()
    # when a second finance operator approves, it is approved
    with db.connection_context():
        fin2, fin2_password = operator("finance", "fin-b")
    second = new_page(browser, base_url)
    sign_in(second, "fin-b", fin2_password, totp_secret_of(fin2))
    second.goto(f"/admin/withdrawals/{withdrawal_id}")
    second.click("#approve-form button")
    expect(second.locator("#state")).to_have_attribute("data-state", "approved")
    with db.connection_context():
        assert Withdrawal.get_by_id(withdrawal_id).state == "approved"

    # -- the owner looks at the creator's team tree ----------------------------------------------
    page.goto(f"/admin/creators/{star.id}/tree")
    for member in team:
        expect(page.locator("#tree")).to_contain_text(member.code)
    page.locator(f"li[data-creator='{team[0].code}'] .qx-expand").click()
    expect(page.locator("#tree")).to_contain_text("二级队员")
    shot(page, "creator-tree.png")

    # -- then the audit log shows all of it --------------------------------------------------------
    page.goto("/admin/audit/")
    log = page.locator("table.model-list")
    for action in ("auth.totp_enrolled", "auth.login", "operator.password_changed", "order.refund"):
        expect(log).to_contain_text(action)
    with db.connection_context():
        done = {a.action for a in AuditEntry.select(AuditEntry.action)}
        approvals = AuditEntry.select().where(AuditEntry.action.startswith("withdrawal.approve")).count()
    assert {"auth.totp_enrolled", "auth.login", "operator.password_changed", "order.refund"} <= done
    assert any(a.startswith(("product.", "sku.")) for a in done), done
    assert any(a.startswith("vault.") for a in done), done
    assert approvals == 2
    for p in (finance, support, second):
        p.context.close()
