"""Operator actions on an order, through the order page's forms over real HTTP: each runs the
service the CLI runs, once per form, with a reason, and lands in the audit log; a refused action
(the role, the service, a missing reason) answers 4xx and changes nothing."""

from __future__ import annotations

import re

import pytest

from models import settlement
from models.audit import AuditEntry
from models.db import db
from models.delivery import Voucher
from models.events import Event
from models.notifications import Notification
from models.orders import Order
from models.payments import Payment, Refund
from models.settlement import Settlement
from models.vault import CardKey, KeyState
from tests.factories import api_buy, creator, paid, paid_order, sent_to, unpaid


def page(order_id: int) -> str:
    return f"/admin/orders/{order_id}"


def act(a, order_id: int, action: str, reason: str = "客户来电核实", **form):  # noqa: ANN001, ANN003, ANN201
    """Submit an action's form as the order page renders it (CSRF and one-time token included)."""
    return a.post(f"{page(order_id)}/{action}", {"reason": reason, **form}, page=page(order_id))


def audited(action: str, order_id: int) -> list[AuditEntry]:
    with db.connection_context():
        return list(AuditEntry.select().where((AuditEntry.action == action)
                                              & (AuditEntry.object == f"order:{order_id}")))


def order(order_id: int) -> Order:
    with db.connection_context():
        return Order.get_by_id(order_id)


def events(order_id: int, topic: str) -> list[Event]:
    with db.connection_context():
        return list(Event.select().where((Event.subject == f"order:{order_id}") & (Event.topic == topic)))


def flashed(a, order_id: int) -> str:  # noqa: ANN001
    return a.get(page(order_id)).data.decode()


def test_mark_paid_records_the_payment_and_delivers(admin, shop, run_jobs):
    """Given an unpaid order, when finance marks it paid with a bank reference and a reason, then
    the payment is recorded as an operator's, the order is delivered by the worker, and the audit
    log names who did it, with the reason, before and after."""
    o = unpaid(shop.card_sku(keys=1), "mark-paid-buyer")
    a = admin("finance")
    answer = act(a, o.id, "mark_paid", "线下转账已到账", reference="BANK-20240301-01")
    assert answer.status_code == 302 and answer.headers["Location"].endswith(page(o.id))
    assert "已标记为已付款" in flashed(a, o.id)
    assert order(o.id).status == "paid"
    run_jobs()
    assert order(o.id).status == "delivered"
    with db.connection_context():
        payment = Payment.get(Payment.order == o.id)
        assert (payment.provider, payment.transaction_id) == ("operator", "BANK-20240301-01")
    assert [e.actor for e in events(o.id, "order.paid")] == ["operator"]
    (row,) = audited("order.mark_paid", o.id)
    assert (row.reason, row.operator_name, row.role) == ("线下转账已到账", a.op.name, "finance")
    assert row.before["status"] == "pending" and row.after["status"] == "paid"


def test_a_payment_reference_of_another_order_is_refused(admin, shop):
    """Given an order marked paid with a bank reference, when another order is marked paid with
    the same reference, then the page answers 409 with the reason and that order stays unpaid."""
    sku = shop.card_sku(keys=2)
    first, second = unpaid(sku, "ref-buyer-1"), unpaid(sku, "ref-buyer-2")
    a = admin("finance")
    assert act(a, first.id, "mark_paid", "到账", reference="BANK-SAME").status_code == 302
    answer = act(a, second.id, "mark_paid", "到账", reference="BANK-SAME")
    assert answer.status_code == 409 and "这个付款凭证号已经记在另一个订单上" in answer.data.decode()
    assert order(second.id).status == "pending" and not audited("order.mark_paid", second.id)


def test_redeliver_delivers_a_stuck_order_now(admin, shop):
    """Given a paid order whose delivery never ran and a failed notice, when support redelivers
    it, then it is delivered at once, its failed notice is pending again, and it is audited."""
    o = paid(shop.card_sku(keys=1), "redeliver-buyer", dispatch=False)
    with db.connection_context():
        Notification.create(key=f"shipped:{o.id}:wxa_subscribe", order_id=o.id, user=o.user_id,
                            channel="wxa_subscribe", kind="shipped", state="failed")
    a = admin("support")
    assert act(a, o.id, "redeliver", "买家说没收到").status_code == 302
    assert order(o.id).status == "delivered"
    with db.connection_context():
        assert Voucher.select().where(Voucher.order == o.id).count() == 1
        assert Notification.get(Notification.kind == "shipped").state == "pending"
    assert "已重新发货" in flashed(a, o.id)
    assert [r.reason for r in audited("order.redeliver", o.id)] == ["买家说没收到"]


def test_resend_sends_the_delivery_notice_again(admin, shop, run_jobs, fake_wechat):
    """Given a delivered order whose notice was sent, when support resends it, then the buyer
    gets the notice a second time, and the action is audited."""
    o = paid(shop.card_sku(keys=1), "resend-buyer-openid")
    run_jobs()
    assert len(sent_to(fake_wechat, "resend-buyer-openid")) == 1
    a = admin("support")
    assert act(a, o.id, "resend", "买家删了消息").status_code == 302
    run_jobs()
    assert len(sent_to(fake_wechat, "resend-buyer-openid")) == 2
    assert len(audited("order.resend", o.id)) == 1


def test_a_refund_returns_the_unrevealed_key_which_is_sold_again(admin, client, login, shop, fake_pay, run_jobs):
    """Given a card-key SKU with one key, bought and delivered through the mini-program and not
    revealed, when finance refunds it through the order page, then WeChat Pay refunds it in full,
    the key goes back to the pool, and the next buyer is sold and delivered that same key."""
    sku = shop.card_sku(keys=1, code="ONEKEY")
    first = api_buy(client, fake_pay, login("refund-first"), sku)
    run_jobs()
    assert order(first["id"]).status == "delivered"
    a = admin("finance")
    answer = act(a, first["id"], "refund", "卡密无法使用")
    assert answer.status_code == 302
    assert "已退款 19.90 元" in flashed(a, first["id"])
    assert [r.refund_fee for r in fake_pay.refunds if r.out_trade_no == first["no"]] == [1990]
    assert order(first["id"]).status == "refunded"
    with db.connection_context():
        key = CardKey.get(CardKey.sku == sku.id)
        assert key.state == KeyState.AVAILABLE and key.order_id is None
        assert Refund.get(Refund.order == first["id"]).actor == f"operator:{a.op.name}"
    (row,) = audited("order.refund", first["id"])
    assert row.reason == "卡密无法使用" and row.after["status"] == "refunded"
    # the next buyer gets that key
    auth = login("refund-second")
    second = api_buy(client, fake_pay, auth, sku)
    run_jobs()
    assert order(second["id"]).status == "delivered"
    with db.connection_context():
        assert Voucher.get(Voucher.order == second["id"]).card_key_id == key.id
    (voucher,) = client.get("/api/v1/vouchers", headers=auth).json["vouchers"]
    assert client.get(f"/api/v1/vouchers/{voucher['id']}", headers=auth).json["secret"] == "ONEKEY-KEY-000001-SECRET"


def bought(client, login, fake_pay, run_jobs, shop, openid: str) -> Order:  # noqa: ANN001
    """An order bought and paid through the mini-program and WeChat Pay (refundable there), delivered."""
    made = api_buy(client, fake_pay, login(openid), shop.card_sku(keys=1))
    run_jobs()
    return order(made["id"])


def test_a_double_submitted_refund_acts_once(admin, client, login, shop, fake_pay, run_jobs):
    """Given a delivered order, when the refund form is submitted twice with the same one-time
    token (two tabs, a browser retry), then WeChat Pay is asked once, one audit row is written,
    and the second answer says it was already done."""
    o = bought(client, login, fake_pay, run_jobs, shop, "double-refund")
    a = admin("finance")
    token = re.search(rb'name="action_token" value="([^"]+)"', a.get(page(o.id)).data).group(1).decode()
    for _ in range(2):
        answer = a.post(f"{page(o.id)}/refund", {"reason": "重复提交测试", "action_token": token}, page=page(o.id))
        assert answer.status_code == 302
    assert "没有重复执行" in flashed(a, o.id)
    assert len([r for r in fake_pay.refunds if r.out_trade_no == o.no]) == 1
    assert len(audited("order.refund", o.id)) == 1
    with db.connection_context():
        assert Refund.select().count() == 1


def test_support_may_not_refund(admin, shop, fake_pay, run_jobs):
    """Given a delivered order, when support posts the refund form anyway, then it answers 403
    and nothing changes: no refund, no money back, no audit row."""
    o = paid(shop.card_sku(keys=1), "support-refund")
    run_jobs()
    a = admin("support")
    assert b'id="action-refund"' not in a.get(page(o.id)).data
    answer = act(a, o.id, "refund", "想退款")
    assert answer.status_code == 403
    assert order(o.id).status == "delivered"
    with db.connection_context():
        assert Refund.select().count() == 0
        assert not AuditEntry.select().where(AuditEntry.action.startswith("order.")).exists()
    assert not [r for r in fake_pay.refunds if r.out_trade_no == o.no]


@pytest.mark.parametrize("action", ["mark_paid", "redeliver", "resend", "refund", "hold", "release", "fraud"])
def test_readonly_may_take_no_action(admin, shop, action):
    """Given a paid order, when a readonly operator posts any action, then it answers 403 and the
    order, its events and the audit log are unchanged."""
    o = paid(shop.card_sku(keys=1), f"readonly-{action}", dispatch=False)
    before = (order(o.id).status, order(o.id).risk_hold, len(events(o.id, "order.risk_hold")))
    answer = act(admin("readonly"), o.id, action)
    assert answer.status_code == 403
    assert (order(o.id).status, order(o.id).risk_hold, len(events(o.id, "order.risk_hold"))) == before
    with db.connection_context():
        assert not AuditEntry.select().where(AuditEntry.action.startswith("order.")).exists()


def test_an_action_the_service_refuses_is_shown_and_changes_nothing(admin, shop):
    """Given an unpaid order, when finance refunds it, then the page answers 409 with the reason
    and nothing is written (no refund, no audit row); without a reason the form answers 400."""
    o = unpaid(shop.card_sku(keys=1), "refused-refund")
    a = admin("finance")
    answer = act(a, o.id, "refund", "试一下")
    assert answer.status_code == 409
    assert "只有已付款的订单可以退款" in answer.data.decode() and 'id="order-title"' in answer.data.decode()
    answer = act(a, o.id, "hold", " ")
    assert answer.status_code == 400 and "请填写原因" in answer.data.decode()
    assert order(o.id).status == "pending" and not order(o.id).risk_hold
    with db.connection_context():
        assert Refund.select().count() == 0
        assert not AuditEntry.select().where(AuditEntry.action.startswith("order.")).exists()


def test_a_refund_wechat_pay_fails_can_be_sent_again(admin, client, login, shop, fake_pay, run_jobs):
    """Given WeChat Pay failing the next refund, when finance refunds, then the page says so with
    a 4xx, nothing is audited and the order is not refunded; the same form sent again refunds."""
    o = bought(client, login, fake_pay, run_jobs, shop, "gateway-refund")
    fake_pay.fail_next(1, http_status=503, endpoint="refund")
    a = admin("finance")
    token = re.search(rb'name="action_token" value="([^"]+)"', a.get(page(o.id)).data).group(1).decode()
    answer = a.post(f"{page(o.id)}/refund", {"reason": "重试测试", "action_token": token}, page=page(o.id))
    assert answer.status_code == 409 and "微信支付暂时无法完成退款" in answer.data.decode()
    assert order(o.id).status == "delivered" and not audited("order.refund", o.id)
    answer = a.post(f"{page(o.id)}/refund", {"reason": "重试测试", "action_token": token}, page=page(o.id))
    assert answer.status_code == 302 and order(o.id).status == "refunded"
    assert len(audited("order.refund", o.id)) == 1


def test_hold_and_release(admin, shop):
    """Given a paid order, when support holds it and then releases it, then its risk flag follows,
    each change is an event and an audit row with its reason."""
    o = paid(shop.card_sku(keys=1), "hold-buyer", dispatch=False)
    a = admin("support")
    assert act(a, o.id, "hold", "疑似盗刷").status_code == 302
    assert order(o.id).risk_hold
    assert b'id="action-release"' in a.get(page(o.id)).data
    assert act(a, o.id, "release", "核实无误").status_code == 302
    assert not order(o.id).risk_hold
    assert [e.payload["reason"] for e in events(o.id, "order.risk_hold")] == ["疑似盗刷"]
    assert [e.payload["reason"] for e in events(o.id, "order.risk_released")] == ["核实无误"]
    assert [r.reason for r in audited("order.hold", o.id)] == ["疑似盗刷"]
    assert [r.reason for r in audited("order.release", o.id)] == ["核实无误"]


def test_fraud_holds_the_order_and_takes_its_commission_back(admin, shop, rt):
    """Given a settled order through a creator (commission pending), when finance flags it as
    fraud, then the order is held, its commission reversed, and the action audited."""
    seller = creator("fraud-seller")
    order_id = paid_order(seller, shop.card_sku(keys=1))
    with db.connection_context():
        settlement.settle(rt.payout)
        assert Settlement.get_by_id(order_id).state == "pending"
    a = admin("finance")
    assert act(a, order_id, "fraud", "同一设备批量下单").status_code == 302
    assert order(order_id).risk_hold
    with db.connection_context():
        assert Settlement.get_by_id(order_id).state == "reversed"
    assert "撤回佣金 1 笔" in flashed(a, order_id)
    assert [r.reason for r in audited("order.fraud", order_id)] == ["同一设备批量下单"]


def test_the_audit_log_shows_the_actions(admin, shop):
    """Given actions taken on an order, when the owner opens the audit log, then each is listed
    with its object and reason."""
    o = paid(shop.card_sku(keys=1), "audit-buyer", dispatch=False)
    a = admin("owner")
    act(a, o.id, "hold", "审计日志测试甲")
    act(a, o.id, "release", "审计日志测试乙")
    log = a.get("/admin/audit/").data.decode()
    for text in ("order.hold", "order.release", f"order:{o.id}", "审计日志测试甲", "审计日志测试乙"):
        assert text in log
