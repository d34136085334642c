"""The pure payout rule (`commission.split`): rounding down, the margin cap handed out in the
order markup -> sale -> team1 -> team2, at most two uplines, nothing on a zero or negative
margin. No database."""

from __future__ import annotations

import pytest

from models.commission import MAX_UPLINES, OrderFacts, Split, seller_rate, split


def facts(amount: int = 10_000, cost: int = 5_000, markup: int = 0, seller: int = 1000,
          up1: int = 500, up2: int = 300) -> OrderFacts:
    return OrderFacts(amount_fen=amount, markup_fen=markup, cost_fen=cost, seller_rate_bp=seller,
                      upline1_rate_bp=up1, upline2_rate_bp=up2)


def test_plain_order_pays_the_seller_and_both_uplines_their_rates():
    # given a 100-yuan order at cost 50 yuan, 10% / 5% / 3%, a 90% margin cap (45 yuan)
    # when it is split
    got = split(facts(), cap_bp=9000)
    # then every line is its rate of the retail amount, well inside the cap
    assert got == Split(markup=0, sale=1000, team1=500, team2=300)
    assert got.total == 1800


def test_each_line_is_rounded_down_to_whole_fen():
    # given 9.99 yuan: 10% is 99.9 fen, 5% 49.95, 3% 29.97
    got = split(facts(amount=999, cost=0), cap_bp=10_000)
    # then every fraction stays with the platform
    assert got == Split(markup=0, sale=99, team1=49, team2=29)


def test_cap_is_rounded_down_too():
    # given a 1-fen margin and a 90% cap: 0.9 fen
    got = split(facts(amount=1000, cost=999), cap_bp=9000)
    # then nothing can be paid
    assert got == Split(0, 0, 0, 0)


@pytest.mark.parametrize(("cost", "expected"), [
    # margin 2000, cap 90% = 1800: markup 1000, then sale 800 of 900 (retail 9000 x 10%)
    (8000, Split(markup=1000, sale=800, team1=0, team2=0)),
    # margin 2400, cap 2160: markup 1000, sale 900, team1 260 of 450
    (7600, Split(markup=1000, sale=900, team1=260, team2=0)),
    # margin 2800, cap 2520: markup, sale, team1 in full (2350), team2 170 of 270
    (7200, Split(markup=1000, sale=900, team1=450, team2=170)),
    # margin 500, cap 450: the markup alone is cut
    (9500, Split(markup=450, sale=0, team1=0, team2=0)),
])
def test_cap_is_handed_out_markup_then_sale_then_team1_then_team2(cost, expected):
    # given a 100-yuan order carrying a 10-yuan markup (retail part 90 yuan)
    got = split(facts(amount=10_000, markup=1000, cost=cost), cap_bp=9000)
    # then the cap is filled in priority order and never exceeded
    assert got == expected
    assert got.total <= (10_000 - cost) * 9000 // 10_000


@pytest.mark.parametrize(("depth", "team1", "team2"), [(0, 0, 0), (1, 500, 0), (2, 500, 300)])
def test_upline_depth_limits_who_is_paid(depth, team1, team2):
    got = split(facts(), cap_bp=9000, upline_depth=depth)
    assert (got.sale, got.team1, got.team2) == (1000, team1, team2)


@pytest.mark.parametrize("depth", [-1, MAX_UPLINES + 1, 5])
def test_more_than_two_uplines_is_refused(depth):
    with pytest.raises(ValueError, match="upline_depth"):
        split(facts(), cap_bp=9000, upline_depth=depth)


@pytest.mark.parametrize("cap", [-1, 10_001])
def test_cap_outside_0_to_100_percent_is_refused(cap):
    with pytest.raises(ValueError, match="cap_bp"):
        split(facts(), cap_bp=cap)


@pytest.mark.parametrize("cost", [10_000, 10_001, 25_000])
def test_zero_or_negative_margin_pays_nothing(cost):
    # given an order sold at or below cost, even with a markup
    got = split(facts(amount=10_000, markup=500, cost=cost), cap_bp=10_000)
    # then nobody earns anything
    assert got == Split(0, 0, 0, 0)


def test_zero_cap_pays_nothing():
    assert split(facts(markup=100), cap_bp=0) == Split(0, 0, 0, 0)


def test_markup_beyond_the_amount_and_negative_rates_are_clamped():
    # given nonsense inputs: a markup larger than the amount, negative rates
    got = split(OrderFacts(amount_fen=1000, markup_fen=5000, cost_fen=0, seller_rate_bp=-100,
                           upline1_rate_bp=-5, upline2_rate_bp=-1), cap_bp=10_000)
    # then the markup is at most the amount, and negative rates pay nothing (never take)
    assert got == Split(markup=1000, sale=0, team1=0, team2=0)


def test_seller_rate_is_the_higher_of_the_sku_and_the_level():
    assert seller_rate(1000, 2500) == 2500
    assert seller_rate(3000, 1000) == 3000
    assert seller_rate(1200, 0) == 1200
