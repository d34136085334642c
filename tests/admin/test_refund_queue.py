"""The refund queue (miniapp_api/admin/refunds.py, issue 14): shoppers' refund requests the policy
left to an operator, approved or rejected over real HTTP with a note, once per form, audited; the
approved refund made by the job through the fake WeChat Pay, the shopper's notice recorded."""

from __future__ import annotations

import pytest

from models import refund_requests
from models.audit import AuditEntry
from models.db import db
from models.notifications import Notification
from models.orders import Order
from models.refund_requests import RefundRequest
from tests.factories import buyer, reveal_keys, unpaid, wechat_paid

QUEUE = "/admin/orders/refund-requests/"


@pytest.fixture
def pending(rt, app, shop, fake_pay, run_jobs):  # noqa: ANN001, ANN201
    """Two delivered orders whose keys the buyers opened, each with a pending refund request:
    (request ids, order ids)."""
    sku = shop.card_sku(keys=4, price=2990)
    made = []
    for who in ("buyer-alice-0001", "buyer-bob-0002"):
        order = unpaid(sku, who)
        wechat_paid(order, rt.gateway, fake_pay)
        made.append(order)
    run_jobs()
    requests = []
    for order in made:
        reveal_keys(order.id)
        with db.connection_context():
            requests.append(refund_requests.request_refund(order.id, order.user_id, "卡密无法使用", "unrevealed").id)
    return requests, [o.id for o in made]


def decide(a, request_id: int, decision: str, note: str = "核实后处理", **kw):  # noqa: ANN001, ANN003, ANN201
    return a.post(f"{QUEUE}{request_id}/{decision}", {"reason": note}, page=QUEUE, **kw)


def state(request_id: int) -> str:
    with db.connection_context():
        return RefundRequest.get_by_id(request_id).state


def audited(action: str) -> list[AuditEntry]:
    with db.connection_context():
        return list(AuditEntry.select().where(AuditEntry.action == action))


def test_the_queue_lists_pending_requests_with_what_an_operator_needs(admin, pending):
    # given two pending requests; when support (masked personal data) opens the queue
    (first, second), (o1, o2) = pending
    page = admin("support").get(QUEUE).data.decode()
    # then both are listed with order, masked buyer, amount, reason and that keys were revealed
    with db.connection_context():
        no = Order.get_by_id(o1).no
    assert f'data-request="{first}"' in page and f'data-request="{second}"' in page
    assert no in page and "¥29.90" in page and "卡密无法使用" in page and 'data-revealed="1"' in page
    assert "buyer-alice-0001" not in page and "buy…01" in page
    # and support may not decide: no forms, and a POST is refused
    assert "批准退款" not in page
    assert decide(admin("support"), first, "approve").status_code == 403
    assert state(first) == "pending"


def test_approving_refunds_the_order_once_and_audits_it(admin, pending, run_jobs, fake_pay):
    (first, _second), (o1, _o2) = pending
    finance = admin("finance")
    # when finance approves with a note
    answer = decide(finance, first, "approve", "客户核实，同意退款")
    # then the request is granted, the job refunds the order through WeChat Pay, and it is audited
    assert answer.status_code == 302
    assert state(first) == "refunding"
    run_jobs()
    assert state(first) == "refunded"
    with db.connection_context():
        order = Order.get_by_id(o1)
        assert order.status == "refunded"
        assert Notification.select().where(Notification.key.startswith(f"refund_request:{first}:refunded:")).exists()
    assert fake_pay.order(order.no).refunded_fee == order.amount_fen
    [entry] = audited("refund_request.approve")
    assert (entry.object, entry.reason, entry.operator_name) == (f"order:{o1}", "客户核实，同意退款", finance.op.name)
    # and the page shows it no more; a second decision on it is refused with a message
    assert f'data-request="{first}"' not in finance.get(QUEUE).data.decode()
    again = decide(finance, first, "reject")
    assert again.status_code == 409 and "已经处理过了" in again.data.decode()


def test_rejecting_keeps_the_money_and_tells_the_shopper(admin, pending):
    (_first, second), (_o1, o2) = pending
    answer = decide(admin("owner"), second, "reject", "卡密已被使用")
    assert answer.status_code == 302 and state(second) == "rejected"
    with db.connection_context():
        assert Order.get_by_id(o2).status == "delivered"
        found = RefundRequest.get_by_id(second)
        assert found.decision_note == "卡密已被使用"
        assert Notification.select().where(
            (Notification.key == f"refund_request:{second}:rejected:wxa_subscribe")
            & (Notification.user == buyer("buyer-bob-0002").id)).exists()
    assert len(audited("refund_request.reject")) == 1


def test_a_form_sent_twice_decides_once(admin, pending):
    (first, _second), _orders = pending
    finance = admin("finance")
    form = {"reason": "同意退款", "action_token": "t" * 24 + "replayed"}
    assert finance.post(f"{QUEUE}{first}/approve", form, page=QUEUE).status_code == 302
    assert finance.post(f"{QUEUE}{first}/approve", form, page=QUEUE).status_code == 302  # duplicate: flashed
    assert len(audited("refund_request.approve")) == 1 and state(first) == "refunding"


def test_bad_decisions_change_nothing(admin, pending):
    (first, _second), _orders = pending
    finance = admin("finance")
    # no note
    assert decide(finance, first, "approve", note="").status_code == 400
    # an unknown decision or request
    assert decide(finance, first, "maybe").status_code == 404
    assert decide(finance, 10**9, "approve").status_code == 404
    # without the CSRF token
    assert finance.client.post(f"{QUEUE}{first}/approve", data={"reason": "同意"}).status_code == 400
    # a read-only operator
    assert decide(admin("readonly"), first, "approve").status_code == 403
    assert state(first) == "pending" and audited("refund_request.approve") == []
    # a bad page cursor is a 400, not a 500
    assert finance.get(f"{QUEUE}?before=abc").status_code == 400
