"""The four-eyes rule for withdrawals (models/approvals.py through models.payouts.approve): above
the threshold two different approvers, at or below it one; the same approver never counts twice;
concurrent approvals are serialised on the withdrawal row; and a property test drives random
approvals and rejections against a model of the rule."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as h_settings
from hypothesis import strategies as st

from models import approvals, payouts
from models.approvals import SameApprover, WithdrawalApproval
from models.db import db
from models.errors import InvalidState
from models.events import events_for
from models.withdrawals import Withdrawal, WithdrawalState
from tests.concurrently import at_once
from tests.factories import due_withdrawal

THRESHOLD = 1_000_000


def reload(w: Withdrawal) -> Withdrawal:
    with db.connection_context():
        return Withdrawal.get_by_id(w.id)


def recorded(w: Withdrawal) -> list[str]:
    with db.connection_context():
        return [a.approver for a in approvals.approvers(w.id)]


# ---- the rule ---------------------------------------------------------------------------------------

def test_the_number_of_approvers_depends_on_the_amount():
    assert approvals.needed(THRESHOLD, THRESHOLD) == 1  # at the threshold: one
    assert approvals.needed(THRESHOLD + 1, THRESHOLD) == 2  # above it: two
    assert approvals.needed(1, 0) == 2  # a threshold of 0: every withdrawal takes two


@given(amount=st.integers(1, 3 * THRESHOLD), threshold=st.integers(0, 2 * THRESHOLD),
       so_far=st.lists(st.sampled_from(["operator:1", "operator:2", "operator:3", "operator:cli"]),
                       unique=True, max_size=3),
       approver=st.sampled_from(["operator:1", "operator:2", "operator:3", "operator:cli"]))
def test_decide_never_counts_an_approver_twice(amount, threshold, so_far, approver):
    if approver in so_far:
        with pytest.raises(SameApprover):
            approvals.decide(amount, threshold, so_far, approver)
        return
    decision = approvals.decide(amount, threshold, so_far, approver)
    assert decision.have == len(so_far) + 1
    assert decision.complete == (len(so_far) + 1 >= (2 if amount > threshold else 1))


# ---- through payouts.approve ------------------------------------------------------------------------

def test_a_large_withdrawal_takes_two_different_approvers(rt):
    # given a withdrawal above the threshold
    w = due_withdrawal(1_200_000)
    with db.connection_context():
        # when a first operator approves it, it stays under review with the approval recorded
        assert payouts.approve(w.id, "operator:1", second_above_fen=THRESHOLD).state == WithdrawalState.REVIEW
        # when the same operator approves again, it is refused
        with pytest.raises(SameApprover) as refused:
            payouts.approve(w.id, "operator:1", second_above_fen=THRESHOLD)
        assert refused.value.code == "same_approver" and refused.value.status == 409
        # when a second operator approves, it is approved by them
        done = payouts.approve(w.id, "operator:2", second_above_fen=THRESHOLD)
        assert (done.state, done.reviewed_by) == (WithdrawalState.APPROVED, "operator:2")
        # and the first operator approving now changes nothing
        assert payouts.approve(w.id, "operator:1", second_above_fen=THRESHOLD).state == WithdrawalState.APPROVED
        assert [e.topic for e in events_for(w.subject)] == [
            "withdrawal.review", "withdrawal.approval_recorded", "withdrawal.approved"]
    assert recorded(w) == ["operator:1", "operator:2"]


def test_the_threshold_is_the_callers_setting(rt):
    # given a withdrawal of 6,000 yuan
    w = due_withdrawal(600_000)
    with db.connection_context():
        # when the threshold is lower than the amount, one approval is not enough
        assert payouts.approve(w.id, "operator:1", second_above_fen=500_000).state == WithdrawalState.REVIEW
        # (the default threshold, the setting's default, would have let it go)
        assert payouts.approve(w.id, "operator:2").state == WithdrawalState.APPROVED


def test_the_unique_key_refuses_a_second_row_for_the_same_approver(rt):
    w = due_withdrawal(1_200_000)
    with db.connection_context():
        WithdrawalApproval.create(withdrawal=w.id, approver="operator:9")
        with pytest.raises(Exception), db.atomic():  # noqa: B017 - IntegrityError, backend-specific
            WithdrawalApproval.create(withdrawal=w.id, approver="operator:9")


def test_concurrent_approvals_by_two_operators_approve_once(rt):
    # given a large withdrawal
    w = due_withdrawal(1_200_000)
    actors = ["operator:1", "operator:2"]

    def approve() -> str:
        with db.connection_context():
            return payouts.approve(w.id, actors.pop(), second_above_fen=THRESHOLD).state

    # when two operators approve at the same moment
    states = at_once(approve, 2)
    # then exactly one was first (still review) and one second (approved)
    assert sorted(states) == ["approved", "review"]
    assert reload(w).state == WithdrawalState.APPROVED and sorted(recorded(w)) == ["operator:1", "operator:2"]
    with db.connection_context():
        assert [e.topic for e in events_for(w.subject)].count("withdrawal.approved") == 1


def test_concurrent_approvals_by_one_operator_count_once(rt):
    w = due_withdrawal(1_200_000)

    def approve() -> str:
        with db.connection_context():
            try:
                return payouts.approve(w.id, "operator:1", second_above_fen=THRESHOLD).state
            except SameApprover:
                return "refused"

    assert sorted(at_once(approve, 3)) == ["refused", "refused", "review"]
    assert recorded(w) == ["operator:1"] and reload(w).state == WithdrawalState.REVIEW


# ---- property: random approvals and rejections against a model of the rule ---------------------------

steps = st.lists(st.one_of(st.tuples(st.just("approve"), st.sampled_from(["operator:1", "operator:2",
                                                                          "operator:cli"])),
                           st.tuples(st.just("reject"), st.just(""))), min_size=1, max_size=8)


@h_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amount=st.sampled_from([600_000, THRESHOLD, THRESHOLD + 1, 2_500_000]), plan=steps)
def test_random_approvals_follow_the_rule(rt, amount, plan):
    w = due_withdrawal(amount)
    need = 2 if amount > THRESHOLD else 1
    state, approvers = "review", []
    with db.connection_context():
        for kind, who in plan:
            if kind == "reject":
                if state in ("review", "approved"):
                    state = "rejected"
                payouts.reject(w.id, "operator:3", "property test")
            elif state == "review" and who in approvers:
                with pytest.raises(SameApprover):
                    payouts.approve(w.id, who, second_above_fen=THRESHOLD)
            elif state == "review":
                approvers.append(who)
                state = "approved" if len(approvers) >= need else "review"
                assert payouts.approve(w.id, who, second_above_fen=THRESHOLD).state == state
            elif state == "approved":
                assert payouts.approve(w.id, who, second_above_fen=THRESHOLD).state == "approved"
            else:
                with pytest.raises(InvalidState):
                    payouts.approve(w.id, who, second_above_fen=THRESHOLD)
            # then the stored state and approvals are the model's, and it was approved at most once
            now = Withdrawal.get_by_id(w.id)
            assert now.state == state
            assert [a.approver for a in approvals.approvers(w.id)] == approvers
            topics = [e.topic for e in events_for(w.subject)]
            assert topics.count("withdrawal.approved") == (1 if len(approvers) >= need else 0)
            assert len(set(approvers)) == len(approvers)
