"""The ledger pages over real HTTP, read-only: platform balances and one creator's buckets equal
models.ledger's (the balances also while the rollup they are read from catches up), transactions
with their entries by keyset page and filter, and "verify" queues the checks of `qianxing ledger
verify` as one job (audited), whose result the page then shows; with Redis down it says so."""

from __future__ import annotations

import re

from models import ledger, rollup_store, rollups
from models.audit import AuditEntry
from models.db import db, execute, utcnow
from models.ledger_reading import PLATFORM_ACCOUNTS
from models.withdrawals import Method, request_withdrawal
from tests.books import release, settle
from tests.factories import DUE_NOW, earn, named, paid, sell

CSRF_FIELD = re.compile(rb'name="csrf_token"[^>]*value="([^"]+)"')


def balances_on(page: bytes, table_id: str) -> dict[str, int]:
    part = page[page.index(f'id="{table_id}"'.encode()):]
    part = part[:part.index(b"</table>")].decode()
    return {account: int(fen) for account, fen in
            re.findall(r'data-account="([^"]+)">.*?data-fen="(-?\d+)"', part, re.S)}


def test_the_ledger_page_shows_the_ledgers_balances(admin, shop):
    # given sales, a creator's earnings and a withdrawal
    sku = shop.card_sku(keys=3, price=1990)
    paid(sku, "ledger-buyer-1")
    paid(sku, "ledger-buyer-2")
    c = named("ledger-c")
    earn(c, 250_000)
    with db.connection_context():
        request_withdrawal(c, 100_000, Method.WALLET, policy=DUE_NOW)
        expected = ledger.balances(list(PLATFORM_ACCOUNTS))
        buckets = ledger.balances([ledger.creator_account(c.id, b) for b in ledger.CREATOR_BUCKETS])
    a = admin("finance")
    # when the ledger page is opened, and searched for the creator's code
    page = a.get("/admin/ledger/")
    searched = a.get(f"/admin/ledger/?creator={c.code}")
    # then the platform accounts show models.ledger's balances
    assert page.status_code == 200
    assert balances_on(page.data, "platform-accounts") == expected
    assert expected[ledger.CASH_WECHATPAY] == 2 * 1990 and expected[ledger.COMMISSION_EXPENSE] == 250_000
    # and the creator's buckets are the ledger's
    assert balances_on(searched.data, "creator-accounts") == buckets
    assert buckets[ledger.creator_account(c.id, ledger.AVAILABLE)] == -150_000
    # and an unknown code is said so
    assert "没有邀请码为 NOPE1234 的达人" in a.get("/admin/ledger/?creator=NOPE1234").data.decode()


def test_transactions_are_listed_with_their_entries_by_page_and_filter(admin, shop):
    # given a few payments and a creator's earnings
    sku = shop.card_sku(keys=5, price=1990)
    orders = [paid(sku, f"txn-buyer-{i}") for i in range(3)]
    c = named("txn-c")
    earn(c, 50_000)
    a = admin("readonly")
    # when the transactions are listed
    page = a.get("/admin/ledger/transactions").data.decode()
    # then each transaction shows its balanced entries, newest first
    assert page.index("release") < page.index(f"payment:{orders[-1].no}") < page.index(f"payment:{orders[0].no}")
    assert f'data-key="payment:{orders[0].no}"' in page and "asset:wechatpay_clearing" in page
    assert 'data-fen="1990"' in page and 'data-fen="-1990"' in page
    # when filtered by kind, by order and by key
    by_kind = a.get("/admin/ledger/transactions?kind=payment").data.decode()
    by_order = a.get(f"/admin/ledger/transactions?order={orders[1].id}").data.decode()
    by_key = a.get(f"/admin/ledger/transactions?key=payment:{orders[2].no}").data.decode()
    # then only those are listed
    assert by_kind.count("data-txn=") == 3 and "release" not in by_kind
    assert by_order.count("data-txn=") == 1 and f"payment:{orders[1].no}" in by_order
    assert by_key.count("data-txn=") == 1 and f"payment:{orders[2].no}" in by_key
    # and there is no way to write: the page has no form that posts
    assert 'method="post"' not in page.split('id="transactions"')[1]


def test_transactions_page_by_keyset(admin):
    # given 55 transactions
    c = named("page-c")
    for _ in range(55):
        earn(c, 100)
    a = admin("readonly")
    first = a.get("/admin/ledger/transactions").data.decode()
    link = re.search(r'id="next-page" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = a.get(link).data.decode()
    ids = [int(i) for i in re.findall(r'data-txn="(\d+)"', first + second)]
    assert len(ids) == 55 and len(set(ids)) == 55 and ids == sorted(ids, reverse=True)
    assert 'id="next-page"' not in second


def _verify_section(page: bytes) -> str:
    text = page.decode()
    return text[text.index('id="verify-status"'):]


def test_verify_queues_one_job_even_clicked_twice_and_the_page_then_shows_ok(admin, rt, shop, run_jobs):
    """Given a healthy ledger (sales through creators, settled and partly released); when finance
    clicks "verify" twice in a row; then one job is queued, the ledger page says it is queued and
    reloads itself, the second click is told a verification is already waiting, and one audit
    row names who asked; after the worker runs it the page shows OK, who asked, and stops
    reloading."""
    sku = shop.card_sku(keys=3, price=1990)
    up = named("verify-up", rank=1)
    seller = named("verify-c", parent=up, rank=1)
    sell(rt, sku.code, seller.code, openid="verify-buyer-1")
    settle(rt)
    release(rt)
    sell(rt, sku.code, seller.code, openid="verify-buyer-2")
    settle(rt)
    with db.connection_context():
        assert ledger.balance(ledger.creator_account(seller.id, ledger.AVAILABLE)) < 0  # money was released
        assert ledger.balance(ledger.creator_account(seller.id, ledger.PENDING)) < 0
    f = admin("finance")
    before = f.get("/admin/ledger/").data
    assert 'data-state="none"' in _verify_section(before) and b'id="verify-form"' in before
    # when finance clicks "verify" twice, the second time from the page as it was before the first
    first = f.post("/admin/ledger/verify", {}, page="/admin/ledger/", action=False)
    second = f.post("/admin/ledger/verify", {}, page="/admin/ledger/", action=False, follow_redirects=True)
    # then one job is queued and the ledger page shows it waiting, reloading itself
    assert first.status_code == 302 and first.headers["Location"].endswith("/admin/ledger/#verify")
    assert rt.queue.count == 1 and rt.queue.job_ids == ["ledger-verify"]
    assert second.status_code == 200 and "已有一个账本核对任务在排队或运行中" in second.data.decode()
    waiting = f.get("/admin/ledger/").data
    assert 'data-state="queued"' in _verify_section(waiting) and b'http-equiv="refresh" content="3"' in waiting
    assert "排队中，自" in _verify_section(waiting) and b'id="verify-form"' not in waiting
    with db.connection_context():
        [row] = AuditEntry.select().where(AuditEntry.action == "ledger.verify")
    assert row.operator_name == f.op.name and row.after == {"job": "ledger-verify", "queued": True}
    # when the worker runs it
    assert run_jobs() == 1
    # then the page shows OK, who asked, and no longer reloads
    done = f.get("/admin/ledger/").data
    section = _verify_section(done)
    assert 'data-state="done"' in section and 'id="verify-result" data-ok="true"' in section
    assert f.op.name in section and b'http-equiv="refresh"' not in done and b'id="verify-form"' in done
    # and the next click queues a new verification
    assert f.post("/admin/ledger/verify", {}, page="/admin/ledger/", action=False).status_code == 302
    assert rt.queue.count == 1 and 'data-state="queued"' in _verify_section(f.get("/admin/ledger/").data)


def test_verify_shows_what_is_wrong(admin, run_jobs):
    """Given a transaction whose entries do not balance (written behind the services' back) and
    commission expense that no commission line explains; when verify runs as a job; then the page
    names the unbalanced transaction and the settlement problem."""
    with db.connection_context(), db.atomic():
        execute("INSERT INTO ledger_transaction (key, kind, memo, created_at) VALUES (%s, %s, %s, %s)",
                ("broken:1", "test", "", "2025-01-01 00:00:00"))
        txn = execute("SELECT id FROM ledger_transaction WHERE key = %s", ("broken:1",)).fetchone()[0]
        execute("INSERT INTO posting (txn_id, account, amount_fen) VALUES (%s, %s, %s)", (txn, ledger.SALES, -5))
    earn(named("verify-orphan"), 7_000)  # expense -> available without commission lines
    f = admin("finance")
    assert f.post("/admin/ledger/verify", {}, page="/admin/ledger/", action=False).status_code == 302
    run_jobs()
    section = _verify_section(f.get("/admin/ledger/").data)
    assert 'data-ok="false"' in section and "broken:1" in section
    assert "commission expense 7000 fen, but live commission lines sum to 0" in section
    assert "不平衡的流水 1 笔" in section


def test_with_redis_down_the_button_and_the_page_say_so(admin, rt, monkeypatch):
    """Given a signed-in finance operator and then Redis unreachable; when they click verify and
    open the ledger page; then the click is answered with a message (no 500, no audit row, nothing
    queued) and the page shows the balances and says the state cannot be read."""
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    f = admin("finance")
    page = "/admin/ledger/"
    form = f.get(page).data
    token = CSRF_FIELD.search(form).group(1).decode()
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    live = rt.redis
    monkeypatch.setattr(rt, "redis", dead)
    monkeypatch.setattr(rt.queue, "connection", dead)
    answer = f.client.post("/admin/ledger/verify", data={"csrf_token": token}, follow_redirects=True)
    assert answer.status_code == 200
    text = answer.data.decode()
    assert "Redis 不可用，无法开始核对" in text and 'id="verify-redis-down"' in text
    assert 'id="platform-accounts"' in text
    monkeypatch.undo()
    assert live.llen("rq:queue:" + rt.queue.name) == 0
    with db.connection_context():
        assert AuditEntry.select().where(AuditEntry.action == "ledger.verify").count() == 0


def test_roles_without_ledger_verify_are_refused(admin, rt):
    for role in ("support", "ops", "readonly"):
        a = admin(role)
        assert a.post("/admin/ledger/verify", {}, page="/admin/", action=False).status_code == 403, role
    assert admin("support").get("/admin/ledger/").status_code == 403  # support has no ledger.view
    assert b'id="verify-form"' not in admin("readonly").get("/admin/ledger/").data
    assert rt.queue.count == 0
    with db.connection_context():
        assert AuditEntry.select().where(AuditEntry.action == "ledger.verify").count() == 0


def test_a_batch_transaction_shows_its_first_entries_and_all_of_them_on_its_own_page(admin):
    # given a batch transaction with one entry per creator (as a settlement release posts it)
    creators = [named(f"batch-{i}") for i in range(30)]
    legs = {ledger.creator_account(c.id, ledger.AVAILABLE): -100 for c in creators}
    legs[ledger.COMMISSION_EXPENSE] = 3000
    with db.connection_context(), db.atomic():
        txn_id = ledger.post_bulk("release:test-batch", "release", legs)
    a = admin("readonly")
    # when the transactions are listed
    listed = a.get("/admin/ledger/transactions?kind=release").data.decode()
    # then it shows its first 12 entries and a link to the rest
    row = listed[listed.index(f'data-txn="{txn_id}"'):]
    assert row.count("creator:") + row.count("expense:") == 12
    assert f'href="/admin/ledger/transactions/{txn_id}">' in row and "更多分录" in row
    # when its own page is opened, then every entry is there and they balance
    page = a.get(f"/admin/ledger/transactions/{txn_id}").data.decode()
    assert 'id="entry-count">31<' in page
    amounts = [int(v) for v in re.findall(r'data-fen="(-?\d+)"', page)]
    assert len(amounts) == 31 and sum(amounts) == 0
    assert a.get("/admin/ledger/transactions/999999").status_code == 404


def test_the_platform_balances_stay_the_ledgers_as_the_rollup_catches_up(admin, shop, monkeypatch):
    """The balances come from the ledger rollup up to its safe watermark and from the postings
    above it: the page shows the ledger's before the rollup ever ran, after it ran, and after
    postings the rollup has not seen yet."""
    monkeypatch.setattr(rollup_store, "BLOCK", 4)  # a few postings fill a block
    a = admin("readonly")
    sku = shop.card_sku(keys=6, price=1990)
    c = named("rollup-c")

    def shown_and_expected() -> tuple[dict[str, int], dict[str, int]]:
        page = a.get("/admin/ledger/")
        assert page.status_code == 200
        with db.connection_context():
            return balances_on(page.data, "platform-accounts"), ledger.balances(list(PLATFORM_ACCOUNTS))

    # given sales and earnings, and no rollup run yet
    paid(sku, "rollup-buyer-1")
    earn(c, 30_000)
    shown, expected = shown_and_expected()
    assert shown == expected and expected[ledger.SALES] == -1990
    # when the rollup runs, and again COMMIT_LAG later (its watermark is safe)
    start = utcnow()
    with db.connection_context():
        rollups.refresh(now=start)
        rollups.refresh(now=start + rollups.COMMIT_LAG)
        assert rollup_store.state(rollup_store.LEDGER_SOURCE).safe_id == rollup_store.max_id("posting")
    # then the page shows the ledger's balances
    assert shown_and_expected()[0] == expected
    # and after more sales, earnings and a withdrawal the rollup has not seen, still the ledger's
    paid(sku, "rollup-buyer-2")
    paid(sku, "rollup-buyer-3")
    earn(c, 20_000)
    with db.connection_context():
        request_withdrawal(c, 40_000, Method.WALLET, policy=DUE_NOW)
    shown, expected = shown_and_expected()
    assert shown == expected and expected[ledger.SALES] == -3 * 1990
    # and after the next run
    with db.connection_context():
        rollups.refresh(now=start + 2 * rollups.COMMIT_LAG)
    assert shown_and_expected()[0] == expected
