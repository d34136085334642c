"""Dashboard rollups (models/rollups.py): figures on Asia/Shanghai days, refunds by refund day,
runs that change nothing when repeated, only the touched days recomputed, ids committed late,
batches, the funnel, the top lists, the live counts, the indexes the queries use, and the
figures checked against the ledger after settlement, release, withdrawals and a refund, and the
ledger page's platform balances (rollup + the postings above it) equal to the ledger's at any moment."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import peewee as pw
import pytest

from models import ledger, ledger_reading, payments, payouts, reversals, rollup_store, rollups, withdrawals
from models.activity import ActivityEvent
from models.catalog import Sku
from models.chat import OutboundMessage
from models.db import db, execute, is_postgres, utcnow
from models.failures import ItemFailure
from models.ledger import LedgerTransaction, Posting
from models.network import Creator
from models.notifications import Notification
from models.rollup_store import DailyMetric, RollupState, day_start
from models.withdrawals import Method, Withdrawal, WithdrawPolicy
from tests.books import assert_books_clean, release, settle
from tests.factories import (
    DUE_NOW,
    api_buy,
    buyer,
    chain,
    due_withdrawal,
    make_sku,
    mark_refunded,
    named,
    paid,
    paid_order,
    refunded_at,
    watched,
)

MAY_1 = dt.date(2026, 5, 1)
MIDNIGHT = day_start(MAY_1)  # 2026-04-30 16:00 UTC: May 1 begins in Shanghai
NOON = MIDNIGHT + dt.timedelta(hours=12)
SECOND, MINUTE, HOUR = dt.timedelta(seconds=1), dt.timedelta(minutes=1), dt.timedelta(hours=1)


def days_before(n: int) -> dt.date:
    return MAY_1 - dt.timedelta(days=n)


def rows() -> list[tuple]:
    return sorted(DailyMetric.select(DailyMetric.metric, DailyMetric.day, DailyMetric.dim,
                                     DailyMetric.value).tuples())


def figures(board: rollups.Dashboard) -> rollups.Dashboard:
    """The dashboard without the time of its refresh."""
    return dataclasses.replace(board, as_of=None)


# ---- days, refunds, repeated runs -------------------------------------------------------------

def test_figures_fall_on_asia_shanghai_days(rt, shop, conn):
    # given orders paid one second either side of midnight in Shanghai (16:00 UTC), one on the
    # 8th day back, one on the 30th and one on the 31st, and the first refunded after midnight
    seller, sku = named(), make_sku(shop)
    late = paid_order(seller, sku, amount=100, paid_at=MIDNIGHT - SECOND)
    paid_order(seller, sku, amount=200, paid_at=MIDNIGHT)
    paid_order(None, sku, amount=400, paid_at=day_start(days_before(6)) - SECOND)
    paid_order(None, sku, amount=800, paid_at=day_start(days_before(29)))
    paid_order(None, sku, amount=1600, paid_at=day_start(days_before(29)) - SECOND)
    refunded_at(MIDNIGHT + HOUR, late)
    # when the rollups are refreshed and read at noon on May 1 in Shanghai
    rollups.refresh(now=NOON)
    board = rollups.dashboard(now=NOON)
    # then today is May 1: the order paid at midnight, and the refund of the one before it
    assert board.day == MAY_1 and board.today.first_day == board.today.last_day == MAY_1
    assert (board.today.gmv_fen, board.today.orders) == (200, 1)
    assert (board.today.refunds, board.today.refund_fen, board.today.refund_rate_bp) == (1, 100, 10_000)
    # and the last 7 days are Apr 25 - May 1, the last 30 Apr 2 - May 1
    week, month = board.last_7_days, board.last_30_days
    assert (week.first_day, week.gmv_fen, week.orders, week.refund_rate_bp) == (days_before(6), 300, 2, 5000)
    assert (month.first_day, month.gmv_fen, month.orders) == (days_before(29), 1500, 4)
    # and the chart has every one of the 30 days, oldest first
    assert len(board.series) == 30 and board.series[0] == (days_before(29), 800, 1)
    assert board.series[-2:] == ((days_before(1), 100, 1), (MAY_1, 200, 1))
    assert sum(orders for _, _, orders in board.series) == 4
    assert board.chart()["days"][-1] == "2026-05-01" and board.chart()["gmv_fen"][-1] == 200
    # and one second before midnight, today is still April 30 and the refund has not happened
    before = rollups.dashboard(now=MIDNIGHT - SECOND)
    assert before.day == days_before(1)
    assert (before.today.gmv_fen, before.today.orders, before.today.refunds) == (100, 1, 0)


def test_a_refund_moves_the_refund_figures_and_not_the_gmv(rt, shop, conn):
    # given two orders paid just now, rolled up
    sku = make_sku(shop)
    first = paid_order(None, sku, amount=3000)
    paid_order(None, sku, amount=1000)
    rollups.refresh()
    before = rollups.dashboard().last_7_days
    assert (before.gmv_fen, before.orders, before.refunds, before.refund_fen) == (4000, 2, 0, 0)
    assert before.refund_rate_bp == 0
    # when one is refunded and the next run comes
    mark_refunded(first)
    rollups.refresh()
    # then the refund figures move: one refund of 30.00, half the orders; the sales stay
    after = rollups.dashboard().last_7_days
    assert (after.gmv_fen, after.orders, after.refunds, after.refund_fen) == (4000, 2, 1, 3000)
    assert after.refund_rate_bp == 5000


def test_no_orders_no_rate(rt, conn):
    board = rollups.dashboard(now=NOON)
    assert board.as_of is None and board.today.refund_rate_bp is None
    assert board.last_30_days.gmv_fen == 0 and board.top_skus == () and board.funnel == (0, 0, 0)


def test_running_the_refresh_again_changes_nothing(rt, shop, conn):
    # given orders over several days, a refund, plays and settled commission
    up, seller = chain(2, 1)
    sku = make_sku(shop)
    for n in range(6):
        paid_order(seller if n % 2 else None, sku, amount=1000 * (n + 1), paid_at=NOON - n * 20 * HOUR)
    refunded_at(NOON - HOUR, paid_order(seller, sku, amount=700, paid_at=NOON - 3 * HOUR))
    watched(seller, NOON - 2 * HOUR, count=30)
    watched(up, NOON - 30 * HOUR, count=4, kind="live_entry")
    settle(rt)
    rollups.refresh(now=NOON)
    once, board = rows(), figures(rollups.dashboard(now=NOON))
    assert board.last_30_days.orders == 7 and board.commission.pending_fen > 0
    # when the same run is delivered again (RQ runs jobs at least once), the next run comes,
    # and then everything is recomputed from scratch
    rollups.refresh(now=NOON)
    assert rows() == once
    rollups.refresh(now=NOON + MINUTE)
    assert rows() == once
    rollups.refresh(now=NOON + 10 * MINUTE, full=True)
    # then not a number changed
    assert rows() == once
    assert figures(rollups.dashboard(now=NOON)) == board


def test_only_the_days_touched_since_the_last_run_are_recomputed(rt, shop, conn):
    # given orders on Apr 28, Apr 29 and May 1, rolled up (Apr 28 - May 1: four days)
    sku = make_sku(shop)
    for n, amount in ((3, 100), (2, 200), (0, 300)):
        paid_order(None, sku, amount=amount, paid_at=day_start(days_before(n)) + HOUR)
    assert rollups.refresh(now=NOON) == 4
    # and a figure of Apr 28 tampered with, to see whether a run rewrites it
    spoil = DailyMetric.update(value=1).where((DailyMetric.metric == rollup_store.GMV)
                                              & (DailyMetric.day == days_before(3)))
    assert spoil.execute() == 1
    # when an order is paid and the next run comes a minute later
    paid_order(None, sku, amount=50, paid_at=NOON + 30 * SECOND)
    # then only today is recomputed: the new order counts, Apr 28 was left alone
    assert rollups.refresh(now=NOON + MINUTE) == 1
    board = rollups.dashboard(now=NOON + MINUTE)
    assert board.today.gmv_fen == 350 and board.series[-4][1] == 1
    # and a full refresh puts Apr 28 right again
    assert rollups.refresh(now=NOON + 2 * MINUTE, full=True) == 4
    assert rollups.dashboard(now=NOON).series[-4] == (days_before(3), 100, 1)


def test_ids_committed_late_are_counted_until_the_watermark_is_safe(rt, conn):
    # given three plays, the second of which is not committed yet when the first run looks
    # (on PostgreSQL an id is handed out at insert, not at commit)
    c = named()
    for _ in range(3):
        watched(c, NOON - HOUR, count=10)
    events = list(ActivityEvent.select().order_by(ActivityEvent.id))
    late = events[1]
    ActivityEvent.delete().where(ActivityEvent.id == late.id).execute()
    rollups.refresh(now=NOON)
    assert rollups.dashboard(now=NOON).funnel[0] == 20
    # when it commits (with its id) and the next run comes a minute later
    ActivityEvent.insert(**late.__data__).execute()
    rollups.refresh(now=NOON + MINUTE)
    # then it is counted: the watermark stayed below the first run's ids
    assert rollups.dashboard(now=NOON).funnel[0] == 30
    assert rollup_store.state("activity").safe_id == 0
    # and only a run COMMIT_LAG after the first one moves the watermark to what it saw
    rollups.refresh(now=NOON + rollups.COMMIT_LAG + MINUTE)
    assert rollup_store.state("activity").safe_id == events[-1].id
    # and later plays are still counted above it
    watched(c, NOON - HOUR, count=5)
    rollups.refresh(now=NOON + rollups.COMMIT_LAG + 2 * MINUTE)
    assert rollups.dashboard(now=NOON).funnel[0] == 35


def test_the_history_is_recomputed_in_batches(rt, shop, conn, monkeypatch):
    # given five days of orders (and a day without), 10 plays, and settled commission
    up, seller = chain(2, 1)
    sku = make_sku(shop)
    for n in (0, 1, 2, 3, 5):
        for _ in range(2):
            paid_order(seller, sku, amount=1000, paid_at=day_start(days_before(n)) + HOUR)
    for _ in range(10):
        watched(seller, NOON - HOUR)
    settle(rt)
    rollups.refresh(now=NOON)
    expected = figures(rollups.dashboard(now=NOON))
    # when the whole history is recomputed two days, four ids and three rows at a time
    monkeypatch.setattr(rollup_store, "DAYS_PER_BATCH", 2)
    monkeypatch.setattr(rollup_store, "BLOCK", 4)
    monkeypatch.setattr(rollup_store, "INSERT_CHUNK", 3)
    DailyMetric.delete().execute()
    RollupState.delete().execute()
    batches: list[int] = []
    assert rollups.refresh(now=NOON, progress=lambda: batches.append(1)) == 6
    # then it took one transaction per batch: days Apr 26-27, 28-29, 30-May 1; plays ids 1-3,
    # 4-7, 8-10; the postings in blocks of four
    postings = rollup_store.max_id("posting")
    assert len(batches) == 3 + 3 + len(rollup_store.blocks_above(0, postings))
    # and the figures are the same
    assert figures(rollups.dashboard(now=NOON)) == expected


# ---- what the dashboard shows -----------------------------------------------------------------

def test_the_funnel_counts_plays_live_entries_and_paid_orders_over_30_days(rt, shop, conn):
    # given plays and live-room entries inside the 30 days and just before, and paid orders
    a, b = named(), named()
    sku = make_sku(shop)
    first = day_start(days_before(29))
    watched(a, first, count=1000)
    watched(b, NOON, count=500)
    watched(a, first - SECOND, count=7)  # the 31st day back: outside
    watched(a, NOON - HOUR, count=40, kind="live_entry")
    for _ in range(3):
        paid_order(a, sku, paid_at=NOON - HOUR)
    rollups.refresh(now=NOON)
    # when plays exported days ago arrive after that run (a platform's CSV)
    watched(b, first + HOUR, count=250)
    rollups.refresh(now=NOON + MINUTE)
    # then the funnel has them, by the day they happened
    assert rollups.dashboard(now=NOON + MINUTE).funnel == (1750, 40, 3)


def test_top_skus_and_creators_by_gmv_over_30_days(rt, shop, conn):
    # given 12 SKUs and 12 creators selling n x 100 fen, and a big sale 31 days ago
    skus = [make_sku(shop) for _ in range(12)]
    sellers = [named(f"seller-{n:02d}") for n in range(12)]
    for n, (sku, seller) in enumerate(zip(skus, sellers, strict=True)):
        paid_order(seller, sku, amount=(n + 1) * 100, paid_at=NOON - n * 24 * HOUR)
    paid_order(sellers[0], skus[0], amount=1_000_000, paid_at=day_start(days_before(30)))
    paid_order(None, skus[0], amount=5, paid_at=NOON)  # no seller: the SKU's sale, nobody's
    rollups.refresh(now=NOON)
    board = rollups.dashboard(now=NOON)
    # then the ten best of the 30 days, best first, named
    assert board.top_creators == tuple((f"seller-{n:02d}", (n + 1) * 100) for n in range(11, 1, -1))
    assert [fen for _, fen in board.top_skus] == [(n + 1) * 100 for n in range(11, 1, -1)]
    assert board.top_skus[0][0] == skus[11].name
    # and they are the job's lists for the day: read without the job's lists (before its first
    # run of a day), summed from the days' rows, they are the same
    stored = DailyMetric.select().where(DailyMetric.metric.in_(rollup_store.TOP_METRICS))
    assert stored.count() == 20
    DailyMetric.delete().where(DailyMetric.metric.in_(rollup_store.TOP_METRICS)).execute()
    assert figures(rollups.dashboard(now=NOON)) == figures(board)


def test_live_counts_read_waiting_withdrawals_low_stock_and_failures(rt, shop, conn):
    # given a withdrawal under review, one approved, one paid
    due_withdrawal(600_000)
    due_withdrawal(30_000)
    payouts.pay_one(rt.payouts, due_withdrawal(20_000).id)
    # and a SKU flagged low on stock, and another flagged but no longer on sale
    low, retired = make_sku(shop), make_sku(shop)
    Sku.update(low_stock_flag=True).where(Sku.id.in_([low.id, retired.id])).execute()
    Sku.update(active=False).where(Sku.id == retired.id).execute()
    # and two orders delivery set aside (one recovered since), one settlement set aside
    ItemFailure.create(job="delivery", item_id=1, error="x")
    ItemFailure.create(job="delivery", item_id=2, error="x", resolved_at=utcnow())
    ItemFailure.create(job="delivery", item_id=3, error="x")
    ItemFailure.create(job="settlement", item_id=3, error="x")
    # and a buyer notice and a chat message given up on, and one of each still going
    user = buyer()
    for state in ("failed", "pending"):
        Notification.create(key=f"n-{state}", order_id=0, user=user, channel="wxa_subscribe",
                            kind="x", state=state)
        OutboundMessage.create(key=f"m-{state}", platform="telegram", chat_id="1", payload={},
                               state=state)
    # when the dashboard is read
    live = rollups.dashboard().live
    # then
    assert live.withdrawals_waiting == (("review", 1, 600_000), ("approved", 1, 30_000), ("paying", 0, 0))
    assert live.low_stock_skus == 1
    assert (live.failed_deliveries, live.failed_settlements) == (2, 1)
    assert (live.failed_notifications, live.failed_messages) == (1, 1)
    assert rollups.live_counts() == live


QUERIES = {
    "order_paid_at": ('SELECT COUNT(*) FROM "order" WHERE paid_at >= %s AND paid_at < %s AND paid_at IS NOT NULL',
                      (MIDNIGHT, NOON)),
    "order_refunded_at": ('SELECT COUNT(*) FROM "order" WHERE refunded_at >= %s AND refunded_at < %s '
                          "AND refunded_at IS NOT NULL", (MIDNIGHT, NOON)),
    "notification_failed": ("SELECT COUNT(*) FROM notification WHERE state = 'failed'", ()),
    "sku_low_stock": ("SELECT COUNT(*) FROM sku WHERE low_stock_flag AND active", ()),
    "item_failure_open": ("SELECT job, COUNT(*) FROM item_failure WHERE resolved_at IS NULL GROUP BY job", ()),
}


@pytest.mark.parametrize("index", sorted(QUERIES))
def test_the_rollup_and_live_queries_use_their_indexes(rt, conn, index):
    sql, params = QUERIES[index]
    with db.atomic():
        if is_postgres():
            execute("SET LOCAL enable_seqscan = off")  # empty tables: make the planner show its index
            plan = " ".join(r[0] for r in execute("EXPLAIN " + sql, params).fetchall())
        else:
            plan = " ".join(str(r[-1]) for r in execute("EXPLAIN QUERY PLAN " + sql, params).fetchall())
    assert index in plan


# ---- against the ledger -----------------------------------------------------------------------

def sales(*kinds: str) -> int:
    """The sum of the income:sales postings of these transaction kinds."""
    return int(Posting.select(pw.fn.COALESCE(pw.fn.SUM(Posting.amount_fen), 0)).join(LedgerTransaction)
               .where((Posting.account == ledger.SALES) & LedgerTransaction.kind.in_(kinds)).scalar())


def owed(bucket: str) -> int:
    """What the ledger says the platform owes every creator together in a bucket."""
    return sum(ledger.owed_to_creator(c.id)[bucket] for c in Creator.select(Creator.id))


def test_the_dashboard_agrees_with_the_ledger(rt, shop, client, login, fake_pay):
    # given orders through a creator's link, paid through WeChat Pay (payment postings),
    # settled and released past the refund window
    up, seller = chain(2, 1)
    sku = shop.card_sku(keys=10, price=100_000)
    first = [api_buy(client, fake_pay, login(f"buyer-{n}"), sku, ref=seller.code)["id"] for n in range(4)]
    with db.connection_context():  # after the API calls: the app closes the connection per request
        settle(rt)
        release(rt)
        # and a wallet withdrawal paid out, one waiting for its payout time, one into credit
        paid_out = withdrawals.request_withdrawal(seller, 20_000, Method.WALLET, policy=DUE_NOW)
        assert payouts.pay_one(rt.payouts, paid_out.id) == payouts.PayOutcome.PAID
        later = WithdrawPolicy(min_fen=10_000, fee_bp=100, delay_hours=24, review_above_fen=500_000)
        withdrawals.request_withdrawal(seller, 10_000, Method.WALLET, policy=later)
        withdrawals.request_withdrawal(up, 10_000, Method.CREDIT, policy=later)
        # and a released order refunded (its commission clawed back), and two more orders settled
        payments.refund_order(first[0], rt.gateway, actor="operator:test", reason="customer asked")
        reversals.reverse_refunded()
        for n in range(2):
            paid(sku, f"buyer-late-{n}", dispatch=False, ref=seller.code)
        settle(rt)
        # when the rollups are refreshed
        rollups.refresh()
        board = rollups.dashboard()
        # then the sales are the payments' postings to income:sales, the refunds what went back
        month = board.last_30_days
        assert month.gmv_fen == -sales("payment", "credit_payment") == 6 * 100_000
        assert (month.refunds, month.refund_fen) == (1, sales("refund")) and month.refund_fen == 100_000
        assert month.gmv_fen - month.refund_fen == -ledger.balance(ledger.SALES)
        # and the commission totals are the creator buckets' balances, summed over every creator
        totals = board.commission
        assert totals.pending_fen == owed(ledger.PENDING) > 0
        assert totals.available_fen == owed(ledger.AVAILABLE) > 0
        assert totals.withdrawing_fen == owed(ledger.WITHDRAWING) == 10_000
        assert totals.credit_fen == owed(ledger.CREDIT) == 10_000
        # and the payouts are what the payout transactions sent, fees included
        assert totals.paid_out_fen == Withdrawal.get_by_id(paid_out.id).amount_fen == 20_000
        assert totals.payout_fees_fen == -ledger.balance(ledger.WITHDRAWAL_FEES) == paid_out.fee_fen
        assert totals.paid_out_fen - totals.payout_fees_fen == -ledger.balance(ledger.PAYOUT_CLEARING)
        # and the seller tops the creators with every sale made through the link
        assert board.top_creators == ((seller.name, 6 * 100_000),)
    assert_books_clean()


def test_the_migration_runs_again_on_a_migrated_database(rt, conn):
    from models.migrations import m0009_rollups

    with db.atomic():
        m0009_rollups.up(db)
    assert set(m0009_rollups.TABLES) == {DailyMetric, RollupState}


# ---- the ledger page's platform balances ------------------------------------------------------

ACCOUNTS = (*rollup_store.PLATFORM_ACCOUNTS, ledger.creator_account(1, ledger.PENDING),
            ledger.creator_account(2, ledger.AVAILABLE), "creator:3:bonus", "liability:other")


def post_random(rng: random.Random, n: int) -> None:
    """n balanced transactions of 2-4 legs over the platform accounts and some others."""
    for _ in range(n):
        accounts = rng.sample(ACCOUNTS, rng.randint(2, 4))
        amounts = [rng.randint(-50_000, 50_000) for _ in accounts[1:]]
        legs = [ledger.Leg(a, v) for a, v in zip(accounts[1:], amounts, strict=True)]
        with db.atomic():
            ledger.post(f"random:{rng.random()}", rng.choice(("payment", "payout", "settlement")),
                        [ledger.Leg(accounts[0], -sum(amounts)), *legs])


def assert_platform_balances_are_the_ledgers() -> None:
    assert ledger_reading.platform_balances() == ledger.balances(list(rollup_store.PLATFORM_ACCOUNTS))


@pytest.mark.parametrize("seed", range(4))
def test_platform_balances_are_the_ledgers_at_any_moment(rt, conn, monkeypatch, seed):
    # given blocks of four postings, and random transactions over the platform accounts and others
    monkeypatch.setattr(rollup_store, "BLOCK", 4)
    rng = random.Random(seed)
    post_random(rng, rng.randint(1, 6))
    # then before any refresh the balances are the ledger's (all of it summed directly)
    assert rollup_store.state(rollup_store.LEDGER_SOURCE) is None
    assert_platform_balances_are_the_ledgers()
    # and so they are after every refresh, every burst of postings, and every repeated run,
    # whether the watermark moved or not
    now = NOON
    for _ in range(8):
        rollups.refresh(now=now)
        assert_platform_balances_are_the_ledgers()
        post_random(rng, rng.randint(0, 7))
        assert_platform_balances_are_the_ledgers()
        if rng.random() < 0.3:
            rollups.refresh(now=now)  # the same run delivered again
            assert_platform_balances_are_the_ledgers()
        now += rng.choice((MINUTE, rollups.COMMIT_LAG + MINUTE))
    # and once the watermark is safe, most of the ledger is read from the rollup (a run may keep
    # an earlier run's mark that is not yet COMMIT_LAG old: two more lags make the newest mark safe)
    rollups.refresh(now=now)
    rollups.refresh(now=now + rollups.COMMIT_LAG + MINUTE)
    rollups.refresh(now=now + 2 * (rollups.COMMIT_LAG + MINUTE))
    safe = rollup_store.state(rollup_store.LEDGER_SOURCE).safe_id
    assert safe == rollup_store.max_id("posting") and safe >= 8
    assert_platform_balances_are_the_ledgers()
    post_random(rng, 3)
    assert_platform_balances_are_the_ledgers()


def test_platform_balances_read_final_blocks_from_the_rollup_and_the_rest_directly(rt, conn, monkeypatch):
    # given ten postings to income:sales of 1 fen each (and their cash legs), in blocks of four,
    # rolled up with a safe watermark
    monkeypatch.setattr(rollup_store, "BLOCK", 4)
    for n in range(5):
        with db.atomic():
            ledger.post(f"sale:{n}", "payment", [ledger.Leg(ledger.CASH_WECHATPAY, 1), ledger.Leg(ledger.SALES, -1)])
    rollups.refresh(now=NOON)
    rollups.refresh(now=NOON + rollups.COMMIT_LAG)
    assert rollup_store.state(rollup_store.LEDGER_SOURCE).safe_id == rollup_store.max_id("posting")
    # when a rolled-up figure of a final block is tampered with, to see where the page reads from
    first = rollup_store.BALANCE[ledger.SALES]
    assert DailyMetric.update(value=DailyMetric.value - 1000).where(
        (DailyMetric.metric == first) & (DailyMetric.dim == 0)).execute() == 1
    # then the balances show it: the final blocks come from the rollup, not the postings
    assert ledger_reading.platform_balances()[ledger.SALES] == -5 - 1000
    # and a full refresh puts it right (a block is recomputed whole)
    rollups.refresh(now=NOON + 2 * rollups.COMMIT_LAG, full=True)
    assert_platform_balances_are_the_ledgers()


def test_a_state_row_of_an_older_block_format_is_ignored(rt, conn):
    # given a payment, and the watermark an older format's run left under the ledger's old name
    # (its blocks hold no platform balances)
    with db.atomic():
        ledger.post("sale:old", "payment", [ledger.Leg(ledger.CASH_WECHATPAY, 700), ledger.Leg(ledger.SALES, -700)])
    RollupState.create(source="ledger", safe_id=10_000_000, mark_id=10_000_000, ran_at=NOON)
    assert rollup_store.LEDGER_SOURCE != "ledger"
    # then the balances are still the ledger's, before and after the new format's first runs
    assert ledger_reading.platform_balances()[ledger.SALES] == -700
    rollups.refresh(now=NOON)
    rollups.refresh(now=NOON + rollups.COMMIT_LAG)
    assert_platform_balances_are_the_ledgers()
    # and the dashboard knows when it was refreshed
    assert rollups.dashboard(now=NOON).as_of == NOON + rollups.COMMIT_LAG
