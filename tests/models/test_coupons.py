"""The coupon redemption life cycle (models/coupons.py) through the order service
(models/checkout.py), expiry (orders.expire_due) and payments: reserved with the order,
consumed when paid, released when it expires, taken back by a late payment when there is room,
returned on refund; every refusal writes and reserves nothing; counters move exactly once."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import coupons, orders, payments
from models.catalog import Kind, create_sku
from models.coupons import Coupon, CouponGrant, CouponRedemption, GrantState, RedemptionState
from models.db import db, execute_batch, utcnow
from models.errors import Conflict, DomainError, InvalidInput, NotFound
from models.orders import Order, Status
from models.payments import Outcome
from tests.factories import buyer, coupon, coupon_state, granted, named, paid, with_coupons


def expire_all() -> int:
    with db.connection_context():
        return orders.expire_due(utcnow() + dt.timedelta(hours=1))


def pay(order: Order, rt=None, fake_pay=None) -> Outcome:  # noqa: ANN001
    """Confirm the order's payment as the notify endpoint does; with `rt` and `fake_pay`, the
    WeChat Pay order is created and paid at the fake first (so it can be refunded there)."""
    with db.connection_context():
        row = Order.get(Order.id == order.id)
        if rt is not None:
            payments.prepare_payment(row, rt.gateway, row.user.openid, "10.0.0.1")
            fake_pay.mark_paid(row.no)
        return payments.confirm_payment(row.no, f"tx-{row.no}", row.amount_fen, source="test")[1]


def counters(made: Coupon) -> tuple[int, int]:
    with db.connection_context():
        row = Coupon.get_by_id(made.id)
        return row.uses, row.spent_fen


def states(order_id: int) -> tuple[list[str], list[str]]:
    with db.connection_context():
        return ([r.state for r in CouponRedemption.select().where(CouponRedemption.order_id == order_id)],
                [g.state for g in CouponGrant.select().where(CouponGrant.order_id == order_id)])


def test_an_order_with_a_coupon_pays_less_and_holds_the_use(rt, shop):  # noqa: ANN001
    # given 满30减5 and a 19.90 SKU, Ann orders two
    sku = shop.card_sku(keys=3, price=1_990)
    made = coupon(threshold_fen=3_000, amount_off_fen=500)
    ann = buyer("ann")
    grant = granted(made, ann)[0]
    order = with_coupons(sku, [grant], ann, quantity=2)
    # then she pays 34.80, the discount is on the order, the use and budget are taken
    with db.connection_context():
        row = Order.get_by_id(order.id)
        assert (row.amount_fen, row.discount_fen, row.creator_discount_fen) == (3_480, 500, 0)
    assert counters(made) == (1, 500)
    assert states(order.id) == (["reserved"], ["reserved"])


def test_a_creator_coupon_applies_only_through_its_creators_link_and_is_funded_by_them(rt, shop):  # noqa: ANN001
    # given a creator's 10% coupon
    sku = shop.card_sku(keys=3, price=5_000)
    star, other = named("star"), named("other")
    made = coupon(kind="percent_off", amount_off_fen=0, percent_bp=1_000, owner_creator_id=star.id)
    ann = buyer("ann")
    grant = granted(made, ann)[0]
    before = coupon_state()
    # when Ann uses it without a link or through another creator, then refused, nothing written
    for ref in (None, other.code):
        with pytest.raises(Conflict) as refused:
            with_coupons(sku, [grant], ann, ref=ref)
        assert refused.value.code == "coupon_wrong_seller"
    assert coupon_state() == before
    # when she orders through the creator's link, then the creator funds the whole discount
    order = with_coupons(sku, [grant], ann, ref=star.code)
    with db.connection_context():
        row = Order.get_by_id(order.id)
        assert (row.amount_fen, row.discount_fen, row.creator_discount_fen) == (4_500, 500, 500)
        assert CouponRedemption.get(CouponRedemption.order_id == order.id).creator_id == star.id


def test_a_fixed_price_coupon_rewrites_the_unit_price(rt, shop):  # noqa: ANN001
    sku = shop.card_sku(keys=3, price=1_990)
    made = coupon(kind="fixed_price", amount_off_fen=0, fixed_price_fen=990, scope="sku", include_skus=(sku.id,))
    ann = buyer("ann")
    order = with_coupons(sku, granted(made, ann), ann, quantity=2)
    with db.connection_context():
        row = Order.get_by_id(order.id)
        assert (row.unit_price_fen, row.amount_fen, row.discount_fen) == (990, 1_980, 2_000)


def test_a_product_coupon_covers_its_skus_except_the_excluded_one(rt, shop):  # noqa: ANN001
    # given a product with two SKUs, the coupon covering the product but excluding the second
    first = shop.card_sku(keys=3, price=2_000, code="PROD-1")
    with db.connection_context():
        second = create_sku(first.product, code="PROD-2", name="第二款", kind=Kind.SERIAL, supply_price_fen=500,
                            retail_price_fen=2_000, stock=5)
    made = coupon(scope="product", include_products=(first.product_id,), exclude_skus=(second.id,))
    ann = buyer("ann")
    one, two = granted(made, ann)[0], granted(made, ann, key="second")[0]
    # then it applies to the first SKU, and not to the excluded one
    assert with_coupons(first, [one], ann).discount_fen == 500
    with pytest.raises(InvalidInput):
        with_coupons(second, [two], ann)


def _refusal_cases(shop, ann, bob):  # noqa: ANN001, ANN202
    """(grants, ref, error, code) for each bad use; the SKU is `shop`'s A."""
    sku_b = shop.card_sku(keys=1, code="REF-B")
    bobs = granted(coupon(), bob)[0]
    scoped = granted(coupon(scope="sku", include_skus=(sku_b.id,)), ann)[0]
    excluded = granted(coupon(exclude_skus=(sku_b.id,)), ann)[0]  # covers A (only B is excluded)
    threshold = granted(coupon(threshold_fen=100_000, amount_off_fen=1_000), ann)[0]
    plain_1, plain_2 = granted(coupon(), ann)[0], granted(coupon(stackable=True), ann)[0]
    used_up = coupon(max_uses=1)
    carl = buyer("carl")
    with_coupons("REF-A", granted(used_up, carl), carl)
    exhausted = granted(used_up, ann)[0]
    budget = coupon(budget_fen=600, amount_off_fen=500)
    with_coupons("REF-A", granted(budget, carl), carl)
    over_budget = granted(budget, ann)[0]
    first_only = granted(coupon(new_buyers_only=True), ann)[0]
    withdrawn = granted(coupon(), ann)[0]
    with db.connection_context():
        Coupon.update(active=False).where(Coupon.id == CouponGrant.get_by_id(withdrawn).coupon_id).execute()
    return [
        ([bobs], NotFound, "coupon_not_found"),  # someone else's: indistinguishable from none
        ([987_654], NotFound, "coupon_not_found"),
        ([scoped], InvalidInput, "coupon_out_of_scope"),
        ([threshold], InvalidInput, "coupon_not_applicable"),
        ([plain_1, plain_2], InvalidInput, "coupon_not_stackable"),
        ([exhausted], Conflict, "coupon_exhausted"),
        ([over_budget], Conflict, "coupon_exhausted"),
        ([withdrawn], Conflict, "coupon_inactive"),
        ([excluded, bobs], NotFound, "coupon_not_found"),
    ], first_only, sku_b, excluded


def test_every_bad_coupon_is_refused_and_nothing_is_written_or_reserved(rt, shop):  # noqa: ANN001
    # given a SKU with 2 keys and Ann's and Bob's coupons of every bad sort
    sku = shop.card_sku(keys=5, price=2_000, code="REF-A")
    ann, bob = buyer("ann"), buyer("bob")
    cases, first_only, sku_b, excluded = _refusal_cases(shop, ann, bob)
    paid(sku, "ann")  # Ann has bought before
    cases.append(([first_only], Conflict, "coupon_new_buyers_only"))
    before = coupon_state()
    for grants, error, code in cases:
        # when Ann orders with them, then each is refused with its code
        with pytest.raises(error) as refused:
            with_coupons(sku, grants, ann)
        assert refused.value.code == code, (grants, code)
    # and nothing at all was written (no order, grant, redemption, counter) and no stock held
    assert coupon_state() == before
    with pytest.raises(InvalidInput) as excluded_sku:
        with_coupons(sku_b, [excluded], ann)
    assert excluded_sku.value.code == "coupon_out_of_scope" and coupon_state() == before


def test_a_grant_held_by_one_order_cannot_be_used_by_another(rt, shop):  # noqa: ANN001
    sku = shop.card_sku(keys=5, price=2_000)
    ann = buyer("ann")
    grant = granted(coupon(), ann)[0]
    with_coupons(sku, [grant], ann)
    before = coupon_state()
    with pytest.raises(Conflict) as refused:
        with_coupons(sku, [grant], ann)
    assert refused.value.code == "coupon_in_use" and coupon_state() == before


def test_a_released_coupon_is_redeemed_by_someone_else_and_a_late_payment_is_refunded(rt, shop):  # noqa: ANN001
    # given a coupon with one use, reserved by Ann's order
    sku = shop.card_sku(keys=5, price=2_000)
    made = coupon(max_uses=1, amount_off_fen=700)
    ann, bob = buyer("ann"), buyer("bob")
    ann_grant, bob_grant = granted(made, ann, bob)
    ann_order = with_coupons(sku, [ann_grant], ann)
    # and Bob cannot use his while Ann's order holds the only use
    with pytest.raises(Conflict):
        with_coupons(sku, [bob_grant], bob)
    # when Ann's order expires
    assert expire_all() == 1
    # then its coupon is released once: the use is back, Ann's grant is available again
    assert states(ann_order.id) == (["released"], [])
    assert counters(made) == (0, 0)
    with db.connection_context():
        assert CouponGrant.get_by_id(ann_grant).state == GrantState.AVAILABLE
        assert coupons.released([ann_order.id]) == 0  # exactly once
    assert counters(made) == (0, 0)
    # when Bob now orders with it and pays, then his coupon is consumed and his grant used
    bob_order = with_coupons(sku, [bob_grant], bob)
    assert pay(bob_order) == Outcome.PAID
    assert states(bob_order.id) == (["consumed"], ["used"])
    assert counters(made) == (1, 700)
    # when Ann's payment arrives late, then there is no room: refunded, nothing consumed twice
    assert pay(ann_order) == Outcome.REFUND
    assert states(ann_order.id) == (["released"], [])
    assert counters(made) == (1, 700)


def test_a_late_payment_takes_its_coupon_back_when_there_is_room(rt, shop):  # noqa: ANN001
    sku = shop.card_sku(keys=5, price=2_000)
    made = coupon(max_uses=5)
    ann = buyer("ann")
    grant = granted(made, ann)[0]
    order = with_coupons(sku, [grant], ann)
    expire_all()
    assert counters(made) == (0, 0)
    # when the payment arrives after the expiry, then the order is revived with its coupon
    assert pay(order) == Outcome.PAID
    assert states(order.id) == (["consumed"], ["used"])
    assert counters(made) == (1, 500)


def test_reclaim_fails_without_changing_anything_when_the_grant_is_held_elsewhere(rt, shop):  # noqa: ANN001
    sku = shop.card_sku(keys=5, price=2_000)
    made = coupon()
    ann = buyer("ann")
    grant = granted(made, ann)[0]
    first = with_coupons(sku, [grant], ann)
    expire_all()
    second = with_coupons(sku, [grant], ann)  # the grant, released, is now held by a second order
    before = coupon_state()
    with db.connection_context(), db.atomic():
        assert coupons.reclaim(first.id) is False
    assert coupon_state() == before and states(second.id) == (["reserved"], ["reserved"])


@pytest.mark.parametrize("restore", [True, False])
def test_a_refund_gives_the_use_back_and_the_grant_only_when_restored(rt, shop, fake_pay, restore):  # noqa: ANN001
    # given Ann's paid order with a coupon
    sku = shop.card_sku(keys=5, price=2_000)
    made = coupon(max_uses=1)
    ann = buyer("ann")
    grant = granted(made, ann)[0]
    order = with_coupons(sku, [grant], ann)
    assert pay(order, rt, fake_pay) == Outcome.PAID
    # when it is refunded (twice: a retried job)
    with db.connection_context():
        payments.refund_order(order.id, rt.gateway, actor="operator:test", reason="test", restore_coupons=restore)
        with db.atomic():
            coupons.on_refund(order.id, restore=restore)
        # then the redemption is returned once, the use and budget are back
        assert [r.state for r in CouponRedemption.select()] == [RedemptionState.RETURNED]
        assert CouponGrant.get_by_id(grant).state == (GrantState.AVAILABLE if restore else GrantState.USED)
    assert counters(made) == (0, 0)
    # and with the grant restored Ann can use it again
    if restore:
        with_coupons(sku, [grant], ann)
        assert counters(made) == (1, 500)


def test_paid_statements_consume_only_what_is_reserved(rt, shop):  # noqa: ANN001
    sku = shop.card_sku(keys=5, price=2_000)
    ann = buyer("ann")
    order = with_coupons(sku, granted(coupon(), ann), ann)
    with db.connection_context(), db.atomic():
        execute_batch(coupons.paid_statements(order.id))
        execute_batch(coupons.paid_statements(order.id))
    assert states(order.id) == (["consumed"], ["used"])


# ---- property: the counters always equal the live redemptions -----------------------------------

STEPS = st.lists(st.tuples(st.sampled_from(["order", "expire", "pay", "refund"]), st.integers(0, 3)),
                 min_size=1, max_size=12)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_uses_and_budget_always_equal_the_reserved_and_consumed_redemptions(rt, shop, fake_pay, steps):  # noqa: ANN001
    # given a coupon limited to 2 uses and 1500 fen of budget, and four buyers
    from tests.conftest import _truncate

    _truncate()
    sku = shop.card_sku(keys=20, price=2_000)
    made = coupon(max_uses=2, budget_fen=1_500, amount_off_fen=600, per_user_limit=1)
    people = [buyer(f"p{i}") for i in range(4)]
    grants = granted(made, *people)
    placed: list[Order] = []
    for action, who in steps:
        # when a random sequence of orders, expiries, payments and refunds runs
        try:
            if action == "order":
                placed.append(with_coupons(sku, [grants[who]], people[who]))
            elif action == "expire":
                expire_all()
            elif placed and action == "pay":
                pay(placed[who % len(placed)], rt, fake_pay)
            elif placed and action == "refund":
                target = placed[who % len(placed)]
                with db.connection_context():
                    if Order.get_by_id(target.id).status == Status.PAID:
                        payments.refund_order(target.id, rt.gateway, actor="test", reason="p")
        except DomainError:
            pass
        # then the counters are exactly what the live redemptions add up to, within the limits
        with db.connection_context():
            live = list(CouponRedemption.select().where(CouponRedemption.state.in_(
                [RedemptionState.RESERVED.value, RedemptionState.CONSUMED.value])))
            row = Coupon.get_by_id(made.id)
            assert (row.uses, row.spent_fen) == (len(live), sum(r.discount_fen for r in live))
            assert row.uses <= 2 and row.spent_fen <= 1_500
            held = CouponGrant.select().where(CouponGrant.state.in_([GrantState.RESERVED.value, GrantState.USED.value]))
            assert held.count() >= len(live)
