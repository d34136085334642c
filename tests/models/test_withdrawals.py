"""Withdrawals: minimum, fee and perks, debts, review, T+1 payouts through the sandbox and the
real wechatpy transfer adapter (against the fake WeChat Pay), idempotent and race-safe."""

from __future__ import annotations

import datetime as dt
import itertools
import threading

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as h_settings
from hypothesis import strategies as st

from models import ledger, payouts, withdrawals
from models.db import db, utcnow
from models.errors import Conflict, DomainError, InvalidInput, InvalidState
from models.events import Event, events_for
from models.ledger import LedgerTransaction
from models.network import Creator
from models.payouts import PAYING_LEASE_S, PayOutcome
from models.withdrawals import Method, Withdrawal, WithdrawalState, WithdrawPolicy
from qianxing.gateways.payments import make_wechatpay
from qianxing.gateways.payout import SandboxPayoutAdapter, WeChatTransferAdapter
from tests.books import release, settle
from tests.conftest import APPID, MCH_ID, PAY_KEY
from tests.factories import earn, named, sell

POLICY = WithdrawPolicy(min_fen=10_000, fee_bp=100, delay_hours=24, review_above_fen=500_000)
_n = itertools.count(1)


@pytest.fixture
def sandbox(rt) -> SandboxPayoutAdapter:  # noqa: ANN001
    return SandboxPayoutAdapter(rt.redis)


def claw_back(creator: Creator, amount: int) -> None:
    """A refund after availability takes money back from available, below zero if need be."""
    with db.connection_context(), db.atomic():
        assert ledger.post(f"test-clawback:{next(_n)}", "clawback", [
            ledger.Leg(ledger.creator_account(creator.id, ledger.AVAILABLE), amount),
            ledger.Leg(ledger.COMMISSION_EXPENSE, -amount)])


def owed(creator: Creator) -> dict[str, int]:
    with db.connection_context():
        return withdrawals.balances(creator.id)


def reload(w: Withdrawal) -> Withdrawal:
    with db.connection_context():
        return Withdrawal.get_by_id(w.id)


def later(hours: float) -> dt.datetime:
    return utcnow() + dt.timedelta(hours=hours)


# ---- requests ---------------------------------------------------------------------------------


def test_a_wallet_withdrawal_holds_the_money_and_charges_one_percent(conn):
    # given a creator with 500 yuan available
    c = named()
    earn(c, 50_000)
    # when they withdraw 200 yuan to their wallet
    w = withdrawals.request_withdrawal(c, 20_000, Method.WALLET, policy=POLICY)
    # then it waits for T+1 with a 1% fee, and the money moved from available to withdrawing
    assert (w.state, w.fee_fen, w.net_fen) == (WithdrawalState.APPROVED, 200, 19_800)
    assert abs((w.due_at - w.requested_at) - dt.timedelta(hours=24)) < dt.timedelta(seconds=1)
    assert owed(c) == {"pending_fen": 0, "available_fen": 30_000, "withdrawing_fen": 20_000,
                       "credit_fen": 0, "debt_fen": 0}
    assert [e.topic for e in events_for(w.subject)] == ["withdrawal.approved"]
    assert LedgerTransaction.get(LedgerTransaction.key == f"withdraw:{w.no}").kind == "withdrawal"
    assert ledger.unbalanced_transactions() == []


@pytest.mark.parametrize("amount, code", [(9_999, "below_minimum"), (0, "below_minimum"),
                                          (-10_000, "below_minimum"), (10_000.5, "invalid_amount"),
                                          (True, "invalid_amount")])
def test_amounts_below_the_minimum_or_not_whole_fen_are_refused(conn, amount, code):
    c = named()
    earn(c, 50_000)
    with pytest.raises(InvalidInput) as err:
        withdrawals.request_withdrawal(c, amount, Method.WALLET, policy=POLICY)
    # then nothing was written
    assert err.value.code == code
    assert Withdrawal.select().count() == 0 and owed(c)["available_fen"] == 50_000


def test_an_unknown_method_is_refused(conn):
    c = named()
    earn(c, 50_000)
    with pytest.raises(InvalidInput, match="wallet or credit"):
        withdrawals.request_withdrawal(c, 10_000, "bank", policy=POLICY)


@pytest.mark.parametrize("rank, fee", [(0, 200), (1, 200), (4, 160), (5, 100), (6, 0)])
def test_the_fee_follows_the_star_level_perk(conn, rank, fee):
    # given the default table: 十星 0.8%, 百星 0.5%, 千星 free, others the 1% setting
    c = named(rank=rank)
    earn(c, 20_000)
    w = withdrawals.request_withdrawal(c, 20_000, Method.WALLET, policy=POLICY)
    assert w.fee_fen == fee
    assert owed(c)["available_fen"] == 0


def test_the_fee_rounds_down_to_whole_fen(conn):
    c = named()
    earn(c, 20_000)
    w = withdrawals.request_withdrawal(c, 10_099, Method.WALLET, policy=POLICY)
    assert w.fee_fen == 100  # 100.99 fen


def test_a_creator_in_debt_cannot_withdraw(conn):
    # given a creator whose 300 yuan were clawed back after 200 became available
    c = named()
    earn(c, 20_000)
    claw_back(c, 30_000)
    assert owed(c)["debt_fen"] == 10_000 and owed(c)["available_fen"] == 0
    # when they ask for a withdrawal, even after new earnings that do not cover the debt
    earn(c, 5_000)
    with pytest.raises(Conflict) as err:
        withdrawals.request_withdrawal(c, 10_000, Method.CREDIT, policy=POLICY)
    # then it is refused and nothing moves
    assert err.value.code == "in_debt"
    assert Withdrawal.select().count() == 0 and owed(c)["debt_fen"] == 5_000
    # once earnings cover the debt, what is left can be withdrawn
    earn(c, 15_000)
    withdrawals.request_withdrawal(c, 10_000, Method.CREDIT, policy=POLICY)


def test_nobody_withdraws_more_than_is_available(conn):
    c = named()
    earn(c, 15_000)
    with pytest.raises(Conflict) as err:
        withdrawals.request_withdrawal(c, 15_001, Method.WALLET, policy=POLICY)
    assert err.value.code == "insufficient_balance"
    withdrawals.request_withdrawal(c, 15_000, Method.WALLET, policy=POLICY)
    with pytest.raises(Conflict):
        withdrawals.request_withdrawal(c, 10_000, Method.WALLET, policy=POLICY)
    assert owed(c)["available_fen"] == 0


def test_the_same_request_key_twice_is_one_withdrawal(conn):
    c = named()
    earn(c, 50_000)
    first = withdrawals.request_withdrawal(c, 20_000, "wallet", policy=POLICY, request_key="k-1")
    again = withdrawals.request_withdrawal(c, 20_000, "wallet", policy=POLICY, request_key="k-1")
    assert again.id == first.id
    assert owed(c)["available_fen"] == 30_000
    with pytest.raises(Conflict) as err:
        withdrawals.request_withdrawal(c, 25_000, "wallet", policy=POLICY, request_key="k-1")
    assert err.value.code == "request_key_reused"
    # another creator may use the same key
    other = named()
    earn(other, 10_000)
    assert withdrawals.request_withdrawal(other, 10_000, "credit", policy=POLICY,
                                          request_key="k-1").id != first.id


def test_a_credit_withdrawal_is_free_and_immediate(conn):
    c = named()
    earn(c, 30_000)
    w = withdrawals.request_withdrawal(c, 30_000, Method.CREDIT, policy=POLICY)
    assert (w.state, w.fee_fen, w.method) == (WithdrawalState.PAID, 0, "credit")
    assert owed(c) == {"pending_fen": 0, "available_fen": 0, "withdrawing_fen": 0,
                       "credit_fen": 30_000, "debt_fen": 0}
    assert [e.topic for e in events_for(w.subject)] == ["withdrawal.paid"]


def test_the_policy_comes_from_settings(rt):
    assert rt.withdraw == WithdrawPolicy(min_fen=10_000, fee_bp=100, delay_hours=24,
                                         review_above_fen=500_000)


# ---- review ---------------------------------------------------------------------------------


def test_large_withdrawals_wait_for_an_operator_then_go_out(conn, sandbox):
    # given a withdrawal above the review threshold
    c = named()
    earn(c, 800_000)
    w = withdrawals.request_withdrawal(c, 600_000, Method.WALLET, policy=POLICY)
    assert w.state == WithdrawalState.REVIEW
    # when its payout time passes without approval, then nothing is paid
    assert payouts.pay_due(sandbox, now=later(48)).counts["paid"] == 0
    assert sandbox.calls(w.no) == 0
    # when an operator approves it, then the next run pays it
    approved = payouts.approve(w.id, "operator:ops")
    assert (approved.state, approved.reviewed_by) == (WithdrawalState.APPROVED, "operator:ops")
    assert payouts.approve(w.id, "operator:ops").state == WithdrawalState.APPROVED  # twice
    assert payouts.pay_due(sandbox, now=later(48)).counts["paid"] == 1
    assert reload(w).state == WithdrawalState.PAID
    assert [e.topic for e in events_for(w.subject)] == [
        "withdrawal.review", "withdrawal.approved", "withdrawal.paying", "withdrawal.paid"]
    with pytest.raises(InvalidState):
        payouts.approve(w.id, "operator:ops")


def test_a_rejected_withdrawal_returns_the_money(conn, sandbox):
    c = named()
    earn(c, 800_000)
    w = withdrawals.request_withdrawal(c, 600_000, Method.WALLET, policy=POLICY)
    with pytest.raises(InvalidInput):
        payouts.reject(w.id, "operator:ops", "  ")
    done = payouts.reject(w.id, "operator:ops", "identity check failed")
    assert (done.state, done.last_error) == (WithdrawalState.REJECTED, "identity check failed")
    assert owed(c)["available_fen"] == 800_000 and owed(c)["withdrawing_fen"] == 0
    # rejecting again changes nothing; approving or paying it is impossible
    payouts.reject(w.id, "operator:ops", "again")
    assert LedgerTransaction.select().where(LedgerTransaction.key == f"reject:{w.no}").count() == 1
    with pytest.raises(InvalidState):
        payouts.approve(w.id, "operator:ops")
    assert payouts.pay_due(sandbox, now=later(48)).counts["paid"] == 0
    assert ledger.unbalanced_transactions() == []


def test_a_paid_withdrawal_cannot_be_rejected(conn, sandbox):
    c = named()
    earn(c, 20_000)
    w = withdrawals.request_withdrawal(c, 20_000, Method.WALLET, policy=POLICY)
    payouts.pay_due(sandbox, now=later(25))
    with pytest.raises(InvalidState) as err:
        payouts.reject(w.id, "operator:ops", "too late")
    assert err.value.code == "withdrawal_not_rejectable"
    assert owed(c)["available_fen"] == 0


# ---- payouts --------------------------------------------------------------------------------


def test_payouts_wait_for_t_plus_one_then_post_net_and_fee(conn, sandbox):
    c = named()
    earn(c, 20_000)
    w = withdrawals.request_withdrawal(c, 20_000, Method.WALLET, policy=POLICY)
    # when the job runs before the payout time, then nothing is sent
    assert payouts.pay_due(sandbox).counts["paid"] == 0
    assert payouts.pay_due(sandbox, now=later(23.9)).counts["paid"] == 0
    assert sandbox.calls(w.no) == 0 and reload(w).state == WithdrawalState.APPROVED
    # when it runs after T+1, then the net goes out and the fee is income
    assert payouts.pay_due(sandbox, now=later(24.1)).counts["paid"] == 1
    paid = reload(w)
    assert (paid.state, paid.payout_ref) == (WithdrawalState.PAID, f"SBX{w.no}")
    assert owed(c)["withdrawing_fen"] == 0
    assert ledger.balance(ledger.PAYOUT_CLEARING) == -19_800
    assert ledger.balance(ledger.WITHDRAWAL_FEES) == -200
    assert ledger.unbalanced_transactions() == []


def test_paying_twice_sends_nothing_twice(conn, sandbox):
    c = named()
    earn(c, 30_000)
    ws = [withdrawals.request_withdrawal(c, 10_000, Method.WALLET, policy=POLICY) for _ in range(3)]
    first = payouts.pay_due(sandbox, now=later(25)).counts
    second = payouts.pay_due(sandbox, now=later(25)).counts
    assert first["paid"] == 3 and second == {o.value: 0 for o in PayOutcome}
    assert [sandbox.calls(w.no) for w in ws] == [1, 1, 1]
    assert LedgerTransaction.select().where(LedgerTransaction.kind == "payout").count() == 3


def test_an_answer_lost_after_paying_is_queried_not_paid_again(conn, sandbox):
    # given a wallet whose first transfer is paid but the answer is lost
    c = named("flaky-wallet")
    earn(c, 20_000)
    w = withdrawals.request_withdrawal(c, 20_000, Method.WALLET, policy=POLICY)
    now = later(25)
    assert payouts.pay_due(sandbox, now=now).counts["unclear"] == 1
    assert reload(w).state == WithdrawalState.PAYING and reload(w).last_error
    # when the job runs again within the lease, then it leaves it alone
    assert payouts.pay_due(sandbox, now=now).counts == {o.value: 0 for o in PayOutcome}
    # when it runs after the lease, then it asks the provider, which says paid: no second transfer
    after = now + dt.timedelta(seconds=PAYING_LEASE_S + 1)
    assert payouts.pay_due(sandbox, now=after).counts["paid"] == 1
    assert sandbox.calls(w.no) == 1
    assert reload(w).state == WithdrawalState.PAID and reload(w).last_error is None
    assert "withdrawal.payout_unclear" in [e.topic for e in events_for(w.subject)]


def test_a_transfer_lost_before_paying_is_sent_again_under_the_same_no(conn, sandbox):
    c = named("lost-wallet")
    earn(c, 20_000)
    w = withdrawals.request_withdrawal(c, 20_000, Method.WALLET, policy=POLICY)
    now = later(25)
    assert payouts.pay_due(sandbox, now=now).counts["unclear"] == 1
    after = now + dt.timedelta(seconds=PAYING_LEASE_S + 1)
    assert payouts.pay_due(sandbox, now=after).counts["paid"] == 1
    assert sandbox.calls(w.no) == 2  # the provider never had it, so it was sent once more


def test_a_refused_transfer_returns_the_money(conn, sandbox):
    c = named("fail-wallet")
    earn(c, 20_000)
    w = withdrawals.request_withdrawal(c, 20_000, Method.WALLET, policy=POLICY)
    assert payouts.pay_due(sandbox, now=later(25)).counts["failed"] == 1
    failed = reload(w)
    assert failed.state == WithdrawalState.FAILED and "refused" in failed.last_error
    assert owed(c)["available_fen"] == 20_000 and owed(c)["withdrawing_fen"] == 0
    assert ledger.balance(ledger.PAYOUT_CLEARING) == 0
    assert payouts.pay_due(sandbox, now=later(50)).counts["failed"] == 0
    # and the creator can ask again
    withdrawals.request_withdrawal(c, 20_000, Method.CREDIT, policy=POLICY)


def test_sandbox_fail_mode_refuses_everything(conn, rt):
    c = named()
    earn(c, 10_000)
    withdrawals.request_withdrawal(c, 10_000, Method.WALLET, policy=POLICY)
    assert payouts.pay_due(SandboxPayoutAdapter(rt.redis, "fail"),
                               now=later(25)).counts["failed"] == 1


def test_concurrent_pay_runs_send_each_transfer_once(rt, sandbox):
    # given ten due withdrawals; when four job runs race over them
    c = named()
    earn(c, 100_000)
    with db.connection_context():
        ws = [withdrawals.request_withdrawal(c, 10_000, Method.WALLET, policy=POLICY)
              for _ in range(10)]
    now, start, results = later(25), threading.Barrier(4), []

    def run() -> None:
        with db.connection_context():
            start.wait()
            results.append(payouts.pay_due(sandbox, now=now).counts)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then every withdrawal was transferred and posted exactly once
    assert sum(r["paid"] for r in results) == 10
    assert [sandbox.calls(w.no) for w in ws] == [1] * 10
    with db.connection_context():
        assert LedgerTransaction.select().where(LedgerTransaction.kind == "payout").count() == 10
        assert ledger.balance(ledger.PAYOUT_CLEARING) == -99_000


# ---- the real wechatpy adapter against the fake WeChat Pay ----------------------------------------


@pytest.fixture
def wechat_payouts(settings, fake_pay) -> WeChatTransferAdapter:  # noqa: ANN001
    pay = make_wechatpay(APPID, PAY_KEY, MCH_ID, fake_pay.base_url, 5.0)
    return WeChatTransferAdapter(pay)


def test_wechatpay_transfer_pays_the_net_to_the_openid(conn, wechat_payouts, fake_pay):
    c = named("wx-openid-1")
    earn(c, 20_000)
    w = withdrawals.request_withdrawal(c, 20_000, Method.WALLET, policy=POLICY)
    assert payouts.pay_due(wechat_payouts, now=later(25)).counts["paid"] == 1
    sent = fake_pay.transfers[w.no]
    assert (sent.openid, sent.amount) == ("wx-openid-1", 19_800)
    assert reload(w).payout_ref == sent.payment_no
    assert len(fake_pay.requests_to("/mmpaymkttransfers/promotion/transfers")) >= 1


def test_wechatpay_system_error_after_paying_is_settled_by_query(conn, wechat_payouts, fake_pay):
    # given WeChat Pay moves the money and then answers SYSTEMERROR
    c = named()
    earn(c, 20_000)
    w = withdrawals.request_withdrawal(c, 20_000, Method.WALLET, policy=POLICY)
    fake_pay.fail_next(err_code="SYSTEMERROR", endpoint="transfers", after_processing=True)
    now = later(25)
    assert payouts.pay_due(wechat_payouts, now=now).counts["unclear"] == 1
    assert w.no in fake_pay.transfers
    # when the job comes back, then gettransferinfo says SUCCESS and no second transfer is made
    before = len(fake_pay.requests_to("/mmpaymkttransfers/promotion/transfers"))
    after = now + dt.timedelta(seconds=PAYING_LEASE_S + 1)
    assert payouts.pay_due(wechat_payouts, now=after).counts["paid"] == 1
    assert len(fake_pay.requests_to("/mmpaymkttransfers/promotion/transfers")) == before
    assert reload(w).payout_ref == fake_pay.transfers[w.no].payment_no


@pytest.mark.parametrize("failure", [{"http_status": 500}, {"err_code": "SYSTEMERROR"}, {}])
def test_wechatpay_unclear_before_paying_retries_under_the_same_no(conn, wechat_payouts, fake_pay,
                                                                    failure):
    c = named()
    earn(c, 20_000)
    w = withdrawals.request_withdrawal(c, 20_000, Method.WALLET, policy=POLICY)
    fake_pay.fail_next(endpoint="transfers", **failure)
    now = later(25)
    assert payouts.pay_due(wechat_payouts, now=now).counts["unclear"] == 1
    assert w.no not in fake_pay.transfers
    after = now + dt.timedelta(seconds=PAYING_LEASE_S + 1)
    assert payouts.pay_due(wechat_payouts, now=after).counts["paid"] == 1
    assert fake_pay.transfers[w.no].amount == 19_800


def test_wechatpay_definite_refusal_fails_the_withdrawal(conn, wechat_payouts, fake_pay):
    c = named()
    earn(c, 20_000)
    w = withdrawals.request_withdrawal(c, 20_000, Method.WALLET, policy=POLICY)
    fake_pay.fail_next(err_code="V2_ACCOUNT_SIMPLE_BAN", endpoint="transfers",
                       return_msg="无法给非实名用户付款")
    assert payouts.pay_due(wechat_payouts, now=later(25)).counts["failed"] == 1
    assert "V2_ACCOUNT_SIMPLE_BAN" in reload(w).last_error
    assert owed(c)["available_fen"] == 20_000


def test_wechatpay_query_reporting_failed_or_processing(conn, wechat_payouts, fake_pay):
    # given two transfers whose answers were lost; WeChat Pay later reports one failed and one
    # still processing
    c = named()
    earn(c, 40_000)
    a = withdrawals.request_withdrawal(c, 20_000, Method.WALLET, policy=POLICY)
    b = withdrawals.request_withdrawal(c, 20_000, Method.WALLET, policy=POLICY)
    fake_pay.fail_next(2, err_code="SYSTEMERROR", endpoint="transfers", after_processing=True)
    now = later(25)
    assert payouts.pay_due(wechat_payouts, now=now).counts["unclear"] == 2
    fake_pay.transfers[a.no].status, fake_pay.transfers[a.no].reason = "FAILED", "余额不足"
    fake_pay.transfers[b.no].status = "PROCESSING"
    after = now + dt.timedelta(seconds=PAYING_LEASE_S + 1)
    counts = payouts.pay_due(wechat_payouts, now=after).counts
    assert (counts["failed"], counts["unclear"]) == (1, 1)
    assert reload(a).state == WithdrawalState.FAILED and reload(a).last_error == "余额不足"
    assert reload(b).state == WithdrawalState.PAYING
    assert owed(c)["available_fen"] == 20_000 and owed(c)["withdrawing_fen"] == 20_000


def test_wechatpay_adapter_query_of_an_unknown_no(wechat_payouts):
    assert wechat_payouts.query("WDNEVERSENT0001").state == payouts.TransferState.NOT_FOUND


# ---- race safety --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["wallet", "credit"])
def test_simultaneous_withdrawals_never_exceed_the_available_balance(rt, method):
    # given 300 yuan available; when eight withdrawals of 100 yuan start at the same instant,
    # each on its own database connection
    c = named()
    earn(c, 30_000)
    start, outcomes = threading.Barrier(8), []

    def withdraw() -> None:
        with db.connection_context():
            start.wait()
            try:
                withdrawals.request_withdrawal(c.id, 10_000, method, policy=POLICY)
                outcomes.append("ok")
            except DomainError as exc:
                outcomes.append(exc.code)

    threads = [threading.Thread(target=withdraw) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then exactly three went through and available is exactly zero
    assert sorted(outcomes) == ["insufficient_balance"] * 5 + ["ok"] * 3
    assert owed(c)["available_fen"] == 0 and owed(c)["debt_fen"] == 0
    with db.connection_context():
        assert ledger.unbalanced_transactions() == []


# ---- the real settlement path --------------------------------------------------------------------


def test_earnings_from_a_real_sale_can_be_withdrawn(rt, shop, sandbox):
    # given a creator's sale, settled and released after the refund window
    sku = shop.card_sku(keys=3, price=100_000, code="CARD-W")
    c = named("seller-1")
    with db.connection_context():
        sell(rt, sku.code, c.code, openid="shopper-1")
        settle(rt)
        assert withdrawals.balances(c.id)["available_fen"] == 0
        release(rt)
        earned = withdrawals.balances(c.id)["available_fen"]
        assert earned >= 10_000  # 10% of 1000 yuan
        # when they withdraw all of it and the payout runs at T+1
        w = withdrawals.request_withdrawal(c, earned, Method.WALLET, policy=rt.withdraw)
        payouts.pay_due(sandbox, now=later(25))
        # then it is paid and the books balance
        assert reload(w).state == WithdrawalState.PAID
        assert withdrawals.balances(c.id) == {"pending_fen": 0, "available_fen": 0,
                                              "withdrawing_fen": 0, "credit_fen": 0, "debt_fen": 0}
        assert ledger.balance(ledger.PAYOUT_CLEARING) == -(earned - w.fee_fen)
        assert ledger.unbalanced_transactions() == []


def test_listing_a_creators_withdrawals_pages_newest_first(conn):
    c = named()
    earn(c, 50_000)
    ids = [withdrawals.request_withdrawal(c, 10_000, Method.CREDIT, policy=POLICY).id
           for _ in range(5)]
    assert [w.id for w in withdrawals.list_withdrawals(c, limit=2)] == ids[::-1][:2]
    assert [w.id for w in withdrawals.list_withdrawals(c.id, limit=10, before_id=ids[2])] == ids[:2][::-1]
    assert withdrawals.list_withdrawals(named(), 10) == []


# ---- property: random earnings, withdrawals, reviews and payouts ------------------------------------


ops = st.lists(st.one_of(
    st.tuples(st.just("earn"), st.integers(0, 2), st.integers(1, 400_000)),
    st.tuples(st.just("claw"), st.integers(0, 2), st.integers(1, 100_000)),
    st.tuples(st.just("withdraw"), st.integers(0, 2), st.integers(5_000, 700_000),
              st.sampled_from(["wallet", "credit"])),
    st.tuples(st.just("approve"), st.integers(0, 30)),
    st.tuples(st.just("reject"), st.integers(0, 30)),
    st.tuples(st.just("pay"), st.floats(0, 60)),
), min_size=1, max_size=25)
WALLETS = ["ok", "fail", "flaky", "lost"]


@h_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=ops, kinds=st.lists(st.sampled_from(WALLETS), min_size=3, max_size=3))
def test_random_money_flows_never_overdraw_and_always_balance(rt, steps, kinds):
    sandbox = SandboxPayoutAdapter(rt.redis)
    creators = [named(f"{kind}-{next(_n)}") for kind in kinds]
    made: list[Withdrawal] = []
    earned = [0, 0, 0]
    clock = utcnow()
    with db.connection_context():
        for step in steps:
            if step[0] == "earn":
                earn(creators[step[1]], step[2])
                earned[step[1]] += step[2]
            elif step[0] == "claw":
                claw_back(creators[step[1]], step[2])
                earned[step[1]] -= step[2]
            elif step[0] == "withdraw":
                c = creators[step[1]]
                before = withdrawals.balances(c.id)
                try:
                    made.append(withdrawals.request_withdrawal(c, step[2], step[3], policy=POLICY))
                except DomainError as exc:
                    # refused exactly when below the minimum, in debt, or more than available
                    assert exc.code in ("below_minimum", "in_debt", "insufficient_balance")
                    expect = ("below_minimum" if step[2] < POLICY.min_fen else "in_debt"
                              if before["debt_fen"] else "insufficient_balance")
                    assert exc.code == expect
                    assert step[2] < POLICY.min_fen or before["debt_fen"] or \
                        step[2] > before["available_fen"]
                else:
                    assert step[2] <= before["available_fen"] and before["debt_fen"] == 0
                    assert withdrawals.balances(c.id)["debt_fen"] == 0
            elif step[0] in ("approve", "reject") and made:
                w = made[step[1] % len(made)]
                try:
                    if step[0] == "approve":
                        payouts.approve(w.id, "operator:prop")
                    else:
                        payouts.reject(w.id, "operator:prop", "property test")
                except InvalidState:
                    assert reload(w).state not in (
                        (WithdrawalState.REVIEW,) if step[0] == "approve"
                        else (WithdrawalState.REVIEW, WithdrawalState.APPROVED))
            elif step[0] == "pay":
                clock += dt.timedelta(hours=step[1])
                payouts.pay_due(sandbox, now=clock)
        # then the ledger balances, every creator's money adds up, and nothing was paid twice
        assert ledger.unbalanced_transactions() == []
        for i, c in enumerate(creators):
            b = withdrawals.balances(c.id)
            ws = Withdrawal.select().where(Withdrawal.creator == c.id)
            paid_out = sum(w.amount_fen for w in ws
                           if w.state == WithdrawalState.PAID and w.method == "wallet")
            assert b["available_fen"] - b["debt_fen"] + b["withdrawing_fen"] + b["credit_fen"] \
                + paid_out == earned[i]
            assert b["withdrawing_fen"] == sum(
                w.amount_fen for w in ws if w.method == "wallet" and w.state in
                (WithdrawalState.REVIEW, WithdrawalState.APPROVED, WithdrawalState.PAYING))
            assert b["credit_fen"] == sum(w.amount_fen for w in ws if w.method == "credit")
            for w in ws:
                assert sandbox.calls(w.no) <= (2 if kinds[i] == "lost" else 1)
        assert Event.select().where(Event.topic == "withdrawal.paid").count() == \
            Withdrawal.select().where(Withdrawal.state == WithdrawalState.PAID).count()
