"""The dashboard in a real browser: a readonly operator signs in through the login form and the
admin's home draws its charts with the vendored ECharts (canvases in the chart containers, the
series holding the rollups' figures), without a console error. The screenshot of a month of
business is saved as docs/screenshots/dashboard.png (shown in the README)."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Page, expect
from rq import SimpleWorker

from models import catalog, inventory, payouts, rollups, withdrawals
from models.catalog import Kind, Sku
from models.db import db, utcnow
from models.network import Creator
from models.rollup_store import day_start, local_day
from qianxing.settings import Settings
from tests.books import release, settle
from tests.factories import DUE_NOW, creator, earn, operator, paid_order, refunded_at, watched

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "dashboard.png"
CHARTS = ("chart-daily", "chart-funnel", "chart-top-skus", "chart-top-creators")
PRODUCTS = (("腾讯视频 VIP 月卡", 2_500), ("爱奇艺黄金会员 季卡", 6_800), ("网易云音乐 黑胶年卡", 13_800),
            ("QQ 音乐绿钻 月卡", 1_500), ("Steam 充值卡 100 元", 9_900), ("B 站大会员 年卡", 14_800))
CREATORS = ("小鹿爱数码", "阿泽聊游戏", "Momo 的好物", "老王测评", "糖糖追剧")


def seed_a_month(rt) -> rollups.Dashboard:  # noqa: ANN001
    """Thirty days of a small shop: six products, five creators (two levels), orders every day
    growing through the month with busier weekends, a few refunds, video plays and live-room
    entries, commission settled and partly released, two withdrawals waiting and one paid out, a
    SKU low on stock; then the rollups, refreshed as the job does. Returns what the dashboard reads."""
    rng = random.Random(12)
    now = utcnow()
    today = local_day(now)
    with db.connection_context():
        skus = []
        for n, (name, price) in enumerate(PRODUCTS, start=1):
            product = catalog.create_product(name)
            skus.append(catalog.create_sku(product, code=f"DEMO-{n}", name=name, kind=Kind.CARD_KEY,
                                           supply_price_fen=price * 6 // 10, retail_price_fen=price))
        low = catalog.create_sku(catalog.create_product("优酷 VIP 周卡"), code="DEMO-LOW", name="优酷 VIP 周卡",
                                 kind=Kind.CARD_KEY, supply_price_fen=600, retail_price_fen=990)
        inventory.check_low_stock(low.id, rt.settings.LOW_STOCK_THRESHOLD)
    lead = creator(name=CREATORS[0], rank=2)
    sellers = [lead] + [creator(name=name, parent=lead, rank=1) for name in CREATORS[1:]]
    weights = [5, 4, 3, 2, 1]
    for back in range(29, -1, -1):
        if back == 2:  # the orders before are settled and past their refund window
            settle(rt)
            release(rt)
        day = today - dt.timedelta(days=back)
        start = day_start(day)
        busy = 1.6 if day.weekday() >= 5 else 1.0
        count = int((4 + (29 - back) // 3 + rng.randint(0, 4)) * busy)
        made = []
        for _ in range(count):
            at = min(start + dt.timedelta(seconds=rng.randint(8 * 3600, 23 * 3600)), now - dt.timedelta(minutes=2))
            sku = rng.choices(skus, weights=[6, 3, 2, 5, 2, 1])[0]
            seller = rng.choices(sellers, weights=weights)[0] if rng.random() < 0.85 else None
            made.append(paid_order(seller, sku, amount=sku.retail_price_fen, cost=sku.supply_price_fen, paid_at=at))
        if back % 4 == 1:
            refunded_at(min(start + dt.timedelta(hours=23, minutes=30), now - dt.timedelta(minutes=1)), made[0])
        for seller, weight in zip(sellers, weights, strict=True):
            evening = min(start + dt.timedelta(hours=20), now - dt.timedelta(minutes=3))
            watched(seller, evening, count=weight * rng.randint(120, 260))
            watched(seller, evening, count=weight * rng.randint(8, 20), kind="live_entry")
    settle(rt)  # the last days' commission: pending, inside the refund window
    with db.connection_context():
        asked = []
        for fen in (650_000, 30_000, 48_000):  # one under review, one approved, one paid out
            made = creator(name="提现达人")
            earn(made, fen)
            asked.append(withdrawals.request_withdrawal(Creator.get_by_id(made.id), fen, withdrawals.Method.WALLET,
                                                        policy=DUE_NOW))
        assert payouts.pay_one(rt.payouts, asked[-1].id) == payouts.PayOutcome.PAID
        rollups.refresh()
        assert Sku.select().where(Sku.low_stock_flag).count() == 1
        return rollups.dashboard()


def sign_in(page: Page, role: str = "readonly") -> None:
    with db.connection_context():
        op, password = operator(role)
    page.goto("/admin/")
    page.fill("#name", op.name)
    page.fill("#password", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_url("**/admin/")


def test_the_dashboard_draws_its_charts_from_the_rollups(page: Page, rt, settings: Settings) -> None:  # noqa: ANN001
    """Given a month of orders, refunds, plays, commission and withdrawals, rolled up,
    when a readonly operator signs in through the login form and lands on the dashboard,
    then each chart container holds an ECharts canvas whose series are the rollups' figures
    (30 days of GMV in yuan and orders, the top products and creators, the three funnel stages),
    the cards show the same totals, the page logs no console error, and its screenshot is saved."""
    board = seed_a_month(rt)
    worker = SimpleWorker([rt.queue], connection=rt.redis, name="qx-worker-1")  # as a running worker announces itself
    worker.register_birth()
    errors: list[str] = []
    # The browser's own request for /favicon.ico (the app has none: a 404) is not the page's error.
    page.on("console", lambda msg: errors.append(_line(msg))
            if msg.type == "error" and not msg.location.get("url", "").endswith("/favicon.ico") else None)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.set_viewport_size({"width": 1280, "height": 900})

    sign_in(page)

    for chart in CHARTS:
        expect(page.locator(f"#{chart} canvas")).to_have_count(1)
    series = page.evaluate("""(ids) => Object.fromEntries(ids.map((id) => {
        const chart = echarts.getInstanceByDom(document.getElementById(id));
        return [id, chart ? chart.getOption().series.map((s) => ({type: s.type, data: s.data})) : null];
    }))""", list(CHARTS))
    assert page.evaluate("typeof echarts.format.encodeHTML") == "function"  # the tooltips escape names with it
    daily = series["chart-daily"]
    assert [s["type"] for s in daily] == ["bar", "line"]
    assert daily[0]["data"] == [gmv / 100 for _, gmv, _ in board.series]
    assert daily[1]["data"] == [orders for _, _, orders in board.series]
    assert sum(daily[1]["data"]) == board.last_30_days.orders > 200
    assert series["chart-top-skus"][0]["data"] == [fen / 100 for _, fen in reversed(board.top_skus)]
    assert series["chart-top-creators"][0]["data"] == [fen / 100 for _, fen in reversed(board.top_creators)]
    assert len(board.top_skus) == len(PRODUCTS) and len(board.top_creators) == len(CREATORS)
    funnel = series["chart-funnel"][0]
    assert funnel["type"] == "funnel" and [s["count"] for s in funnel["data"]] == list(board.funnel)
    assert [s["name"] for s in funnel["data"]] == ["视频播放", "直播间进入", "支付订单"]
    assert page.locator("#period-30d").get_attribute("data-gmv-fen") == str(board.last_30_days.gmv_fen)
    expect(page.locator("#as-of-time")).to_contain_text("北京时间")
    expect(page.locator("#low-stock")).to_have_text("1")
    expect(page.locator("#workers")).to_have_attribute("data-count", "1")
    expect(page.locator('#withdrawals-waiting dd[data-state="review"]')).to_have_attribute("data-count", "1")
    assert errors == []

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    worker.register_death()
    assert SCREENSHOT.stat().st_size > 20_000


def _line(msg: ConsoleMessage) -> str:
    return f"{msg.text} ({msg.location.get('url', '')}:{msg.location.get('lineNumber', '')})"


def test_before_the_first_refresh_the_charts_say_there_is_no_data(page: Page, rt) -> None:  # noqa: ANN001
    """Given a new shop whose figures were never computed, when a readonly operator signs in,
    then the page says the worker computes them every minute, every chart draws its empty state
    ("暂无数据") on a canvas, and nothing is logged as an error."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))

    sign_in(page)

    expect(page.locator("#not-computed")).to_contain_text("每分钟")
    for chart in CHARTS:
        expect(page.locator(f"#{chart} canvas")).to_have_count(1)
    titles = page.evaluate("""(ids) => ids.map((id) => {
        const title = echarts.getInstanceByDom(document.getElementById(id)).getOption().title;
        return title && title[0] && title[0].show !== false ? title[0].text : null;
    })""", list(CHARTS))
    assert titles == [None, "暂无数据", "暂无数据", "暂无数据"]  # the daily chart shows its 30 empty days
    assert errors == []
