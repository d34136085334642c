"""Batch settlement on both backends: who is paid and how much, idempotency, live sessions, the
risk hold, release after the refund window, reversal and clawback (a debt is never capped), and
one end-to-end run through the mini-program API, the worker job and the refund path.
"""

from __future__ import annotations

import datetime as dt

from models import failures, ledger, levels, reversals, settlement, withdrawals
from models.db import db, utcnow
from models.events import Event
from models.failures import ItemFailure
from models.live import end_live, start_live
from models.network import Creator
from models.orders import Order
from models.payments import refund_order
from models.settlement import Commission
from tests.books import (
    assert_books_clean,
    bucket,
    lines_of,
    release,
    settle,
    snapshot,
    state_of,
)
from tests.factories import chain, make_sku, mark_refunded, paid_order

RATES = {lv.rank: lv for lv in levels.DEFAULT_LEVELS}  # the seeded default table


# -- who is paid --------------------------------------------------------------------------------

def test_seller_and_two_uplines_are_paid_at_their_levels_rates_never_a_third(rt, shop):
    # given a chain great-grandparent (千星) -> grandparent (十星) -> parent (二星) -> seller (一星)
    top, up2, up1, seller = chain(6, 4, 2, 1)
    sku = make_sku(shop, commission_bp=1000)
    # when a 100-yuan order (cost 50 yuan) sold by the seller settles
    order = paid_order(seller, sku, amount=10_000, cost=5_000)
    result = settle(rt)
    # then the seller earns max(SKU 10%, 一星 10%), the parent its 二星 team1 rate, the
    # grandparent its 十星 team2 rate, and the great-grandparent nothing
    assert result.orders == 1
    assert lines_of(order) == {
        (seller.id, "sale"): 10_000 * RATES[1].own_rate_bp // 10_000,
        (up1.id, "team1"): 10_000 * RATES[2].team1_rate_bp // 10_000,
        (up2.id, "team2"): 10_000 * RATES[4].team2_rate_bp // 10_000,
    }
    assert bucket(top, "pending") == 0
    assert bucket(seller, "pending") == 1000 and bucket(up1, "pending") == 550
    assert bucket(up2, "pending") == 400
    assert state_of(order) == "pending"
    assert_books_clean()


def test_the_level_rate_beats_a_lower_sku_rate_and_markup_is_the_sellers(rt, shop):
    # given a 千星 seller (25%) with no uplines, a SKU at 12%, and a 20-yuan markup
    (seller,) = chain(6)
    sku = make_sku(shop, commission_bp=1200)
    # when an order of 120 yuan (retail 100 + markup 20) at cost 50 settles
    order = paid_order(seller, sku, amount=12_000, cost=5_000, markup=2_000)
    settle(rt)
    # then the markup is paid in full and 25% of the retail part on top
    assert lines_of(order) == {(seller.id, "markup"): 2_000, (seller.id, "sale"): 2_500}
    assert_books_clean()


def test_rank_zero_uplines_earn_no_team_reward_and_the_margin_cap_binds(rt, shop):
    # given a not-yet-star parent over a 一星 seller, and a thin margin
    up1, seller = chain(0, 1)
    sku = make_sku(shop, commission_bp=3000)
    # when a 100-yuan order costing 95 yuan settles (cap 90% of 5 yuan = 4.5 yuan)
    order = paid_order(seller, sku, amount=10_000, cost=9_500)
    settle(rt)
    # then the seller's 30% is cut to the cap and the rank-0 upline earns nothing
    assert lines_of(order) == {(seller.id, "sale"): 450}
    assert bucket(up1, "pending") == 0
    assert_books_clean()


def test_orders_without_a_seller_or_at_a_loss_settle_to_nothing(rt, shop):
    (seller,) = chain(3)
    sku = make_sku(shop)
    anonymous = paid_order(None, sku)
    at_a_loss = paid_order(seller, sku, amount=5_000, cost=6_000)
    # when they settle
    assert settle(rt).orders == 2
    # then each is marked settled with nothing to pay, and the ledger has nothing to post
    assert (state_of(anonymous), state_of(at_a_loss)) == ("none", "none")
    assert lines_of(anonymous) == {} and lines_of(at_a_loss) == {}
    with db.connection_context():
        assert ledger.LedgerTransaction.select().count() == 0
    assert_books_clean()


def test_an_inactive_seller_is_not_paid(rt, shop):
    up1, seller = chain(2, 1)
    with db.connection_context():
        Creator.update(active=False).where(Creator.id == seller.id).execute()
    order = paid_order(seller, make_sku(shop))
    settle(rt)
    assert state_of(order) == "none" and bucket(up1, "pending") == 0
    assert_books_clean()


# -- idempotency and scope ----------------------------------------------------------------------

def test_settling_twice_changes_nothing(rt, shop):
    # given a few orders in a small tree, settled in batches of two
    a, b, c = chain(2, 1, 1)
    sku = make_sku(shop)
    ids = [paid_order(seller, sku) for seller in (a, b, c, c, b)]
    first = settle(rt, batch=2)
    before = snapshot()
    # when settlement runs again (and once more for explicit ids)
    again = settle(rt, batch=2)
    by_ids = settle(rt, order_ids=ids)
    # then nothing more is written
    assert (first.orders, first.batches) == (5, 3)
    assert again.orders == 0 and by_ids.orders == 0
    assert snapshot() == before
    assert_books_clean()


def test_a_live_session_settles_only_its_own_orders(rt, shop):
    # given a seller live now, with two live orders and one ordinary order
    up1, seller = chain(1, 1)
    sku = make_sku(shop)
    with db.connection_context():
        live = start_live(seller, "tonight")
        other = start_live(up1, "elsewhere")
    in_live = [paid_order(seller, sku, live_id=live.id) for _ in range(2)]
    outside = paid_order(seller, sku)
    elsewhere = paid_order(up1, sku, live_id=other.id)
    # when the live session's orders are settled
    result = settle(rt, live_id=live.id)
    # then only those two are settled
    assert result.orders == 2
    assert [state_of(o) for o in in_live] == ["pending", "pending"]
    assert state_of(outside) is None and state_of(elsewhere) is None
    assert_books_clean()
    # and the general run settles the rest
    assert settle(rt).orders == 2
    assert_books_clean()


def test_unpaid_expired_and_refunded_orders_are_not_settled(rt, shop):
    (seller,) = chain(1)
    sku = make_sku(shop)
    ids = [paid_order(seller, sku) for _ in range(3)]
    with db.connection_context():
        Order.update(status="pending").where(Order.id == ids[0]).execute()
        Order.update(status="expired").where(Order.id == ids[1]).execute()
    mark_refunded(ids[2])
    with db.connection_context():
        assert settlement.unsettled_count() == 0
    assert settle(rt).orders == 0
    assert bucket(seller, "pending") == 0


def test_unsettled_count_sees_what_settle_would_take(rt, shop):
    (seller,) = chain(1)
    sku = make_sku(shop)
    with db.connection_context():
        live = start_live(seller)
    paid_order(seller, sku, live_id=live.id)
    paid_order(seller, sku)
    with db.connection_context():
        assert settlement.unsettled_count() == 2
        assert settlement.unsettled_count(live_id=live.id) == 1
    settle(rt)
    with db.connection_context():
        assert settlement.unsettled_count() == 0


# -- release, risk hold ------------------------------------------------------------------------

def test_release_after_the_refund_window_moves_pending_to_available(rt, shop):
    up1, seller = chain(2, 1)
    sku = make_sku(shop)
    order = paid_order(seller, sku)
    settle(rt)
    # when less than the window has passed, nothing moves
    assert release(rt, days=rt.payout.refund_window_days - 1) == 0
    assert bucket(seller, "pending") == 1000 and bucket(seller, "available") == 0
    assert_books_clean()
    # when the window has passed
    assert release(rt) == 1
    # then the money is available, pending is empty, and releasing again does nothing
    assert (bucket(seller, "pending"), bucket(seller, "available")) == (0, 1000)
    assert (bucket(up1, "pending"), bucket(up1, "available")) == (0, 550)
    assert state_of(order) == "available"
    assert release(rt) == 0
    assert bucket(seller, "available") == 1000
    assert_books_clean()


def test_risk_held_orders_stay_pending_through_release(rt, shop):
    (seller,) = chain(1)
    sku = make_sku(shop)
    held = paid_order(seller, sku, risk_hold=True)
    clear = paid_order(seller, sku)
    settle(rt)
    # when the window passes, twice over
    assert release(rt) == 1
    assert release(rt, days=60) == 0
    # then the held order's commission is still pending, the other one is available
    assert (state_of(held), state_of(clear)) == ("pending", "available")
    assert (bucket(seller, "pending"), bucket(seller, "available")) == (1000, 1000)
    assert_books_clean()
    # and once the hold is lifted the next release takes it
    with db.connection_context():
        Order.update(risk_hold=False).where(Order.id == held).execute()
    assert release(rt) == 1
    assert bucket(seller, "available") == 2000
    assert_books_clean()


# -- reversal and clawback ---------------------------------------------------------------------

def test_refund_before_release_reverses_the_pending_commission(rt, shop):
    up1, seller = chain(2, 1)
    sku = make_sku(shop)
    refunded, kept = paid_order(seller, sku), paid_order(seller, sku)
    settle(rt)
    # when one order is refunded inside the window
    mark_refunded(refunded)
    with db.connection_context():
        assert reversals.reverse_refunded() == 1
        assert reversals.reverse_refunded() == 0  # and again: nothing more
    # then its commission leaves pending, the other order's stays, and it is never released
    assert state_of(refunded) == "reversed"
    assert bucket(seller, "pending") == 1000 and bucket(up1, "pending") == 550
    assert release(rt) == 1
    assert (state_of(refunded), state_of(kept)) == ("reversed", "available")
    assert bucket(seller, "available") == 1000
    with db.connection_context():
        assert ledger.balance(ledger.COMMISSION_EXPENSE) == 1550
    assert_books_clean()


def test_refund_after_payout_claws_back_into_a_debt_that_is_not_capped(rt, shop):
    # given commission released and withdrawn by the seller (as shopping credit)
    up1, seller = chain(2, 1)
    sku = make_sku(shop)
    order = paid_order(seller, sku)
    settle(rt)
    release(rt)
    with db.connection_context():
        withdrawals.request_withdrawal(seller, 1000, "credit", policy=withdrawals.WithdrawPolicy(min_fen=1))
    assert bucket(seller, "available") == 0
    # when the order is refunded after availability
    mark_refunded(order)
    with db.connection_context():
        assert reversals.reverse_refunded() == 1
    # then the commission is clawed back in full: the seller owes 10 yuan (available < 0
    # from the creator's side, a positive ledger balance), the upline's available is emptied
    assert state_of(order) == "clawed_back"
    assert bucket(seller, "available") == -1000
    with db.connection_context():
        assert ledger.balance(ledger.creator_account(seller.id, ledger.AVAILABLE)) == 1000
    assert bucket(up1, "available") == 0
    assert_books_clean()
    # and a later sale is netted against the debt once it becomes available
    paid_order(seller, sku)
    settle(rt)
    release(rt)
    assert bucket(seller, "available") == 0
    assert_books_clean()


def test_reverse_skips_unsettled_and_already_reversed_orders(rt, shop):
    (seller,) = chain(1)
    sku = make_sku(shop)
    settled = paid_order(seller, sku)
    settle(rt)
    unsettled = paid_order(seller, sku)
    with db.connection_context():
        first = reversals.reverse([settled, unsettled], reason="fraud", actor="operator:test")
        second = reversals.reverse([settled, unsettled], reason="fraud", actor="operator:test")
    assert first == {"reversed": 1, "clawed_back": 0}
    assert second == {"reversed": 0, "clawed_back": 0}
    assert bucket(seller, "pending") == 0
    assert_books_clean()


def test_verify_reports_a_ledger_that_disagrees_with_the_lines(rt, shop):
    # given settled commission
    (seller,) = chain(1)
    paid_order(seller, make_sku(shop))
    settle(rt)
    assert_books_clean()
    # when someone posts a stray (balanced) entry into a creator's pending bucket
    with db.connection_context(), db.atomic():
        ledger.post("stray:1", "manual", [ledger.Leg(ledger.creator_account(seller.id, "pending"), -5),
                                          ledger.Leg(ledger.COMMISSION_EXPENSE, 5)])
    # then the ledger still balances but verify names both disagreements
    with db.connection_context():
        assert ledger.unbalanced_transactions() == []
        problems = settlement.verify()
    assert any(f"creator:{seller.id}:pending" in p for p in problems), problems
    assert any("commission expense" in p for p in problems), problems


# -- end to end: API orders, a live session, the worker's jobs, a real refund ----------------

def test_live_orders_through_the_api_settle_when_the_live_ends_and_a_refund_reverses(
        rt, client, login, shop, fake_pay, run_jobs):
    from tasks import queues

    # given a 一星 seller under a 二星 upline, live now, and a 100-yuan card (cost 50)
    up1, seller = chain(2, 1, prefix="e2e")
    card = shop.card_sku(keys=5, price=10_000)
    with db.connection_context():
        live = start_live(seller, "launch")
    auth = login("e2e-buyer")
    # when a shopper buys two cards in the live room through the seller's ref and pays
    ids = []
    for _ in range(2):
        resp = client.post("/api/v1/orders", json={"sku": card.code, "ref": seller.code, "live": live.id},
                           headers=auth)
        assert resp.status_code == 201, resp.json
        assert client.post(f"/api/v1/orders/{resp.json['id']}/pay", headers=auth).status_code == 200
        assert fake_pay.notify_acknowledged(fake_pay.pay(resp.json["no"]))
        ids.append(resp.json["id"])
    run_jobs()  # delivery
    # and the live session ends, which queues its settlement
    with db.connection_context():
        end_live(seller, live.id)
    queues.settle_live(live.id)
    run_jobs()
    # then both orders are settled: 10% to the seller, 5.5% to the 二星 upline
    assert [state_of(i) for i in ids] == ["pending", "pending"]
    assert bucket(seller, "pending") == 2000 and bucket(up1, "pending") == 1100
    assert_books_clean()
    # when one is refunded through the real refund path (WeChat Pay) and the queued job runs
    with db.connection_context():
        assert refund_order(ids[0], rt.gateway, actor="operator:test", reason="changed mind").state == "succeeded"
    queues.reverse_refunded()
    run_jobs()
    # then its commission is reversed, the other's stays pending
    assert (state_of(ids[0]), state_of(ids[1])) == ("reversed", "pending")
    assert bucket(seller, "pending") == 1000 and bucket(up1, "pending") == 550
    assert_books_clean()


def test_release_in_small_batches_passes_over_held_orders(rt, shop):
    # given five settled orders, the second and fourth on risk hold
    (seller,) = chain(1)
    sku = make_sku(shop)
    ids = [paid_order(seller, sku, risk_hold=i in (1, 3)) for i in range(5)]
    settle(rt)
    # when the window has passed and release runs in batches of two
    with db.connection_context():
        later = utcnow() + dt.timedelta(days=rt.payout.refund_window_days, seconds=1)
        released = settlement.release_due(rt.payout, now=later, batch=2)
    # then the three clear orders are released, the held ones stay pending
    assert released == 3
    assert [state_of(i) for i in ids] == ["available", "pending", "available", "pending", "available"]
    assert (bucket(seller, "available"), bucket(seller, "pending")) == (3000, 2000)
    assert_books_clean()


# -- one order that cannot be settled never holds back the others ------------------------------

def test_an_order_that_cannot_be_settled_is_set_aside_and_the_rest_settle(rt, shop):
    # given five paid orders of one seller, the third with a stray commission line (a corrupt
    # row: its settlement insert will violate the (order, beneficiary, kind) key)
    _, seller = chain(2, 1)
    sku = make_sku(shop)
    orders = [paid_order(seller, sku) for _ in range(5)]
    bad = orders[2]
    with db.connection_context():
        Commission.create(order_id=bad, creator_id=seller.id, kind="sale", amount_fen=1, created_at=utcnow())
        # when settlement runs
        result = settlement.settle(rt.payout, retry_intervals=(60,))
    # then the four others are settled and the bad one is set aside with its reason
    assert result.orders == 4
    assert [state_of(o) for o in orders] == ["pending", "pending", None, "pending", "pending"]
    with db.connection_context():
        failure = ItemFailure.get((ItemFailure.job == "settlement") & (ItemFailure.item_id == bad))
        assert failure.resolved_at is None and failure.attempts == 1
        assert "unique" in failure.error.lower() and "commission" in failure.error
        assert failure.next_retry_at > utcnow()
        # and a second run leaves it alone until its retry is due
        assert settlement.settle(rt.payout).orders == 0
        assert failures.due("settlement") == []
        # when its retry comes due (the stray line is still there: commission is append-only)
        due = failures.due("settlement", now=utcnow() + dt.timedelta(seconds=61))
        assert due == [bad]
        settlement.settle(rt.payout, order_ids=due, retry_set_aside=True, retry_intervals=(60, 600))
        # then it is set aside again for the next interval, and nothing else changed
        failure = ItemFailure.get_by_id(failure.id)
        assert failure.attempts == 2 and failure.resolved_at is None
        assert failure.next_retry_at > utcnow() + dt.timedelta(seconds=500)
    assert [state_of(o) for o in orders] == ["pending", "pending", None, "pending", "pending"]
    assert lines_of(orders[0]) == lines_of(orders[4])


def test_an_order_failing_every_retry_waits_for_an_operator(rt, shop):
    # given an order whose settlement fails, with two retries allowed
    _, seller = chain(2, 1)
    bad = paid_order(seller, make_sku(shop))
    with db.connection_context():
        Commission.create(order_id=bad, creator_id=seller.id, kind="sale", amount_fen=1, created_at=utcnow())
        settlement.settle(rt.payout, retry_intervals=(1, 1))
        # when each retry fails too
        for _ in range(2):
            settlement.settle(rt.payout, order_ids=[bad], retry_set_aside=True, retry_intervals=(1, 1))
        # then it has failed three times, has no next try, and stays out of normal batches
        failure = ItemFailure.get(ItemFailure.item_id == bad)
        assert failure.attempts == 3 and failure.next_retry_at is None and failure.resolved_at is None
        assert failures.due("settlement", now=utcnow() + dt.timedelta(days=1)) == []
        assert settlement.settle(rt.payout).orders == 0
        assert Event.select().where((Event.topic == "settlement.failed")
                                    & (Event.subject == f"order:{bad}")).count() == 3
