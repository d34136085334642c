"""The yuan formatter (models/money.py) and the withdrawal quote (models/withdrawals.quote): the
examples and, property-tested, their invariants (exact to the fen, sign in front, parse_yuan
reads back what yuan writes; fee + net == amount, the fee never above the rate)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bots.commands.parsing import MAX_YUAN_DIGITS, parse_yuan
from models.money import rmb, yuan
from models.withdrawals import Quote, WithdrawPolicy, fee_bp_of, quote

fen = st.integers(min_value=-(10**15), max_value=10**15)


@pytest.mark.parametrize("amount, text, marked", [
    (0, "0.00", "¥0.00"), (5, "0.05", "¥0.05"), (100, "1.00", "¥1.00"), (1990, "19.90", "¥19.90"),
    (-150, "-1.50", "-¥1.50"), (-5, "-0.05", "-¥0.05"), (123_456_789, "1234567.89", "¥1234567.89"),
])
def test_yuan_examples(amount, text, marked):
    assert yuan(amount) == text
    assert rmb(amount) == marked


@given(fen)
def test_yuan_is_exact_and_signed_in_front(amount):
    text = yuan(amount)
    sign, _, digits = text.rpartition("-")
    whole, cents = digits.split(".")
    assert sign == "" and text.startswith("-") == (amount < 0)
    assert len(cents) == 2 and whole == str(int(whole))  # no leading zeros, two decimals
    assert (-1 if amount < 0 else 1) * (int(whole) * 100 + int(cents)) == amount
    assert rmb(amount) == ("-¥" + text[1:] if amount < 0 else "¥" + text)


@given(st.integers(min_value=0, max_value=10 ** (MAX_YUAN_DIGITS + 2) - 1))
def test_parse_yuan_reads_back_what_yuan_writes(amount):
    assert parse_yuan(yuan(amount)) == amount
    assert parse_yuan(rmb(amount)) == amount


def test_quote_examples():
    assert quote(20_000, 100) == Quote(amount=20_000, fee=200, net=19_800)  # 1% of 200 yuan
    assert quote(10_099, 100) == Quote(amount=10_099, fee=100, net=9_999)  # 100.99 fen -> 100
    assert quote(15_000, 0) == Quote(amount=15_000, fee=0, net=15_000)  # credit, or a 0% perk


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=5000))
def test_quote_net_plus_fee_is_the_amount_and_the_fee_never_exceeds_the_rate(amount, fee_bp):
    q = quote(amount, fee_bp)
    assert q.amount == amount and q.fee + q.net == amount
    assert 0 <= q.fee <= amount and q.net >= 0
    assert q.fee * 10_000 <= amount * fee_bp < (q.fee + 1) * 10_000  # rounded down, by less than a fen


def test_the_level_perk_replaces_the_policy_fee_even_when_it_is_zero():
    policy = WithdrawPolicy(fee_bp=100)
    assert fee_bp_of(None, policy) == 100
    assert fee_bp_of(50, policy) == 50
    assert fee_bp_of(0, policy) == 0
