"""The refund job of shoppers' refund requests (tasks/refund_requests.py, issue 14): a refund WeChat
Pay refuses for a while is retried until it goes through, exactly once, and the sweep finishes
requests whose job was lost."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, example, given
from hypothesis import settings as h_settings
from hypothesis import strategies as st

from models import refund_requests
from models.db import db
from models.ledger import unbalanced_transactions
from models.orders import Order
from models.payments import GatewayError
from models.refund_requests import RefundRequest
from tasks import refund_requests as refund_jobs
from tests.factories import reveal_keys, unpaid, wechat_paid

_SEQ = itertools.count(1)


def granted(rt, fake_pay, shop, run_jobs, openid: str = "buyer-1"):  # noqa: ANN001, ANN201
    """A paid order (through WeChat Pay), delivered, with a refund request the policy granted."""
    order = unpaid(shop.card_sku(keys=1), openid)
    wechat_paid(order, rt.gateway, fake_pay)
    run_jobs()
    with db.connection_context():
        found = refund_requests.request_refund(order.id, order.user_id, "不要了", "unrevealed")
    assert found.state == "refunding"
    return order, found.id


def refunds_at_wechat(fake_pay, order_no: str) -> int:  # noqa: ANN001
    return sum(1 for r in fake_pay.refunds if r.out_trade_no == order_no)


def test_a_refused_refund_is_retried_until_it_goes_through_once(rt, app, shop, fake_pay, run_jobs):
    # given a granted request, and WeChat Pay failing the next two refund calls
    order, request_id = granted(rt, fake_pay, shop, run_jobs)
    fake_pay.fail_next(2, err_code="SYSTEMERROR", endpoint="refund")
    # when the job runs (RQ retries it on its schedule) and then the sweep runs too
    refund_jobs.enqueue_refund(request_id)
    run_jobs()
    refund_jobs.sweep()
    # then the order is refunded once at WeChat Pay, the request is refunded and the books balance
    with db.connection_context():
        assert Order.get_by_id(order.id).status == "refunded"
        assert RefundRequest.get_by_id(request_id).state == "refunded"
        assert unbalanced_transactions() == []
    assert refunds_at_wechat(fake_pay, order.no) == 1


def test_the_sweep_finishes_requests_whose_job_was_lost_and_leaves_others(rt, app, shop, fake_pay, run_jobs):
    # given two granted requests whose jobs were never queued (Redis was down), the second
    # order's refund failing once at WeChat Pay
    first, first_id = granted(rt, fake_pay, shop, run_jobs, "a")
    second, second_id = granted(rt, fake_pay, shop, run_jobs, "b")
    fake_pay.fail_next(1, err_code="SYSTEMERROR", endpoint="refund")
    # when the sweep runs twice
    one = refund_jobs.sweep()
    two = refund_jobs.sweep()
    # then one failure did not stop the other, and the next sweep finished it; each refunded once
    assert (one["refunded"], one["failed"]) == (1, 1) and (two["refunded"], two["failed"]) == (1, 0)
    with db.connection_context():
        assert {RefundRequest.get_by_id(i).state for i in (first_id, second_id)} == {"refunded"}
    assert refunds_at_wechat(fake_pay, first.no) == refunds_at_wechat(fake_pay, second.no) == 1
    assert refund_jobs.sweep() == {"refunded": 0, "failed": 0, "notices": 0}


def test_a_key_revealed_after_asking_sends_the_request_to_the_operators(rt, app, shop, fake_pay, run_jobs):
    # given a granted request on an order whose key the buyer then opens (the app still shows it)
    order, request_id = granted(rt, fake_pay, shop, run_jobs)
    reveal_keys(order.id)
    # when the refund job runs
    refund_jobs.enqueue_refund(request_id)
    run_jobs()
    # then nothing is refunded: the request waits in the operators' queue, no longer automatic
    with db.connection_context():
        found = RefundRequest.get_by_id(request_id)
        assert (found.state, found.automatic) == ("pending", False)
        assert Order.get_by_id(order.id).status == "delivered"
        assert [r.id for r in refund_requests.pending_queue()] == [request_id]
    assert refunds_at_wechat(fake_pay, order.no) == 0


def _use_up_refund_failures(gateway) -> None:  # noqa: ANN001
    """Refund an order WeChat Pay does not know until it says so: the failures injected but not
    met by a refund are used up (the fake is shared by the whole session)."""
    for _ in range(50):
        try:
            gateway.refund("QXNOSUCHORDER0001", "RNOSUCHORDER0001", 1, 1)
        except GatewayError as exc:
            if "订单不存在" in exc.message:
                return
    raise AssertionError("injected refund failures left over")


STEPS = st.lists(st.tuples(st.integers(0, 2), st.sampled_from(
    ["ask", "reveal", "approve", "reject", "job", "sweep", "refund_fails"])), min_size=1, max_size=12)


@h_settings(max_examples=8, deadline=None, database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=STEPS)
@example(steps=[(0, "ask"), (0, "refund_fails"), (0, "job"), (0, "job"), (1, "reveal"), (1, "ask"), (1, "approve"),
                (1, "refund_fails"), (1, "sweep"), (2, "ask"), (2, "reveal"), (2, "job"), (2, "approve"),
                (2, "sweep"), (0, "sweep")])
def test_any_sequence_refunds_each_order_at_most_once_and_the_books_balance(rt, app, shop, fake_pay, run_jobs,
                                                                            steps):  # noqa: ANN001
    # given three delivered orders of three buyers (fresh for each example)
    sku = shop.card_sku(keys=3)
    buyers = [f"p{next(_SEQ)}" for _ in range(3)]
    made = []
    for who in buyers:
        order = unpaid(sku, who)
        wechat_paid(order, rt.gateway, fake_pay)
        made.append(order)
    run_jobs()
    # when shoppers, operators, the job and the sweep act in any order (WeChat Pay failing at times)
    for index, step in steps:
        order = made[index]
        with db.connection_context():
            found = RefundRequest.get_or_none(RefundRequest.order_id == order.id)
            if step == "ask" and found is None:
                refund_requests.request_refund(order.id, order.user_id, "不要了", "unrevealed")
            elif step == "reveal" and Order.get_by_id(order.id).status == "delivered":
                reveal_keys(order.id)
            elif step in ("approve", "reject") and found is not None and found.state == "pending":
                getattr(refund_requests, step)(found.id, "operator:prop", "prop", [])
        if step == "job" and found is not None:
            refund_jobs.enqueue_refund(found.id)
            run_jobs()
        elif step == "sweep":
            refund_jobs.sweep()
        elif step == "refund_fails":
            fake_pay.fail_next(1, err_code="SYSTEMERROR", endpoint="refund")
    # and finally the sweep runs until nothing granted is left (each run meets at most one of the
    # injected failures per request), and failures nobody met are used up
    for _ in range(len(steps) + 1):
        with db.connection_context():
            if not refund_requests.refunding():
                break
        refund_jobs.sweep()
    run_jobs()
    _use_up_refund_failures(rt.gateway)
    # then every order was refunded at WeChat Pay at most once, exactly when its request says
    # refunded, no granted request is left half-done, and the ledger balances
    with db.connection_context():
        for order in made:
            found = RefundRequest.get_or_none(RefundRequest.order_id == order.id)
            state = found.state if found else None
            assert state != "refunding", (steps, order.id)
            refunded = Order.get_by_id(order.id).status == "refunded"
            assert refunded is (state == "refunded"), (steps, state)
            assert refunds_at_wechat(fake_pay, order.no) == (1 if refunded else 0)
        assert unbalanced_transactions() == []
