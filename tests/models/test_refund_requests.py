"""Shopper refund requests (models/refund_requests.py, issue 14): who may ask, once per order,
the policy that grants a request at once (nothing used) or queues it for an operator, and the
operators' decisions."""

from __future__ import annotations

import pytest

from models import refund_requests
from models.db import db
from models.errors import Conflict, InvalidInput, InvalidState, NotFound
from models.events import Event
from models.notifications import Notification
from models.refund_requests import OrderFacts, RefundRequest, RequestState, automatic
from tests.factories import buyer, paid, reveal_keys, unpaid

UNREVEALED, NEVER = "unrevealed", "never"


def ask(order_id: int, openid: str = "buyer-1", reason: object = "买错了", policy: str = UNREVEALED) -> RefundRequest:
    with db.connection_context():
        return refund_requests.request_refund(order_id, buyer(openid).id, reason, policy)


def requests_count() -> int:
    with db.connection_context():
        return RefundRequest.select().count()


# -- the policy, as one rule --------------------------------------------------------------------

@pytest.mark.parametrize(("facts", "policy", "granted"), [
    (OrderFacts(revealed=0, topup=None, group_member=None), UNREVEALED, True),  # keys never seen
    (OrderFacts(revealed=1, topup=None, group_member=None), UNREVEALED, False),  # a key was seen
    (OrderFacts(revealed=0, topup="failed", group_member=None), UNREVEALED, True),  # failed top-up
    (OrderFacts(revealed=0, topup="pending", group_member=None), UNREVEALED, True),  # not credited yet
    (OrderFacts(revealed=0, topup="succeeded", group_member=None), UNREVEALED, False),  # credited
    (OrderFacts(revealed=0, topup=None, group_member="paid"), UNREVEALED, True),  # team not formed
    (OrderFacts(revealed=1, topup=None, group_member="delivered"), UNREVEALED, False),  # after success
    (OrderFacts(revealed=0, topup=None, group_member=None), NEVER, False),  # every request queued
    (OrderFacts(revealed=0, topup="failed", group_member="paid"), NEVER, False),
])
def test_the_policy_grants_only_what_was_never_used(facts, policy, granted):  # noqa: ANN001
    # given the facts of an order and a policy, when the rule decides, then
    assert automatic(facts, policy) is granted


# -- asking -------------------------------------------------------------------------------------

def test_a_paid_order_whose_keys_were_never_revealed_is_granted_at_once(rt, shop):
    # given a paid order (not even delivered yet)
    order = paid(shop.card_sku(keys=2), dispatch=False)
    # when its buyer asks for a refund
    found = ask(order.id, reason="  不想要了  \n 谢谢 ")
    # then the request is granted by the policy, the reason kept tidy, and an event written
    assert (found.state, found.automatic, found.decided_by) == (RequestState.REFUNDING, True, "policy")
    assert found.reason == "不想要了 谢谢"
    with db.connection_context():
        assert Event.select().where(Event.topic == "refund.requested").count() == 1


def test_a_delivered_order_with_a_revealed_key_waits_for_an_operator(rt, shop, run_jobs):
    # given a delivered order whose key its buyer has looked at
    order = paid(shop.card_sku(keys=2))
    run_jobs()
    assert reveal_keys(order.id) == 1
    # when its buyer asks for a refund, then it is pending in the queue, not automatic
    found = ask(order.id)
    assert (found.state, found.automatic) == (RequestState.PENDING, False)
    with db.connection_context():
        queued = refund_requests.pending_queue()
    assert [(r.order_id, r.revealed, r.reason) for r in queued] == [(order.id, 1, "买错了")]


def test_under_the_never_policy_even_an_unused_order_is_queued(rt, shop):
    order = paid(shop.card_sku(keys=1), dispatch=False)
    found = ask(order.id, policy=NEVER)
    assert (found.state, found.automatic) == (RequestState.PENDING, False)


def test_a_second_request_on_the_same_order_is_refused(rt, shop):
    # given a request on an order
    order = paid(shop.card_sku(keys=1), dispatch=False)
    ask(order.id)
    # when the buyer asks again, then 409 refund_already_requested and still one request
    with pytest.raises(Conflict) as refused:
        ask(order.id, reason="再问一次")
    assert refused.value.code == "refund_already_requested"
    assert requests_count() == 1


def test_someone_elses_order_is_not_found(rt, shop):
    order = paid(shop.card_sku(keys=1), "alice", dispatch=False)
    with pytest.raises(NotFound) as refused:
        ask(order.id, "bob")
    assert refused.value.code == "order_not_found"
    with pytest.raises(NotFound):
        ask(10**9, "bob")
    assert requests_count() == 0


def test_an_unpaid_order_is_not_refundable(rt, shop):
    order = unpaid(shop.card_sku(keys=1))
    with pytest.raises(InvalidState) as refused:
        ask(order.id)
    assert refused.value.code == "order_not_refundable"
    assert requests_count() == 0


@pytest.mark.parametrize("reason", ["", "   ", "x" * 201, "坏\x07了", None, 12])
def test_a_bad_reason_is_refused_and_nothing_written(rt, shop, reason):  # noqa: ANN001
    order = paid(shop.card_sku(keys=1), dispatch=False)
    with pytest.raises(InvalidInput) as refused:
        ask(order.id, reason=reason)
    assert refused.value.code == "invalid_reason"
    assert requests_count() == 0


def test_the_buyer_reads_the_state_of_their_request_only(rt, shop):
    order = paid(shop.card_sku(keys=1), "alice", dispatch=False)
    with db.connection_context():
        with pytest.raises(NotFound) as none_yet:
            refund_requests.of_order(order.id, buyer("alice").id)
        assert none_yet.value.code == "refund_request_not_found"
    ask(order.id, "alice")
    with db.connection_context():
        assert refund_requests.of_order(order.id, buyer("alice").id).state == RequestState.REFUNDING
        with pytest.raises(NotFound) as other:
            refund_requests.of_order(order.id, buyer("bob").id)
        assert other.value.code == "order_not_found"


# -- operators ----------------------------------------------------------------------------------

def test_an_operator_approves_or_rejects_a_pending_request_once(rt, shop, run_jobs):
    # given two delivered orders with revealed keys, each with a pending request
    sku = shop.card_sku(keys=4)
    first, second = paid(sku, "a"), paid(sku, "b")
    run_jobs()
    reveal_keys(first.id), reveal_keys(second.id)
    one, two = ask(first.id, "a"), ask(second.id, "b")
    with db.connection_context():
        # when one is approved and the other rejected with a note
        approved = refund_requests.approve(one.id, "operator:ann", "同意", ["wxa_subscribe"])
        rejected = refund_requests.reject(two.id, "operator:ann", "卡密已使用", ["wxa_subscribe"])
        # then the states move, the decisions are recorded, and the rejection's notice is waiting
        assert (approved.state, approved.decided_by) == (RequestState.REFUNDING, "operator:ann")
        assert (rejected.state, rejected.decision_note) == (RequestState.REJECTED, "卡密已使用")
        notice = Notification.get(Notification.key == f"refund_request:{two.id}:rejected:wxa_subscribe")
        assert (notice.state, notice.user_id, notice.order_id) == ("pending", buyer("b").id, 0)
        # and a second decision on either is refused
        for decide in (refund_requests.approve, refund_requests.reject):
            for request_id in (one.id, two.id):
                with pytest.raises(InvalidState) as refused:
                    decide(request_id, "operator:bob", "again")
                assert refused.value.code == "request_not_pending"
        assert refund_requests.pending_queue() == []
        with pytest.raises(NotFound):
            refund_requests.approve(10**9, "operator:ann")
