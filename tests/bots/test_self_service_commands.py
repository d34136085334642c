"""Shopper self-service in chat (bots/commands/self_service.py, issue 14): cancel an unpaid order
and ask for a refund through the conversation core, politely refused on every bad input; a
refund the policy grants is made by the refund sweep (a bot cannot queue jobs)."""

from __future__ import annotations

from collections import Counter

import pytest

from models.db import db
from models.orders import Order
from models.refund_requests import RefundRequest
from models.vault import CardKey
from tasks import refund_requests as refund_jobs
from tests.bots.conftest import say, text_of
from tests.factories import chat_user, reveal_keys, unpaid, wechat_paid


@pytest.fixture
def ann(rt):  # noqa: ANN001, ANN201
    return chat_user("console", "ann")


def status(order_id: int) -> str:
    with db.connection_context():
        return Order.get_by_id(order_id).status


def keys(sku_id: int) -> Counter:
    with db.connection_context():
        return Counter(k.state for k in CardKey.select().where(CardKey.sku == sku_id))


def test_cancel_by_number_or_id_releases_the_order(ann, shop):
    # given two unpaid orders of Ann's
    sku = shop.card_sku(keys=2)
    first, second = unpaid(sku, user=ann), unpaid(sku, user=ann)
    # when she cancels one by its number and the other by its id (lower-case, with /cancel)
    by_no = text_of(say(f"取消订单 {first.no.lower()}", who="ann"))
    by_id = text_of(say(f"/cancel {second.id}", who="ann"))
    # then both are cancelled and both keys are for sale again
    assert first.no in by_no and "已取消" in by_no and second.no in by_id
    assert status(first.id) == status(second.id) == "cancelled"
    assert keys(sku.id) == {"available": 2}
    # and cancelling again is answered the same way
    assert "已取消" in text_of(say(f"取消订单 {first.no}", who="ann"))


@pytest.mark.parametrize(("typed", "expected"), [
    ("取消订单", "请发送：取消订单 订单号"),
    ("/cancel", "请发送：取消订单 订单号"),
    ("取消订单 ??!", "不是订单号"),
    ("取消订单 QX0000000000NONE", "没有找到你的这个订单"),
    ("取消订单 99999999", "没有找到你的这个订单"),
])
def test_bad_cancel_input_gets_a_polite_reply(ann, shop, typed, expected):  # noqa: ANN001
    order = unpaid(shop.card_sku(keys=1), user=ann)
    assert expected in text_of(say(typed, who="ann"))
    assert status(order.id) == "pending"


def test_someone_elses_or_a_paid_order_is_not_cancelled(ann, shop, rt, app, fake_pay):  # noqa: ANN001
    sku = shop.card_sku(keys=2)
    bobs = unpaid(sku, "bob")
    assert "没有找到你的这个订单" in text_of(say(f"取消订单 {bobs.no}", who="ann"))
    assert status(bobs.id) == "pending"
    mine = unpaid(sku, user=ann)
    wechat_paid(mine, rt.gateway, fake_pay)
    assert "不能取消" in text_of(say(f"取消订单 {mine.no}", who="ann"))
    assert status(mine.id) == "paid"


def test_commands_about_orders_are_refused_in_a_group(ann, shop):
    order = unpaid(shop.card_sku(keys=1), user=ann)
    replies = text_of(say(f"/cancel {order.no}", who="ann", chat="group-1"))
    assert replies and order.no not in replies
    assert status(order.id) == "pending"


def test_a_refund_of_an_unused_order_is_granted_and_made_by_the_sweep(ann, shop, rt, app, fake_pay, run_jobs):
    # given Ann's paid and delivered order, key never opened
    sku = shop.card_sku(keys=1)
    order = unpaid(sku, user=ann)
    wechat_paid(order, rt.gateway, fake_pay)
    run_jobs()
    assert status(order.id) == "delivered"
    # when she asks for a refund in the chat
    reply = text_of(say(f"退款 {order.no} 买错了，不需要", who="ann"))
    # then the policy grants it and tells her so; the sweep (every minute) makes the refund
    assert "退款申请已通过" in reply and order.no in reply
    with db.connection_context():
        found = RefundRequest.get(RefundRequest.order_id == order.id)
        assert (found.state, found.reason) == ("refunding", "买错了,不需要")  # as the chat normalised it (NFKC)
    assert refund_jobs.sweep()["refunded"] == 1
    assert status(order.id) == "refunded" and keys(sku.id) == {"available": 1}
    with db.connection_context():
        assert RefundRequest.get_by_id(found.id).state == "refunded"
    # and asking again is answered politely
    assert "已经申请过退款" in text_of(say(f"/refund {order.no} 再来一次", who="ann"))


def test_a_refund_of_an_order_with_a_seen_key_is_queued(ann, shop, rt, app, fake_pay, run_jobs):
    order = unpaid(shop.card_sku(keys=1), user=ann)
    wechat_paid(order, rt.gateway, fake_pay)
    run_jobs()
    reveal_keys(order.id)
    reply = text_of(say(f"/refund {order.id} 卡密无法使用", who="ann"))
    assert "退款申请已提交" in reply
    with db.connection_context():
        assert RefundRequest.get(RefundRequest.order_id == order.id).state == "pending"


@pytest.mark.parametrize(("typed", "expected"), [
    ("退款", "请发送：退款 订单号 原因"),
    ("退款 QX123456", "请发送：退款 订单号 原因"),
    ("/refund ?? 原因", "不是订单号"),
    ("退款 99999999 不要了", "没有找到你的这个订单"),
])
def test_bad_refund_input_gets_a_polite_reply(ann, typed, expected):  # noqa: ANN001
    assert expected in text_of(say(typed, who="ann"))
    with db.connection_context():
        assert RefundRequest.select().count() == 0


def test_a_refund_of_an_unpaid_order_or_with_a_long_reason_is_refused(ann, shop):
    order = unpaid(shop.card_sku(keys=1), user=ann)
    assert "只有已付款的订单" in text_of(say(f"退款 {order.no} 不要了", who="ann"))
    assert "最多 200 个字" in text_of(say(f"退款 {order.no} {'长' * 201}", who="ann"))
    with db.connection_context():
        assert RefundRequest.select().count() == 0
