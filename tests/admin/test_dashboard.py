"""The dashboard (the admin's home, /admin/) through the real HTTP interface: the figures are the
rollups' (refreshed by the real job), in yuan, and agree with the ledger; the chart data block is
`dashboard()` as JSON and a name with `</script>` stays inside it; every role sees the page; the
refresh button is CSRF-protected and refused to readonly and support; the queue backlog is read
from the test Redis, and Redis unreachable is a message in its card, not an error."""

from __future__ import annotations

import datetime as dt
import json
import re
from html.parser import HTMLParser

import pytest
from redis import Redis
from rq.registry import FailedJobRegistry

from miniapp_api.deps import EXTENSION
from models import catalog_edits, ledger, payments, reversals, rollups
from models.audit import AuditEntry
from models.db import db, utcnow
from models.money import rmb
from models.network import Creator
from tests.books import settle
from tests.factories import api_buy, chain, make_sku, named, paid_order, watched

HOME = "/admin/"
REFRESH = "/admin/refresh"
JOB = "tasks.rollups.refresh_rollups"
ROLES = ("owner", "finance", "support", "ops", "readonly")
EVIL = "</script><script>alert(1)</script>"


class _Elements(HTMLParser):
    """The attributes and text of every element that has an id."""

    VOID = frozenset({"input", "br", "hr", "img", "meta", "link"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: dict[str, tuple[dict[str, str], list[str]]] = {}
        self.open: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if "id" in values:
            self.found[values["id"]] = (values, [])
        if tag not in self.VOID:
            self.open.append((tag, values.get("id")))

    def handle_endtag(self, tag: str) -> None:
        while self.open:
            if self.open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for _tag, element_id in self.open:
            if element_id:
                self.found[element_id][1].append(data)


class Page:
    def __init__(self, html: str) -> None:
        self.html = html
        parser = _Elements()
        parser.feed(html)
        self.elements = parser.found

    def attrs(self, element_id: str) -> dict[str, str]:
        return self.elements[element_id][0]

    def text(self, element_id: str) -> str:
        return " ".join("".join(self.elements[element_id][1]).split())

    def has(self, element_id: str) -> bool:
        return element_id in self.elements

    def data(self) -> dict:
        found = re.search(r'<script type="application/json" id="dashboard-data">(.*?)</script>', self.html, re.S)
        assert found, "no dashboard data block"
        return json.loads(found.group(1))


def view(who) -> Page:  # noqa: ANN001
    answer = who.get(HOME)
    assert answer.status_code == 200, answer.data[:500]
    return Page(answer.get_data(as_text=True))


def refresh_by_job(rt, run_jobs) -> None:  # noqa: ANN001
    """The periodic job's run, as the worker would run it."""
    rt.queue.enqueue(JOB)
    run_jobs()


def owed(bucket: str) -> int:
    """What the ledger says the platform owes every creator together in a bucket."""
    with db.connection_context():
        return sum(-ledger.balance(ledger.creator_account(c.id, bucket)) for c in Creator.select(Creator.id))


def board() -> rollups.Dashboard:
    with db.connection_context():
        return rollups.dashboard()


def test_the_page_shows_the_rollup_figures_in_yuan_and_they_agree_with_the_ledger(
        admin, rt, shop, client, login, fake_pay, run_jobs):  # noqa: ANN001
    """Given four orders paid today through a creator's link (WeChat Pay), settled, and one of
    them refunded through the refund service (its commission clawed back), and the rollup job run,
    when a readonly operator opens the dashboard,
    then today's GMV is the four orders in yuan, 4 paid orders, a refund rate of 25.00%, and the
    commission pending is what the ledger's pending buckets hold (more than zero)."""
    _up, seller = chain(2, 1)
    sku = shop.card_sku(keys=10, price=12_345)
    ids = [api_buy(client, fake_pay, login(f"buyer-{n}"), sku, ref=seller.code)["id"] for n in range(4)]
    settle(rt)
    with db.connection_context():
        payments.refund_order(ids[0], rt.gateway, actor="operator:test", reason="customer asked")
        reversals.reverse_refunded()
    refresh_by_job(rt, run_jobs)

    page = view(admin("readonly"))

    today = page.attrs("period-today")
    assert (int(today["data-gmv-fen"]), int(today["data-orders"]), int(today["data-refunds"])) == (49_380, 4, 1)
    assert today["data-refund-rate-bp"] == "2500"
    text = page.text("period-today")
    assert rmb(49_380) == "¥493.80" and "¥493.80" in text and "25.00%" in text
    assert "¥493.80" in page.text("period-7d") and "¥493.80" in page.text("period-30d")
    pending = int(page.attrs("commission-pending")["data-fen"])
    assert pending == owed(ledger.PENDING) > 0
    assert page.text("commission-pending") == rmb(pending)
    assert int(page.attrs("commission-available")["data-fen"]) == owed(ledger.AVAILABLE)
    assert int(page.attrs("commission-withdrawing")["data-fen"]) == owed(ledger.WITHDRAWING)
    assert page.has("as-of-time") and not page.has("not-computed")


def test_the_chart_data_block_is_the_dashboard_as_json(admin, rt, shop, run_jobs):  # noqa: ANN001
    """Given sales of two SKUs by two creators on several days, plays and live-room entries, and
    the rollup job run, when the dashboard is opened, then its JSON block holds the 30 days'
    GMV and orders, the top products and creators and the funnel exactly as `dashboard()` gives
    them, with the chart labels in Chinese."""
    a, b = named("alice"), named("bob")
    cheap, dear = make_sku(shop, price=1_000), make_sku(shop, price=50_000)
    now = utcnow()
    for n in range(5):
        paid_order(a, cheap, amount=1_000, paid_at=now - dt.timedelta(days=n))
    paid_order(b, dear, amount=50_000, paid_at=now - dt.timedelta(days=3))
    watched(a, now, count=900)
    watched(b, now, count=40, kind="live_entry")
    refresh_by_job(rt, run_jobs)

    data = view(admin("readonly")).data()

    expected = board()
    assert {k: data[k] for k in ("days", "gmv_fen", "orders")} == expected.chart()
    assert len(data["days"]) == 30 and sum(data["gmv_fen"]) == 55_000 and sum(data["orders"]) == 6
    assert [(r["name"], r["gmv_fen"]) for r in data["top_skus"]] == list(expected.top_skus) == [
        (dear.name, 50_000), (cheap.name, 5_000)]
    assert [(r["name"], r["gmv_fen"]) for r in data["top_creators"]] == [("bob", 50_000), ("alice", 5_000)]
    assert [s["value"] for s in data["funnel"]] == list(expected.funnel) == [900, 40, 6]
    assert [s["name"] for s in data["funnel"]] == ["视频播放", "直播间进入", "支付订单"]
    assert data["labels"]["gmv"] == "成交额（元）"


def test_chart_labels_follow_the_operators_language(admin, rt):  # noqa: ANN001
    """Given an operator who switched the admin to English, when the dashboard is opened, then
    the cards and the chart labels in the JSON block are English."""
    who = admin("readonly")
    assert who.post("/admin/lang", {"lang": "en", "next": HOME}, action=False).status_code == 302

    page = view(who)

    data = page.data()
    assert [s["name"] for s in data["funnel"]] == ["Video plays", "Live-room entries", "Paid orders"]
    assert data["labels"]["top_skus"] == "Top products (sales, last 30 days)"
    assert "Refund rate" in page.text("period-today")
    assert "Not computed yet" in page.text("not-computed")


def test_a_product_named_with_a_script_tag_stays_inside_the_json(admin, rt, shop, run_jobs):  # noqa: ANN001
    """Given a SKU and a creator whose names are `</script><script>alert(1)</script>` and a sale
    of that SKU by that creator, when the dashboard is opened, then the page holds no such
    script element, and the JSON block parses with the names exactly as stored."""
    sku = make_sku(shop, price=2_000)
    with db.connection_context():
        catalog_edits.update_sku(sku, {"name": EVIL}, actor="operator:test")
    seller = named()
    with db.connection_context():
        Creator.update(name=EVIL).where(Creator.id == seller.id).execute()
    paid_order(seller, sku, amount=2_000)
    refresh_by_job(rt, run_jobs)

    page = view(admin("readonly"))

    assert "<script>alert(1)" not in page.html
    assert page.html.count("</script>") == page.html.count("<script")
    data = page.data()
    assert data["top_skus"] == [{"name": EVIL, "gmv_fen": 2_000}]
    assert data["top_creators"] == [{"name": EVIL, "gmv_fen": 2_000}]


@pytest.mark.parametrize("role", ROLES)
def test_every_role_sees_the_dashboard(admin, rt, role):  # noqa: ANN001
    """Given an operator of any role, when they open the admin's home, then it is the dashboard
    (200), with the refresh button only for the roles that may refresh."""
    page = view(admin(role))

    assert page.has("period-today") and page.has("commission") and page.has("queue-backlog")
    assert page.has("chart-daily") and page.has("chart-funnel") and page.has("dashboard-data")
    assert page.has("refresh-form") == (role in ("owner", "finance", "ops"))


def test_not_signed_in_goes_to_the_login_page(client, rt):  # noqa: ANN001
    answer = client.get(HOME)
    assert answer.status_code == 302 and "/admin/login" in answer.headers["Location"]
    assert client.post(REFRESH).status_code in (302, 400)  # CSRF first: no token, refused
    assert rt.queue.count == 0


def test_refresh_now_queues_the_rollup_job_and_the_figures_appear(admin, rt, shop, run_jobs):  # noqa: ANN001
    """Given figures never computed (the page says so, with the button), when a finance operator
    presses "refresh now", then the rollup job is queued once and audited, and once the worker
    has run it the page shows the figures as of that run."""
    paid_order(None, make_sku(shop), amount=3_300)
    finance = admin("finance")
    before = view(finance)
    assert before.has("not-computed") and before.has("refresh-form")
    assert int(before.attrs("period-today")["data-gmv-fen"]) == 0

    answer = finance.post(REFRESH, {}, action=False)

    assert answer.status_code == 302 and answer.headers["Location"].endswith(HOME)
    assert [j.func_name for j in rt.queue.get_jobs()] == [JOB]
    with db.connection_context():
        assert [e.action for e in AuditEntry.select().where(AuditEntry.action == "dashboard.refresh")] == [
            "dashboard.refresh"]
    run_jobs()
    after = view(finance)
    assert int(after.attrs("period-today")["data-gmv-fen"]) == 3_300
    assert after.has("as-of-time") and not after.has("not-computed")
    assert "（北京时间）" in after.text("as-of-time")


def test_refresh_is_csrf_protected(admin, rt):  # noqa: ANN001
    """Given an owner, when the refresh is posted without the CSRF token or with a wrong one,
    then it is refused (400) and nothing is queued."""
    owner = admin("owner")
    assert owner.client.post(REFRESH, data={}).status_code == 400
    assert owner.client.post(REFRESH, data={"csrf_token": "forged"}).status_code == 400
    assert rt.queue.count == 0


@pytest.mark.parametrize("role", ("readonly", "support"))
def test_refresh_is_forbidden_to_readonly_and_support(admin, rt, role):  # noqa: ANN001
    """Given a readonly or support operator, when they post the refresh with a valid CSRF token,
    then it answers 403 and nothing is queued or audited."""
    who = admin(role)

    assert who.post(REFRESH, {}, action=False).status_code == 403

    assert rt.queue.count == 0
    with db.connection_context():
        assert AuditEntry.select().where(AuditEntry.action == "dashboard.refresh").count() == 0


def broken_job() -> None:
    raise RuntimeError("a job of the dashboard test that fails")


def test_the_queue_backlog_card_reads_redis(admin, rt, run_jobs):  # noqa: ANN001
    """Given a job that failed for real, two jobs waiting and one scheduled for later, when the
    dashboard is opened, then the backlog card shows the default queue with 2 queued, 1
    scheduled and 1 failed, and says no worker is running."""
    rt.queue.enqueue(broken_job)
    run_jobs()
    assert FailedJobRegistry(queue=rt.queue).count == 1
    rt.queue.enqueue("tasks.chat.drain_all")
    rt.queue.enqueue("tasks.chat.drain_all")
    rt.queue.enqueue_in(dt.timedelta(hours=1), "tasks.chat.drain_all")

    page = view(admin("support"))

    row = re.search(r'<tr data-queue="default">(.*?)</tr>', page.html, re.S).group(1)
    cells = dict(re.findall(r'<td class="(queued|started|scheduled|failed)">(\d+)</td>', row))
    assert cells == {"queued": "2", "started": "0", "scheduled": "1", "failed": "1"}
    assert page.attrs("workers")["data-count"] == "0"
    assert not page.has("queue-down")


def test_redis_unreachable_is_a_message_in_the_backlog_card(admin, app, rt, shop, monkeypatch):  # noqa: ANN001
    """Given Redis stops answering (a port nobody listens on), when the dashboard is opened,
    then it still answers 200 with the figures, and the backlog card says the queue cannot be
    reached; pressing refresh says so too, and nothing breaks."""
    paid_order(None, make_sku(shop), amount=1_234)
    with db.connection_context():
        rollups.refresh()
    owner = admin("owner")
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, socket_timeout=0.5)
    runtime = app.extensions[EXTENSION]
    monkeypatch.setattr(runtime, "redis", dead)
    monkeypatch.setattr(runtime.queue, "connection", dead)

    page = view(owner)

    assert page.has("queue-down") and "Redis" in page.text("queue-down")
    assert int(page.attrs("period-today")["data-gmv-fen"]) == 1_234
    answer = owner.post(REFRESH, {}, action=False, follow_redirects=True)
    assert answer.status_code == 200 and "无法连接任务队列" in answer.get_data(as_text=True)


def test_withdrawals_and_failure_figures_link_to_their_pages(admin, rt):  # noqa: ANN001
    """Given the live counts, when a finance operator opens the dashboard, then the waiting
    withdrawals link to the withdrawal queue by state and the failed pushes to the failed-pushes
    page; a support operator, who may not open the withdrawal queue, sees the figures unlinked."""
    finance = view(admin("finance"))
    link = re.search(r'<a href="([^"]+)" id="withdrawals-review">', finance.html)
    assert link and link.group(1).startswith("/admin/withdrawals/") and "state=review" in link.group(1)
    assert re.search(r'<a href="/admin/chat/failed/" id="failed-notifications-link">', finance.html)

    support = view(admin("support"))
    assert '<span id="withdrawals-review">' in support.html
