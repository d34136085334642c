"""`qianxing withdrawals list|approve|reject|pay-due`, run through click against the test
database and Redis."""

from __future__ import annotations

from models import withdrawals
from models.db import db
from models.events import events_for
from models.withdrawals import Withdrawal
from tests.factories import due_withdrawal


def current(w: Withdrawal) -> Withdrawal:
    with db.connection_context():
        return Withdrawal.get_by_id(w.id)


def test_list_approve_and_pay_a_large_withdrawal(cli):
    # given a small due withdrawal and a large one waiting for review
    small, large = due_withdrawal(20_000), due_withdrawal(600_000)
    listed = cli("withdrawals", "list", "--state", "review")
    assert listed.exit_code == 0, listed.output
    assert f"{large.id} {large.no}" in listed.output and small.no not in listed.output
    # when the operator approves the large one and runs the payouts
    approved = cli("withdrawals", "approve", str(large.id))
    assert approved.exit_code == 0 and "approved" in approved.output, approved.output
    paid = cli("withdrawals", "pay-due")
    # then both are paid, with the operator in the audit trail
    assert paid.exit_code == 0 and '"paid": 2' in paid.output, paid.output
    assert current(small).state == current(large).state == "paid"
    with db.connection_context():
        approval = [e for e in events_for(f"withdrawal:{large.id}") if e.topic == "withdrawal.approved"]
    assert approval[-1].actor == "operator:cli"
    assert "paid" in cli("withdrawals", "list").output
    assert cli("withdrawals", "pay-due").output.count('": 0') == 4  # nothing left


def test_reject_needs_a_reason_and_returns_the_money(cli):
    w = due_withdrawal(600_000)
    assert cli("withdrawals", "reject", str(w.id)).exit_code != 0  # --reason is required
    result = cli("withdrawals", "reject", str(w.id), "--reason", "documents missing")
    assert result.exit_code == 0 and "rejected" in result.output, result.output
    with db.connection_context():
        assert withdrawals.balances(w.creator_id)["available_fen"] == 600_000
    assert current(w).last_error == "documents missing"


def test_operator_mistakes_are_clear_errors(cli):
    w = due_withdrawal(20_000)  # approved automatically: nothing to review
    wrong = cli("withdrawals", "approve", str(w.id))
    assert wrong.exit_code == 1 and "not waiting for review" in wrong.output
    missing = cli("withdrawals", "reject", "999999", "--reason", "x")
    assert missing.exit_code == 1 and "not found" in missing.output
    assert cli("withdrawals", "list", "--state", "bogus").exit_code == 2
    assert "no withdrawals" in cli("withdrawals", "list", "--state", "failed").output
