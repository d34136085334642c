"""`qianxing settle` and the settlement half of `qianxing ledger verify`, through click against
the test database and Redis."""

from __future__ import annotations

import datetime as dt

from models import ledger
from models.db import db, utcnow
from models.live import start_live
from models.orders import Order
from models.settlement import Commission
from tests.books import assert_books_clean, bucket, state_of
from tests.factories import chain, make_sku, paid_order


def test_settle_settles_everything_with_a_summary_and_again_nothing(cli, rt, shop):
    # given three paid orders in a two-creator team
    up1, seller = chain(2, 1)
    sku = make_sku(shop)
    ids = [paid_order(seller, sku) for _ in range(3)]
    # when the operator settles
    first = cli("settle")
    # then all three are settled and the summary says so
    assert first.exit_code == 0, first.output
    assert "settled 3 orders: 6 commission lines, 4650 fen pending, 1 batches" in first.output
    assert [state_of(i) for i in ids] == ["pending"] * 3
    # and a second run finds nothing to do
    second = cli("settle")
    assert second.exit_code == 0 and "settled 0 orders" in second.output
    assert bucket(seller, "pending") == 3000 and bucket(up1, "pending") == 1650
    assert_books_clean()


def test_settle_live_release_and_reverse_refunds(cli, rt, shop):
    (seller,) = chain(1)
    sku = make_sku(shop)
    with db.connection_context():
        live = start_live(seller)
    in_live = paid_order(seller, sku, live_id=live.id)
    other = paid_order(seller, sku)
    # when only the live session is settled
    result = cli("settle", "--live", str(live.id))
    assert result.exit_code == 0 and "settled 1 orders" in result.output, result.output
    assert (state_of(in_live), state_of(other)) == ("pending", None)
    # when the other order was refunded and the operator settles with both extras
    with db.connection_context():
        Order.update(status="refunded").where(Order.id == in_live).execute()
    result = cli("settle", "--release", "--reverse-refunds")
    # then the rest is settled, nothing is due for release yet, the refund is reversed
    assert result.exit_code == 0, result.output
    assert "settled 1 orders" in result.output and "released 0 orders" in result.output
    assert "reversed 1 refunded orders" in result.output
    assert (state_of(in_live), state_of(other)) == ("reversed", "pending")
    assert_books_clean()


def test_ledger_verify_fails_when_commission_and_ledger_disagree(cli, rt, shop):
    # given settled commission that verifies
    (seller,) = chain(1)
    paid_order(seller, make_sku(shop))
    assert cli("settle").exit_code == 0
    ok = cli("ledger", "verify")
    assert ok.exit_code == 0 and ok.output.strip() == "ledger balanced"
    # when a balanced but wrong entry lands in the seller's pending bucket
    with db.connection_context(), db.atomic():
        ledger.post("stray:cli", "manual", [ledger.Leg(ledger.creator_account(seller.id, "pending"), -7),
                                            ledger.Leg(ledger.COMMISSION_EXPENSE, 7)])
    # then verify fails and names the account
    bad = cli("ledger", "verify")
    assert bad.exit_code == 1
    assert "settlement does not match the ledger" in bad.output
    assert f"creator:{seller.id}:pending" in bad.output


def test_a_risk_hold_keeps_commission_pending_until_lifted(cli, rt, shop):
    # given a settled order paid long enough ago to be released
    (seller,) = chain(1)
    long_ago = utcnow() - dt.timedelta(days=30)
    order_id = paid_order(seller, make_sku(shop), paid_at=long_ago)
    assert cli("settle").exit_code == 0
    # when the operator puts it on hold (twice) and release runs
    first = cli("orders", "hold", str(order_id), "--reason", "odd buyer")
    again = cli("orders", "hold", str(order_id))
    released = cli("settle", "--release")
    # then the commission stays pending
    assert first.exit_code == 0 and f"order {order_id}: held" == first.output.strip()
    assert again.output.strip() == f"order {order_id}: held (already)"
    assert "released 0 orders" in released.output and state_of(order_id) == "pending"
    # and once the hold is lifted it is released
    assert cli("orders", "hold", str(order_id), "--release").exit_code == 0
    assert "released 1 orders" in cli("settle", "--release").output
    assert state_of(order_id) == "available" and bucket(seller, "available") > 0
    assert_books_clean()


def test_a_fraud_finding_reverses_pending_and_claws_back_available_commission(cli, rt, shop):
    # given one order still pending and one already available to the seller
    (seller,) = chain(1)
    sku = make_sku(shop)
    pending = paid_order(seller, sku)
    available = paid_order(seller, sku, paid_at=utcnow() - dt.timedelta(days=30))
    assert cli("settle", "--release").exit_code == 0
    earned = bucket(seller, "available")
    assert state_of(available) == "available" and earned > 0
    # when the operator records fraud on both (the second time changes nothing)
    one = cli("orders", "fraud", str(pending), "--reason", "self-purchase ring")
    two = cli("orders", "fraud", str(available), "--reason", "self-purchase ring")
    repeat = cli("orders", "fraud", str(available), "--reason", "again")
    # then pending commission is reversed, available is clawed back, nothing twice
    assert "commission reversed 1, clawed back 0" in one.output, one.output
    assert "commission reversed 0, clawed back 1" in two.output
    assert "commission reversed 0, clawed back 0" in repeat.output
    assert (state_of(pending), state_of(available)) == ("reversed", "clawed_back")
    assert bucket(seller, "pending") == 0 and bucket(seller, "available") == 0
    with db.connection_context():
        assert Order.get_by_id(available).risk_hold
    assert_books_clean()


def test_hold_and_fraud_refuse_an_unknown_order(cli, rt):
    assert cli("orders", "hold", "999999").exit_code == 1
    result = cli("orders", "fraud", "999999", "--reason", "x")
    assert result.exit_code == 1 and "order 999999 not found" in result.output


def test_settle_reports_and_retries_orders_set_aside(cli, rt, shop):
    # given two paid orders, one of which cannot be settled (a stray commission line)
    (seller,) = chain(1)
    sku = make_sku(shop)
    good, bad = paid_order(seller, sku), paid_order(seller, sku)
    with db.connection_context():
        Commission.create(order_id=bad, creator_id=seller.id, kind="sale", amount_fen=1, created_at=utcnow())
    # when the operator settles, then the good one settles and the bad one is set aside
    first = cli("settle")
    assert first.exit_code == 0 and "settled 1 orders" in first.output, first.output
    assert (state_of(good), state_of(bad)) == ("pending", None)
    shown = cli("orders", "show", str(bad)).output
    assert "settlement failed 1x" in shown and "SET ASIDE" in shown
    # when the operator retries the set-aside orders while the cause is still there
    again = cli("settle", "--retry-set-aside")
    # then it says so, and the order is still set aside with a second failure recorded
    assert again.exit_code == 0, again.output
    assert "retried 1 set-aside orders: 0 settled, 1 still failing" in again.output
    assert "settlement failed 2x" in cli("orders", "show", str(bad)).output
