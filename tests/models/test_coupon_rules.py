"""The coupon rule (models/coupon_rules.py): each kind, stacking order, the 1-fen floor, scope
with exclusions; hypothesis properties for the money invariants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.coupon_rules import (
    AMOUNT_OFF,
    FIXED_PRICE,
    PERCENT_OFF,
    CouponFacts,
    OrderFacts,
    applies,
    can_stack,
    discount,
)

FULL_REDUCTION = CouponFacts(AMOUNT_OFF, threshold_fen=10_000, amount_off_fen=1_000)  # 满100减10
FIFTEEN_OFF = CouponFacts(PERCENT_OFF, percent_bp=1_500, cap_fen=2_000)  # 15% off, at most 20 yuan


def test_full_reduction_applies_from_its_threshold():
    # given 满100减10, when the order reaches 100 yuan, then 10 yuan off; just under it, nothing
    assert discount([FULL_REDUCTION], OrderFacts(5_000, 2)).parts == (1_000,)
    assert discount([FULL_REDUCTION], OrderFacts(9_999, 1)).discount_fen == 0


def test_percent_off_rounds_down_and_respects_its_cap():
    # given 15% off capped at 20 yuan
    # when the order is 99.99 yuan, then floor(1499.85) = 1499 fen
    assert discount([FIFTEEN_OFF], OrderFacts(9_999, 1)).discount_fen == 1_499
    # when the order is 1000 yuan, then the cap: 20 yuan
    assert discount([FIFTEEN_OFF], OrderFacts(100_000, 1)).discount_fen == 2_000
    # and without a cap, 15% of everything
    assert discount([CouponFacts(PERCENT_OFF, percent_bp=1_500)], OrderFacts(100_000, 1)).discount_fen == 15_000


def test_fixed_price_sets_the_unit_price_and_never_raises_it():
    # given a fixed price of 9.90 on a 19.90 SKU, three units
    got = discount([CouponFacts(FIXED_PRICE, fixed_price_fen=990)], OrderFacts(1_990, 3))
    # then each unit costs 9.90: 30 yuan off and the unit price is rewritten
    assert (got.discount_fen, got.unit_price_fen) == (3_000, 990)
    # and a "fixed price" above the price changes nothing
    above = discount([CouponFacts(FIXED_PRICE, fixed_price_fen=2_990)], OrderFacts(1_990, 1))
    assert (above.discount_fen, above.unit_price_fen) == (0, None)


def test_stacked_coupons_apply_fixed_then_amount_then_percent_on_what_is_left():
    # given (in this order) a percent coupon, a 满减 and a fixed price on a 200-yuan unit
    pct = CouponFacts(PERCENT_OFF, percent_bp=1_000, stackable=True)
    off = CouponFacts(AMOUNT_OFF, threshold_fen=10_000, amount_off_fen=1_000, stackable=True)
    fixed = CouponFacts(FIXED_PRICE, fixed_price_fen=15_000, stackable=True)
    got = discount([pct, off, fixed], OrderFacts(20_000, 1))
    # then fixed 200 -> 150 (50 off), then 满100减10 on 150 -> 140, then 10% of 140 = 14
    assert got.parts == (1_400, 1_000, 5_000)
    assert got.discount_fen == 7_400 and got.unit_price_fen == 15_000


def test_a_threshold_is_judged_on_what_earlier_coupons_left():
    # given a fixed price that brings a 120-yuan unit to 90, then 满100减10
    got = discount([CouponFacts(FIXED_PRICE, fixed_price_fen=9_000, stackable=True),
                    CouponFacts(AMOUNT_OFF, threshold_fen=10_000, amount_off_fen=1_000, stackable=True)],
                   OrderFacts(12_000, 1))
    # then the 满减 no longer applies
    assert got.parts == (3_000, 0)


def test_at_least_one_fen_stays_payable():
    # given a 50-yuan-off coupon on a 10-yuan order, and 100% off is impossible (9999 bp max)
    assert discount([CouponFacts(AMOUNT_OFF, amount_off_fen=5_000)], OrderFacts(1_000, 1)).discount_fen == 999
    assert discount([CouponFacts(PERCENT_OFF, percent_bp=9_999)], OrderFacts(1, 1)).discount_fen == 0
    # and a free order (a prize) gets nothing off
    assert discount([CouponFacts(AMOUNT_OFF, amount_off_fen=100)], OrderFacts(0, 1)).discount_fen == 0


def test_stacking_needs_every_coupon_stackable_and_different():
    assert can_stack([1], [False])
    assert can_stack([1, 2], [True, True])
    assert not can_stack([1, 2], [True, False])
    assert not can_stack([1, 1], [True, True])


@pytest.mark.parametrize(("scope", "targets", "covered"), [
    ("shelf", [], True),
    ("shelf", [("product", 7, True)], False),  # the product is excluded
    ("shelf", [("sku", 3, True)], False),  # the SKU is excluded
    ("shelf", [("sku", 4, True)], True),  # another SKU is excluded
    ("product", [("product", 7, False)], True),
    ("product", [("product", 8, False)], False),
    ("product", [("product", 7, False), ("sku", 3, True)], False),  # the exclusion wins
    ("sku", [("sku", 3, False)], True),
    ("sku", [("sku", 4, False)], False),
    ("sku", [("product", 7, False)], False),  # a product listed on a SKU-scoped coupon covers nothing
])
def test_scope_covers_the_listed_targets_and_exclusions_win(scope, targets, covered):  # noqa: ANN001
    # given SKU 3 of product 7, then coverage is as listed
    assert applies(scope, targets, sku_id=3, product_id=7) is covered


# ---- properties --------------------------------------------------------------------------------

coupon_facts = st.one_of(
    st.builds(CouponFacts, kind=st.just(AMOUNT_OFF), threshold_fen=st.integers(0, 10**6),
              amount_off_fen=st.integers(1, 10**6), stackable=st.just(True)),
    st.builds(CouponFacts, kind=st.just(PERCENT_OFF), percent_bp=st.integers(1, 9_999),
              cap_fen=st.none() | st.integers(1, 10**6), stackable=st.just(True)),
    st.builds(CouponFacts, kind=st.just(FIXED_PRICE), fixed_price_fen=st.integers(1, 10**6),
              stackable=st.just(True)),
)
orders = st.builds(OrderFacts, unit_price_fen=st.integers(0, 10**6), quantity=st.integers(1, 20))


@given(st.lists(coupon_facts, min_size=1, max_size=3), orders)
def test_the_discount_stays_within_zero_and_the_amount_less_one_fen(facts, order):  # noqa: ANN001
    got = discount(facts, order)
    assert 0 <= got.discount_fen <= max(order.amount_fen - 1, 0)
    assert got.discount_fen == sum(got.parts) and all(p >= 0 for p in got.parts)
    if got.unit_price_fen is not None:
        assert 1 <= got.unit_price_fen < order.unit_price_fen


@given(st.integers(1, 9_999), st.none() | st.integers(1, 10**6), orders)
def test_a_percent_coupon_never_exceeds_its_cap_or_its_rate(bp, cap, order):  # noqa: ANN001
    got = discount([CouponFacts(PERCENT_OFF, percent_bp=bp, cap_fen=cap)], order).discount_fen
    assert got <= order.amount_fen * bp // 10_000
    assert cap is None or got <= cap


@given(coupon_facts, st.integers(0, 10**5), st.integers(1, 20), st.integers(1, 10**5))
def test_a_dearer_order_never_gets_less_off_from_an_amount_or_percent_coupon(c, unit, qty, more):  # noqa: ANN001
    # monotone in the order's amount (fixed prices are per unit, left out)
    if c.kind == FIXED_PRICE:
        return
    assert discount([c], OrderFacts(unit + more, qty)).discount_fen >= discount([c], OrderFacts(unit, qty)).discount_fen


@given(st.integers(0, 10**5), st.integers(1, 10**5), orders)
def test_a_bigger_coupon_never_takes_less_off(off, extra, order):  # noqa: ANN001
    small = discount([CouponFacts(AMOUNT_OFF, amount_off_fen=max(off, 1))], order).discount_fen
    big = discount([CouponFacts(AMOUNT_OFF, amount_off_fen=max(off, 1) + extra)], order).discount_fen
    assert big >= small
