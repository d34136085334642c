"""The operators' daily risk digest: its figures, once a day from the configured hour, through
the one sender to the operators' Telegram group; off without a chat."""

from __future__ import annotations

import datetime as dt

import pytest

from models.chat import OutboundMessage
from models.db import db, utcnow
from models.money import rmb
from models.settlement import Settlement
from tasks import risk_digest
from tasks.periodic import PERIODIC, resolve
from tests.books import settle
from tests.factories import chain, held_case, make_sku, paid_order

GROUP = "-100123456"
# 2026-12-07 02:30 UTC is 10:30 in Beijing; 00:30 UTC is 08:30
MORNING = dt.datetime(2026, 12, 7, 2, 30)
EARLY = dt.datetime(2026, 12, 7, 0, 30)


@pytest.fixture
def digest_chat(rt, monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(
        update={"RISK_DIGEST_CHAT": f"telegram:{GROUP}", "RISK_DIGEST_HOUR": 9}))
    return rt


def _digests() -> list[OutboundMessage]:
    with db.connection_context():
        return list(OutboundMessage.select().where(OutboundMessage.key.startswith("risk:digest:")))


def test_the_digest_counts_cases_holds_and_money_held_and_goes_out_once_a_day(digest_chat, shop, telegram):
    # given two creators with held cases: three settled orders held
    a, b = chain(1, 1)
    sku = make_sku(shop)
    orders_a = [paid_order(a, sku) for _ in range(2)]
    order_b = paid_order(b, sku)
    settle(digest_chat)
    held_case(a, orders_a)
    held_case(b, [order_b])
    with db.connection_context():
        held_fen = sum(s.payout_fen for s in Settlement.select())
    # when the job runs before the hour, nothing is written
    assert risk_digest.send_digest(EARLY)["reason"] == "not_yet"
    assert _digests() == []
    # when it runs in the morning (the cases opened "now": inside the last 24 hours of now)
    result = risk_digest.send_digest(utcnow().replace(hour=2, minute=30))
    # then one message goes to the operators' group with the day's figures
    (row,) = _digests()
    assert row.chat_id == GROUP and row.chat_kind == "group" and row.platform == "telegram"
    text = row.payload["text"]
    assert result["sent"] and (result["new_cases"], result["open_cases"], result["held_orders"]) == (2, 2, 3)
    assert "待处理案件：2 件" in text and "冻结订单：3 笔" in text
    assert f"冻结佣金：{rmb(held_fen)}" in text and held_fen > 0
    # and a second run the same day writes nothing more
    again = risk_digest.send_digest(utcnow().replace(hour=3))
    assert again["sent"] is False and len(_digests()) == 1
    # and the sender delivers it to the group
    digest_chat.sender.drain("telegram")
    assert [s.text for s in telegram.sent_to(GROUP)] == [text]


def test_the_digest_is_off_without_a_chat_and_its_job_is_periodic(rt):
    assert rt.settings.RISK_DIGEST_CHAT == ""
    assert risk_digest.send_digest(MORNING) == {"sent": False, "reason": "off"}
    assert _digests() == []
    entry = dict(PERIODIC)["tasks.risk_digest.send_digest"]
    assert entry <= 3600 and resolve("tasks.risk_digest.send_digest") is risk_digest.send_digest


def test_the_digest_text():
    text = risk_digest.digest_text("2026-12-07", {"new_cases": 4, "open_cases": 7, "held_orders": 12,
                                                  "held_fen": 123_456})
    assert text.splitlines() == ["风控日报 2026-12-07", "过去 24 小时新增案件：4 件", "待处理案件：7 件",
                                 "冻结订单：12 笔", "冻结佣金：¥1234.56", "请在管理后台「风控」中处理。"]
