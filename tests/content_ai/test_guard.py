"""The output guards: a generated text may state only the numbers and promises of its facts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from content_ai import guard

FACTS = ("[sku:IQY-GOLD-1M] 爱奇艺黄金会员 月卡 现价 ¥19.90，有货，付款后自动发货。"
         "[rule:refund] 未发货的订单 7 天内可申请退款。")


def test_numbers_are_read_in_every_form():
    # given a text with digits, money, a percentage, a date and Chinese numerals
    text = "¥19.90，3.5%，2026-12-06，七天，二十四小时，1,000 元，两件"
    # when its numbers are read
    found = guard.numbers_in(text)
    # then each is there once, in canonical form
    assert found == {"19.9", "3.5", "2026", "12", "6", "7", "24", "1000", "2"}


def test_words_with_numerals_are_not_numbers():
    assert guard.numbers_in("一起来看看，一定要试一下，万一呢，统一发货") == set()


def test_an_answer_restating_the_facts_passes():
    # given an answer that restates the price (in another form) and the rules
    answer = "爱奇艺黄金会员月卡 19.9 元，付款后自动发货；未发货七天内可以退款。[sku:IQY-GOLD-1M]"
    # when it is checked against the facts
    verdict = guard.check(answer, FACTS)
    # then it passes
    assert verdict.ok and bool(verdict)


@pytest.mark.parametrize(("answer", "invented"), [
    ("月卡现在只要 9.9 元！", ("9.9",)),
    ("下单后 24 小时内发货", ("24",)),
    ("优惠期到 12 月 31 日", ("12", "31")),
    ("三十天无理由退款", ("30",)),
])
def test_a_number_the_facts_do_not_state_fails(answer, invented):
    verdict = guard.check(answer, FACTS)
    assert not verdict.ok
    assert set(invented) <= set(verdict.invented)


@pytest.mark.parametrize(("answer", "kind"), [
    ("现在下单打八折", "discount"),
    ("我们保证一定能用", "guarantee"),
])
def test_a_promise_the_facts_do_not_make_fails(answer, kind):
    verdict = guard.check(answer, FACTS)
    assert kind in verdict.promises


def test_a_promise_the_facts_make_passes():
    assert guard.check("付款后立即发货，未发货可以退款", FACTS + " 付款后立即自动发货").ok


def test_allowed_numbers_are_the_callers_own():
    # given a script timing the caller put in itself
    text = "【0-15秒】爱奇艺黄金会员月卡 19.9 元"
    assert not guard.check(text, FACTS).ok
    assert guard.check(text, FACTS, allowed=[0, 15]).ok


def test_citations_are_not_read_as_numbers():
    assert guard.check("详见 [faq:12] 与 [sku:MOBILE-50]", "").ok


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=99))
def test_an_amount_in_the_facts_passes_in_any_spelling(yuan, fen):
    # given an amount the facts state as ¥x.yy
    facts = f"价格 ¥{yuan}.{fen:02d}"
    # when an answer restates it without trailing zeros
    restated = f"{yuan}.{fen:02d}".rstrip("0").rstrip(".")
    # then it passes, and one fen more does not
    assert guard.check(f"只要 {restated} 元", facts).ok
    other = f"{yuan}.{fen + 1:02d}" if fen < 99 else f"{yuan + 1}.00"
    assert not guard.check(f"只要 {other} 元", facts).ok
