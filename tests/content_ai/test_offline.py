"""content_ai offline: scripts filled from the creator and product, marked as ads, stable per
topic; answers from the catalog, the level table and the settings, or None."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import content_ai
from content_ai import Facts, ProductInfo
from models.db import db

CARD = ProductInfo(name="视频会员月卡", price_fen=1990, sku="VIP-M", title="视频会员",
                   link="pages/product/index?sku=VIP-M")
FACTS = Facts(products=[CARD, ProductInfo(name="话费充值50元", price_fen=4980, sku="TOP-50")],
              withdraw_min_fen=10_000, withdraw_fee_bp=100, payout_delay_h=24, refund_window_days=7,
              levels=[("一星", 1000), ("二星", 1200), ("千星", 2500)])


@pytest.mark.parametrize("topic, marker", [
    ("", "短视频脚本 · 好物推荐"), ("直播带货", "直播话术"), ("朋友圈文案", "【广告】"), ("群发通知", "群友专享"),
])
def test_script_kinds_are_marked_as_ads_and_name_creator_and_product(topic, marker):
    script = content_ai.generate_script(topic, creator_name="小美", product=CARD)
    assert script.startswith("【广告】") and marker in script
    assert "「视频会员月卡」" in script
    assert "¥19.90" in script and CARD.link in script


def test_script_without_product_and_deterministic():
    a = content_ai.generate_script("夏日好物", creator_name="阿杰")
    assert a == content_ai.generate_script("夏日好物", creator_name="阿杰")
    assert "阿杰" in a and "¥" not in a


@given(topic=st.text(max_size=500), name=st.text(max_size=200))
def test_script_never_fails_and_bounds_user_text(topic, name):
    script = content_ai.generate_script(topic, creator_name=name)
    assert script.startswith("【广告】")
    assert len(script) < 1200
    assert "\x00" not in script


@pytest.mark.parametrize("question, expected", [
    ("视频会员月卡多少钱？", "「视频会员月卡」现价 ¥19.90"),
    ("vip-m 还有吗", "¥19.90"),
    ("付款了怎么没收到卡密", "我的卡券"),
    ("可以退款吗", "退款"),
    ("提现手续费多少", "满 ¥100.00 可提现，手续费 1%"),
    ("怎么加入赚佣金", "一星10%、二星12%、千星25%"),
    ("在哪里下单", "热门商品：视频会员月卡 ¥19.90"),
    ("找人工客服", "帮助"),
])
def test_answers_are_filled_from_facts(question, expected):
    found = content_ai.answer(question, facts=FACTS)
    assert found and expected in found


@pytest.mark.parametrize("question", ["哈哈", "今天天气不错", "", "x", "😀" * 50])
def test_small_talk_gets_no_answer(question):
    assert content_ai.answer(question, facts=FACTS) is None


def test_answer_joining_never_promises_pay_for_recruiting():
    found = content_ai.answer("邀请人有钱吗", facts=FACTS)
    assert "真实成交" in found and "免费" in found


def test_load_facts_reads_catalog_levels_and_settings(rt, shop, settings):
    shop.card_sku(keys=1, price=2990, code="FACT-1")
    with db.connection_context():
        facts = content_ai.load_facts(settings)
        found = content_ai.answer("FACT-1 价格", settings=settings)
    assert [p.sku for p in facts.products] == ["FACT-1"]
    assert facts.withdraw_min_fen == settings.WITHDRAW_MIN_FEN
    assert facts.levels[0] == ("一星", 1000)
    assert "¥29.90" in found
