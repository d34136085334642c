"""Coupon money (issue 14) on both backends: who funds each discount on every path that moves
money. A payment books the sale at its price before coupons and the discount as the platform's
expense (WeChat Pay through the PostgreSQL function or the Python path, shopping credit); a
refund posts the same legs negated; settlement takes a creator's coupon out of the seller's
earnings (never below zero, the rest stays the platform's); reversal and clawback give
everything back; group-held orders wait; late payments of expired or cancelled orders whose
coupon is gone are refunded, never delivered.
"""

from __future__ import annotations

import datetime as dt

from models import failures, ledger, network, orders, payments, reversals, settlement
from models.coupons import Coupon, CouponGrant, CouponRedemption, GrantState, RedemptionState
from models.db import db, utcnow
from models.delivery import Voucher
from models.failures import ItemFailure
from models.network import Creator
from models.orders import Order, Status
from models.payments import Outcome, Refund
from models.settlement import Commission
from models.vault import CardKey, KeyState
from tests.books import assert_books_clean, bucket, lines_of, release, settle, state_of
from tests.factories import (
    api_order,
    buyer,
    chain,
    coupon,
    discounted,
    earn,
    granted,
    postings_of,
    wechat_paid,
)

CASH, SALES, DISCOUNTS, COMMISSION = (ledger.CASH_WECHATPAY, ledger.SALES, ledger.DISCOUNT_EXPENSE,
                                      ledger.COMMISSION_EXPENSE)


def platform() -> dict[str, int]:
    with db.connection_context():
        return ledger.balances([CASH, SALES, DISCOUNTS, COMMISSION])


def row(order_id: int) -> Order:
    with db.connection_context():
        return Order.get_by_id(order_id)


def sku_with_keys(shop, keys: int, price: int = 10_000, commission_bp: int = 1000):  # noqa: ANN001, ANN201
    from models.catalog import Sku

    sku = shop.card_sku(keys=keys, price=price)
    with db.connection_context():
        Sku.update(commission_bp=commission_bp).where(Sku.id == sku.id).execute()
        return Sku.get_by_id(sku.id)


def marked_up(seller: Creator, sku, markup: int) -> None:  # noqa: ANN001
    with db.connection_context():
        network.set_markup(seller, sku.code, markup, default_cap_bp=10_000)


def refund(rt, order_id: int, **kw) -> Refund:  # noqa: ANN001, ANN003
    with db.connection_context():
        return payments.refund_order(order_id, rt.gateway, actor="operator:test", reason="test", **kw)


def reverse_refunded() -> int:
    with db.connection_context():
        return reversals.reverse_refunded()


# -- payment and refund -------------------------------------------------------------------------

def test_a_platform_coupon_is_the_platforms_expense_and_a_refund_returns_every_leg(
        rt, app, shop, fake_pay, run_jobs):
    # given a 19.90 yuan order that a platform coupon took 3 yuan off
    sku = sku_with_keys(shop, keys=2, price=1990)
    order = discounted(sku, discount=300)
    assert (order.amount_fen, order.discount_fen, order.creator_discount_fen) == (1690, 300, 0)
    # when WeChat Pay notifies its payment (the PostgreSQL function on PostgreSQL)
    wechat_paid(order, rt.gateway, fake_pay)
    run_jobs()
    # then the sale is booked at its price before the coupon and the coupon as a discount expense
    assert row(order.id).status == Status.DELIVERED
    assert postings_of(f"payment:{order.no}") == {CASH: 1690, SALES: -1990, DISCOUNTS: 300}
    assert_books_clean()
    # when it is refunded through WeChat Pay
    done = refund(rt, order.id)
    # then the buyer gets what they paid, and the refund posts the payment's legs negated
    assert done.state == "succeeded" and done.amount_fen == 1690
    assert [r.refund_fee for r in fake_pay.refunds if r.out_trade_no == order.no] == [1690]
    assert postings_of(f"refund:{order.no}") == {CASH: -1690, SALES: 1990, DISCOUNTS: -300}
    assert platform() == {CASH: 0, SALES: 0, DISCOUNTS: 0, COMMISSION: 0}
    assert_books_clean()


def test_shopping_credit_pays_a_discounted_order_and_its_refund_returns_the_credit(rt, shop):
    # given a creator with 50 yuan of shopping credit, and their 19.90 yuan order 5 yuan off
    from models import withdrawals
    from models.withdrawals import Method

    ann = chain(1)[0]
    earn(ann, 5000)
    with db.connection_context():
        withdrawals.request_withdrawal(ann, 5000, Method.CREDIT, policy=withdrawals.WithdrawPolicy(min_fen=1))
        user = ann.user
    credit = ledger.creator_account(ann.id, ledger.CREDIT)
    order = discounted(sku_with_keys(shop, keys=1, price=1990), user=user, discount=500)
    # when they pay it with their credit
    with db.connection_context():
        payments.pay_with_credit(order.id, user)
    # then the credit pays what is left and the discount is booked as with WeChat Pay
    assert postings_of(f"credit-payment:{order.no}") == {credit: 1490, SALES: -1990, DISCOUNTS: 500}
    with db.connection_context():
        assert withdrawals.balances(ann.id)["credit_fen"] == 5000 - 1490
    # when it is refunded, the credit comes back and the discount expense goes
    refund(rt, order.id)
    assert postings_of(f"refund:{order.no}") == {credit: -1490, SALES: 1990, DISCOUNTS: -500}
    with db.connection_context():
        assert withdrawals.balances(ann.id)["credit_fen"] == 5000
        assert ledger.unbalanced_transactions() == []
    assert platform()[DISCOUNTS] == 0 and platform()[SALES] == 0


def test_paying_consumes_the_coupon_and_a_refund_gives_its_use_back(rt, app, login, shop, fake_pay, run_jobs):
    # given a real platform coupon (3 yuan off, at most 5 uses) applied through the order API
    sku = sku_with_keys(shop, keys=2, price=1990)
    auth = login("c-alice")
    made = coupon(amount_off_fen=300, max_uses=5)
    (grant,) = granted(made, buyer("c-alice"))
    order = api_order(client_of(app), auth, sku, coupons=[grant])
    assert (order["amount_fen"], order["discount_fen"]) == (1690, 300)
    # when WeChat Pay notifies the payment
    assert fake_pay.notify_acknowledged(fake_pay.pay(order["no"]))
    run_jobs()
    # then the redemption is consumed, the grant used, and the discount booked
    with db.connection_context():
        assert CouponRedemption.get(CouponRedemption.order_id == order["id"]).state == RedemptionState.CONSUMED
        assert CouponGrant.get_by_id(grant).state == GrantState.USED
    assert postings_of(f"payment:{order['no']}") == {CASH: 1690, SALES: -1990, DISCOUNTS: 300}
    # when it is refunded with COUPON_RESTORE_ON_REFUND off
    refund(rt, order["id"], restore_coupons=False)
    # then the use goes back to the coupon but the grant stays used, and the books are even
    with db.connection_context():
        assert CouponRedemption.get(CouponRedemption.order_id == order["id"]).state == RedemptionState.RETURNED
        assert CouponGrant.get_by_id(grant).state == GrantState.USED
        assert Coupon.get_by_id(made.id).uses == 0
    assert platform() == {CASH: 0, SALES: 0, DISCOUNTS: 0, COMMISSION: 0}
    assert_books_clean()


def client_of(app):  # noqa: ANN001, ANN201
    return app.test_client()


# -- settlement ---------------------------------------------------------------------------------

def test_a_creator_coupon_comes_out_of_the_sellers_earnings_and_the_uplines_keep_theirs(
        rt, app, shop, fake_pay, run_jobs):
    # given a 一星 seller under a 二星 parent, selling a 100-yuan card (cost 50) with a 10-yuan
    # markup, and an order through the seller's link with the seller's 8-yuan coupon and a
    # 2-yuan platform coupon stacked
    parent, seller = chain(2, 1)
    sku = sku_with_keys(shop, keys=1)
    marked_up(seller, sku, 1000)
    order = discounted(sku, ref=seller.code, discount=1000, creator_discount=800)
    assert order.amount_fen == 11_000 - 1000
    # when it is paid and settled
    wechat_paid(order, rt.gateway, fake_pay)
    run_jobs()
    assert settle(rt).orders == 1
    # then commission is computed on what the buyer paid plus the seller's coupon (110 - 2
    # yuan): markup 10, sale 10% of the 98-yuan base... and the seller funds 8 yuan of it
    base = 10_800 - 1000
    assert lines_of(order.id) == {
        (seller.id, "markup"): 1000, (seller.id, "sale"): base * 1000 // 10_000,
        (seller.id, "coupon"): -800, (parent.id, "team1"): base * 550 // 10_000,
    }
    assert bucket(seller, "pending") == 1000 + base // 10 - 800
    assert bucket(parent, "pending") == base * 550 // 10_000
    # and the ledger shows who funded the discount: the platform 2 yuan, the seller 8
    gross_lines = 1000 + base // 10 + base * 550 // 10_000
    assert platform() == {CASH: 10_000, SALES: -11_000, DISCOUNTS: 200, COMMISSION: gross_lines}
    assert state_of(order.id) == "pending"
    assert_books_clean()
    # when the order is refunded and its commission reversed
    refund(rt, order.id)
    assert reverse_refunded() == 1
    # then every account is back to zero
    assert platform() == {CASH: 0, SALES: 0, DISCOUNTS: 0, COMMISSION: 0}
    assert bucket(seller, "pending") == 0 and bucket(parent, "pending") == 0
    assert state_of(order.id) == "reversed"
    assert_books_clean()


def test_a_creator_coupon_bigger_than_the_sellers_lines_leaves_them_zero_and_the_platform_the_rest(
        rt, app, shop, fake_pay, run_jobs):
    # given two orders with a 30-yuan coupon of their seller on a 100-yuan card without markup:
    # one by a seller with a parent, one by a seller on their own
    parent, seller = chain(2, 1)
    (alone,) = chain(1, prefix="solo")
    sku = sku_with_keys(shop, keys=2)
    first = discounted(sku, "b1", ref=seller.code, discount=3000, creator_discount=3000)
    second = discounted(sku, "b2", ref=alone.code, discount=3000, creator_discount=3000)
    for order in (first, second):
        wechat_paid(order, rt.gateway, fake_pay)
    run_jobs()
    # when they settle
    assert settle(rt).orders == 2
    # then each seller's 10-yuan sale commission funds 10 yuan of the coupon: they earn 0
    # (never less); the parent keeps its team line; the platform funds the other 20 yuan each
    assert lines_of(first.id) == {(seller.id, "sale"): 1000, (seller.id, "coupon"): -1000,
                                  (parent.id, "team1"): 550}
    assert lines_of(second.id) == {(alone.id, "sale"): 1000, (alone.id, "coupon"): -1000}
    assert bucket(seller, "pending") == 0 and bucket(alone, "pending") == 0
    assert bucket(parent, "pending") == 550
    assert platform()[DISCOUNTS] == 2 * (3000 - 1000)
    # and the order that pays nobody anything still counts as settled with its lines
    with db.connection_context():
        got = {s.order_id: (s.state, s.payout_fen) for s in settlement.Settlement.select()}
    assert got == {first.id: ("pending", 550), second.id: ("pending", 0)}
    assert_books_clean()
    # when the refund window passes and the orders are then refunded (a clawback)
    assert release(rt) == 2
    assert bucket(parent, "available") == 550 and bucket(seller, "available") == 0
    for order in (first, second):
        refund(rt, order.id)
    assert reverse_refunded() == 2
    # then everything is given back, and nobody owes anything for a coupon
    assert [state_of(o.id) for o in (first, second)] == ["clawed_back", "clawed_back"]
    assert platform() == {CASH: 0, SALES: 0, DISCOUNTS: 0, COMMISSION: 0}
    assert bucket(parent, "available") == 0 and bucket(seller, "available") == 0
    assert bucket(alone, "available") == 0
    assert_books_clean()


def test_fraud_on_a_creator_coupon_order_leaves_the_whole_discount_to_the_platform(rt, shop):
    # given a settled order with a 5-yuan coupon of its seller
    (seller,) = chain(1)
    order = discounted(sku_with_keys(shop, keys=1), ref=seller.code, discount=500, creator_discount=500)
    with db.connection_context():
        assert payments.confirm_payment(order.no, "tx-f", order.amount_fen, source="test")[1] == Outcome.PAID
    settle(rt)
    assert platform()[DISCOUNTS] == 0
    # when it is found fraudulent (not refunded: the sale stands)
    with db.connection_context():
        reversals.flag_fraud(order.id, actor="operator:test", reason="self-dealing")
    # then the seller's lines are reversed, and the platform funds the whole discount
    assert bucket(seller, "pending") == 0
    assert platform()[DISCOUNTS] == 500 and platform()[COMMISSION] == 0
    assert_books_clean()


def test_a_batch_with_one_bad_order_still_settles_the_discounted_ones(rt, shop):
    # given five discounted orders of one seller, the third with a stray commission line
    (seller,) = chain(1)
    sku = sku_with_keys(shop, keys=5)
    made = [discounted(sku, f"bb{i}", ref=seller.code, discount=400, creator_discount=300) for i in range(5)]
    with db.connection_context():
        for order in made:
            payments.confirm_payment(order.no, f"tx-{order.no}", order.amount_fen, source="test")
        bad = made[2].id
        Commission.create(order_id=bad, creator_id=seller.id, kind="sale", amount_fen=1, created_at=utcnow())
        # when settlement runs
        result = settlement.settle(rt.payout, retry_intervals=(60,))
    # then the four others settle with their coupon lines and the bad one is set aside
    assert result.orders == 4
    assert [state_of(o.id) for o in made] == ["pending", "pending", None, "pending", "pending"]
    assert lines_of(made[0].id) == {(seller.id, "sale"): 1000 - 10, (seller.id, "coupon"): -300}
    with db.connection_context():
        assert ItemFailure.get(ItemFailure.item_id == bad).job == failures.SETTLEMENT
        assert ledger.unbalanced_transactions() == []
    assert bucket(seller, "pending") == 4 * (990 - 300)
    assert platform()[DISCOUNTS] == 5 * 400 - 4 * 300


def test_group_held_orders_wait_for_their_team_before_settling(rt, shop):
    # given two paid orders of a seller, one of a group-buy team that has not succeeded yet
    (seller,) = chain(1)
    sku = sku_with_keys(shop, keys=2)
    held, plain = (discounted(sku, f"g{i}", ref=seller.code, discount=100) for i in range(2))
    with db.connection_context():
        for order in (held, plain):
            payments.confirm_payment(order.no, f"tx-{order.no}", order.amount_fen, source="test")
        Order.update(group_hold=True).where(Order.id == held.id).execute()
        assert settlement.unsettled_count() == 1
    # when settlement runs, only the other settles
    assert settle(rt).orders == 1
    assert state_of(held.id) is None and state_of(plain.id) == "pending"
    # and once the team succeeded (the hold cleared) it settles too
    with db.connection_context():
        Order.update(group_hold=False).where(Order.id == held.id).execute()
        assert settlement.unsettled_count() == 1
    assert settle(rt).orders == 1 and state_of(held.id) == "pending"
    assert_books_clean()


def test_verify_names_a_discount_expense_that_disagrees_with_the_orders(rt, shop):
    # given a paid discounted order, settled
    (seller,) = chain(1)
    order = discounted(sku_with_keys(shop, keys=1), ref=seller.code, discount=700, creator_discount=200)
    with db.connection_context():
        payments.confirm_payment(order.no, "tx-v", order.amount_fen, source="test")
    settle(rt)
    assert_books_clean()
    # when a stray (balanced) entry moves the discount expense
    with db.connection_context(), db.atomic():
        ledger.post("stray:d", "manual", [ledger.Leg(DISCOUNTS, 5), ledger.Leg(SALES, -5)])
    # then verify names it
    with db.connection_context():
        problems = settlement.verify()
    assert any("discount expense" in p for p in problems), problems


# -- late payments ------------------------------------------------------------------------------

def test_a_cancelled_order_paid_late_is_refunded_never_delivered_and_its_coupon_stays_free(
        rt, app, login, shop, fake_pay, run_jobs):
    # given an order with a coupon, its WeChat Pay order made, then cancelled by the buyer
    sku = sku_with_keys(shop, keys=1, price=1990)
    auth = login("c-late")
    made = coupon(amount_off_fen=300)
    (grant,) = granted(made, buyer("c-late"))
    client = client_of(app)
    order = api_order(client, auth, sku, coupons=[grant])
    resp = client.post(f"/api/v1/orders/{order['id']}/cancel", headers=auth)
    assert resp.status_code == 200, resp.json
    assert row(order["id"]).status == Status.CANCELLED
    with db.connection_context():
        assert CouponGrant.get_by_id(grant).state == GrantState.AVAILABLE
    # when WeChat Pay notifies a payment for it anyway
    assert fake_pay.notify_acknowledged(fake_pay.pay(order["no"]))
    run_jobs()
    # then it is refunded in full through WeChat Pay, never delivered, its key stays on the shelf
    assert [r.refund_fee for r in fake_pay.refunds if r.out_trade_no == order["no"]] == [1690]
    assert row(order["id"]).status == Status.REFUNDED
    with db.connection_context():
        assert Voucher.select().where(Voucher.order == order["id"]).count() == 0
        assert [k.state for k in CardKey.select().where(CardKey.sku == sku.id)] == [KeyState.AVAILABLE]
        # the coupon was released with the cancellation and stays the buyer's to use
        assert CouponRedemption.get(CouponRedemption.order_id == order["id"]).state == RedemptionState.RELEASED
        assert CouponGrant.get_by_id(grant).state == GrantState.AVAILABLE
        assert Coupon.get_by_id(made.id).uses == 0
    # and the money in and out is balanced on every account
    assert postings_of(f"payment:{order['no']}") == {CASH: 1690, SALES: -1990, DISCOUNTS: 300}
    assert platform() == {CASH: 0, SALES: 0, DISCOUNTS: 0, COMMISSION: 0}
    assert_books_clean()
    # and the buyer then uses the same coupon on a new order
    again = api_order(client, auth, sku, coupons=[grant])
    assert again["discount_fen"] == 300


def expire(order_id: int) -> None:
    with db.connection_context():
        Order.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(Order.id == order_id).execute()
        assert orders.expire_due() == 1


def test_a_late_payment_whose_coupon_was_used_up_meanwhile_is_refunded(rt, app, login, shop, fake_pay, run_jobs):
    # given a one-use coupon: the first buyer's order expired (the use released) and a second
    # buyer then redeemed it and paid
    sku = sku_with_keys(shop, keys=3, price=1990)
    made = coupon(amount_off_fen=300, max_uses=1)
    late_auth, quick_auth = login("c-slow"), login("c-quick")
    (late_grant,) = granted(made, buyer("c-slow"))
    (quick_grant,) = granted(made, buyer("c-quick"))
    client = client_of(app)
    late = api_order(client, late_auth, sku, coupons=[late_grant])
    expire(late["id"])
    quick = api_order(client, quick_auth, sku, coupons=[quick_grant])
    assert fake_pay.notify_acknowledged(fake_pay.pay(quick["no"]))
    # when the first buyer's payment arrives after all
    assert fake_pay.notify_acknowledged(fake_pay.pay(late["no"]))
    run_jobs()
    # then it is refunded and not delivered; the second buyer's order keeps the coupon
    assert row(late["id"]).status == Status.REFUNDED
    assert row(quick["id"]).status == Status.DELIVERED
    assert [r.refund_fee for r in fake_pay.refunds if r.out_trade_no == late["no"]] == [1690]
    with db.connection_context():
        assert Voucher.select().where(Voucher.order == late["id"]).count() == 0
        assert Coupon.get_by_id(made.id).uses == 1
        assert CouponRedemption.get(CouponRedemption.order_id == quick["id"]).state == RedemptionState.CONSUMED
        assert CouponRedemption.get(CouponRedemption.order_id == late["id"]).state == RedemptionState.RELEASED
    # and only the second sale is left in the books
    assert platform() == {CASH: 1690, SALES: -1990, DISCOUNTS: 300, COMMISSION: 0}
    assert_books_clean()


def test_a_late_payment_whose_coupon_still_has_room_revives_the_order(rt, app, login, shop, fake_pay, run_jobs):
    # given an order with a coupon that expired unpaid (its use released)
    sku = sku_with_keys(shop, keys=1, price=1990)
    made = coupon(amount_off_fen=300, max_uses=3)
    auth = login("c-revive")
    (grant,) = granted(made, buyer("c-revive"))
    order = api_order(client_of(app), auth, sku, coupons=[grant])
    expire(order["id"])
    with db.connection_context():
        assert Coupon.get_by_id(made.id).uses == 0
    # when its payment arrives late
    assert fake_pay.notify_acknowledged(fake_pay.pay(order["no"]))
    run_jobs()
    # then the coupon's use is taken back and consumed, and the order is delivered
    assert row(order["id"]).status == Status.DELIVERED
    with db.connection_context():
        assert Coupon.get_by_id(made.id).uses == 1
        assert CouponRedemption.get(CouponRedemption.order_id == order["id"]).state == RedemptionState.CONSUMED
        assert CouponGrant.get_by_id(grant).state == GrantState.USED
    assert not [r for r in fake_pay.refunds if r.out_trade_no == order["no"]]
    assert platform() == {CASH: 1690, SALES: -1990, DISCOUNTS: 300, COMMISSION: 0}
    assert_books_clean()


def test_migration_0020_runs_again_and_payments_still_book_the_discount(rt, shop):
    # given the schema as migrated (qx_confirm_payment replaced on PostgreSQL)
    from models.migrations import m0020_promotions

    # when migration 0020 runs once more (a deploy that re-applies it)
    with db.connection_context(), db.atomic():
        m0020_promotions.up(db)
    # then nothing breaks and a discounted payment books its three legs
    order = discounted(sku_with_keys(shop, keys=1, price=1990), discount=90)
    with db.connection_context():
        assert payments.confirm_payment(order.no, "tx-m", 1900, source="test") == (order.id, Outcome.PAID)
    assert postings_of(f"payment:{order.no}") == {CASH: 1900, SALES: -1990, DISCOUNTS: 90}
