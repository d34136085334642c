"""The periodic payout job through RQ (in-process worker), with the sandbox adapter and with the
real wechatpy transfer adapter wired from PAYOUT_PROVIDER against the fake WeChat Pay."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from models import ledger, withdrawals
from models.db import db
from models.ledger import LedgerTransaction
from models.withdrawals import Withdrawal, WithdrawalState
from qianxing import wiring
from qianxing.gateways.payout import WeChatTransferAdapter
from tasks.periodic import PERIODIC
from tasks.withdrawals import pay_due_withdrawals
from tests.conftest import make_settings
from tests.factories import due_withdrawal


def state(w: Withdrawal) -> str:
    with db.connection_context():
        return Withdrawal.get_by_id(w.id).state


def test_the_payout_job_is_periodic():
    assert ("tasks.withdrawals.pay_due_withdrawals", 600) in PERIODIC


def test_the_job_pays_due_withdrawals_once_even_when_queued_twice(rt, run_jobs):
    # given two due withdrawals and one under review
    a, b = due_withdrawal(), due_withdrawal()
    review = due_withdrawal(600_000)
    # when the job is queued twice and the worker runs
    rt.queue.enqueue("tasks.withdrawals.pay_due_withdrawals")
    rt.queue.enqueue("tasks.withdrawals.pay_due_withdrawals")
    assert run_jobs() == 2
    # then both due ones were paid exactly once, through the sandbox adapter
    assert (state(a), state(b), state(review)) == ("paid", "paid", "review")
    assert rt.payouts.calls(a.no) == 1 and rt.payouts.calls(b.no) == 1  # type: ignore[attr-defined]
    with db.connection_context():
        assert LedgerTransaction.select().where(LedgerTransaction.kind == "payout").count() == 2
        assert ledger.unbalanced_transactions() == []


def test_the_job_in_sandbox_fail_mode_returns_the_money(rt, settings, run_jobs):
    w = due_withdrawal()
    wiring.reset()
    try:
        failing = wiring.bootstrap(settings.model_copy(update={"PAYOUT_SANDBOX_MODE": "fail"}))
        assert pay_due_withdrawals()["failed"] == 1
        assert failing.payouts.name == "sandbox"
    finally:
        wiring.reset()
        wiring.bootstrap(settings)
    assert state(w) == WithdrawalState.FAILED
    with db.connection_context():
        assert withdrawals.balances(w.creator_id)["available_fen"] == 20_000


@pytest.fixture
def wechat_payouts(rt, settings, database_url, redis_url, fake_wechat, fake_pay) -> Iterator:  # noqa: ANN001
    """The runtime built with PAYOUT_PROVIDER=wechatpay (the fake WeChat Pay's base URL)."""
    wiring.reset()
    try:
        yield wiring.bootstrap(make_settings(
            database_url, redis_url, fake_wechat, fake_pay, PAYOUT_PROVIDER="wechatpay",
            PUBLIC_BASE_URL=settings.PUBLIC_BASE_URL))
    finally:
        wiring.reset()
        wiring.bootstrap(settings)


def test_the_job_pays_through_wechatpay_when_configured(wechat_payouts, fake_pay):
    assert isinstance(wechat_payouts.payouts, WeChatTransferAdapter)
    w = due_withdrawal(30_000, openid="wx-job-openid")
    # when the first run's answer is lost after the transfer, and a later run comes
    fake_pay.fail_next(http_status=502, endpoint="transfers", after_processing=True)
    assert pay_due_withdrawals()["unclear"] == 1
    with db.connection_context():  # the lease ran out
        Withdrawal.update(due_at=Withdrawal.requested_at).where(Withdrawal.id == w.id).execute()
    assert pay_due_withdrawals()["paid"] == 1
    # then WeChat Pay has one transfer of the net amount to the creator's openid
    sent = fake_pay.transfers[w.no]
    assert (sent.openid, sent.amount) == ("wx-job-openid", 29_700)
    assert state(w) == WithdrawalState.PAID
    assert len([r for r in fake_pay.requests_to("/mmpaymkttransfers/promotion/transfers")
                if w.no.encode() in r.body]) == 1
