"""The withdrawals pages over real HTTP: the queue by state, a withdrawal's approvals, payout
attempts and ledger entries, and the four-eyes rule: above WITHDRAW_SECOND_APPROVAL_ABOVE_FEN
two DIFFERENT operators approve (the same one twice is refused), below it one suffices; two
approvers at the same moment approve once; reject needs a reason; roles without the permission
get 403 and change nothing."""

from __future__ import annotations

from models import payouts, withdrawals
from models.approvals import WithdrawalApproval
from models.audit import AuditEntry
from models.db import db
from models.events import events_for
from models.withdrawals import Withdrawal, WithdrawalState
from tests.admin.conftest import ACTION, CSRF
from tests.concurrently import at_once
from tests.factories import due_withdrawal

LARGE = 1_200_000  # above the default WITHDRAW_SECOND_APPROVAL_ABOVE_FEN (1,000,000 fen)
SMALL = 600_000  # above the review threshold (500,000), below the second-approval one


def current(w: Withdrawal) -> Withdrawal:
    with db.connection_context():
        return Withdrawal.get_by_id(w.id)


def approvers(w: Withdrawal) -> list[str]:
    with db.connection_context():
        return [a.approver for a in WithdrawalApproval.select().where(WithdrawalApproval.withdrawal == w.id)
                .order_by(WithdrawalApproval.id)]


def topics(w: Withdrawal) -> list[str]:
    with db.connection_context():
        return [e.topic for e in events_for(w.subject)]


def audits(action: str) -> list[AuditEntry]:
    with db.connection_context():
        return list(AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id))


def approve(a, w: Withdrawal, **form):  # noqa: ANN001, ANN003, ANN201
    return a.post(f"/admin/withdrawals/{w.id}/approve", form, page=f"/admin/withdrawals/{w.id}")


def test_above_the_threshold_two_different_finance_operators_approve_then_it_is_paid(admin, rt):
    # given a withdrawal above the second-approval threshold, waiting for review
    w = due_withdrawal(LARGE)
    assert w.state == WithdrawalState.REVIEW
    first, second = admin("finance"), admin("finance")
    # when a first finance operator approves it
    answer = approve(first, w, reason="身份已核对")
    # then it stays under review with that one approval recorded (and audited)
    assert answer.status_code == 302
    assert current(w).state == WithdrawalState.REVIEW
    assert approvers(w) == [f"operator:{first.op.id}"]
    assert "withdrawal.approval_recorded" in topics(w)
    page = first.get(f"/admin/withdrawals/{w.id}").data.decode()
    assert f'data-approver="operator:{first.op.id}"' in page and first.op.name in page
    # when the same operator approves again
    again = approve(first, w)
    # then it is refused with a clear message and nothing changes
    assert again.status_code == 409
    assert "需要另一位操作员第二次批准" in again.data.decode()
    assert current(w).state == WithdrawalState.REVIEW and len(approvers(w)) == 1
    # when a second, different finance operator approves it
    done = approve(second, w)
    # then it is approved, by the second operator, with both approvals kept and two audit rows
    assert done.status_code == 302
    approved = current(w)
    assert (approved.state, approved.reviewed_by) == (WithdrawalState.APPROVED, f"operator:{second.op.id}")
    assert approvers(w) == [f"operator:{first.op.id}", f"operator:{second.op.id}"]
    rows = audits("withdrawal.approve")
    assert [(r.operator_name, r.after["state"]) for r in rows] == [(first.op.name, "review"),
                                                                   (second.op.name, "approved")]
    assert rows[0].reason == "身份已核对"
    # when the payout job runs (the sandbox adapter)
    with db.connection_context():
        assert payouts.pay_due(rt.payouts).counts["paid"] == 1
    # then it is paid, and the page shows the attempt with the provider's answer and the entries
    assert current(w).state == WithdrawalState.PAID
    page = first.get(f"/admin/withdrawals/{w.id}").data.decode()
    assert 'data-outcome="paid"' in page and f"SBX{w.no}" in page
    assert f"payout:{w.no}" in page and f"withdraw:{w.no}" in page


def test_below_the_threshold_one_approval_suffices(admin):
    # given a withdrawal under review below the second-approval threshold
    w = due_withdrawal(SMALL)
    f = admin("finance")
    # when one finance operator approves it
    answer = approve(f, w)
    # then it is approved at once
    assert answer.status_code == 302
    assert current(w).state == WithdrawalState.APPROVED
    assert topics(w) == ["withdrawal.review", "withdrawal.approved"]
    # and approving it again changes nothing
    assert approve(f, w).status_code == 302 and current(w).state == WithdrawalState.APPROVED
    assert approvers(w) == [f"operator:{f.op.id}"]


def test_the_command_line_counts_as_one_approver(admin, cli):
    # given a large withdrawal
    w = due_withdrawal(LARGE)
    # when the CLI approves it, it stays under review; the CLI again is refused
    first = cli("withdrawals", "approve", str(w.id))
    assert first.exit_code == 0 and "second, different operator" in first.output, first.output
    assert current(w).state == WithdrawalState.REVIEW
    assert cli("withdrawals", "approve", str(w.id)).exit_code == 1
    # when a finance operator approves it in the admin
    assert approve(admin("finance"), w).status_code == 302
    # then it is approved, with both approvers kept
    assert current(w).state == WithdrawalState.APPROVED
    assert approvers(w)[0] == "operator:cli" and len(approvers(w)) == 2


def prepared(a, w: Withdrawal) -> dict:  # noqa: ANN001
    """The form a page holds (CSRF and a one-time action token), read before the race."""
    body = a.get(f"/admin/withdrawals/{w.id}").data
    return {"csrf_token": (CSRF.search(body).group(1) or CSRF.search(body).group(2)).decode(),
            "action_token": ACTION.search(body).group(1).decode()}


def race(posts: list[tuple]) -> list[int]:
    """POST each (client, url, form) in its own thread, all released at once; the statuses."""
    pending = list(posts)

    def one() -> int:
        a, url, form = pending.pop()
        return a.client.post(url, data=form).status_code

    return at_once(one, len(posts))


def test_two_operators_approving_at_the_same_moment_approve_once(admin):
    # given a large withdrawal and two finance operators with the page open
    w = due_withdrawal(LARGE)
    a, b = admin("finance"), admin("finance")
    url = f"/admin/withdrawals/{w.id}/approve"
    # when both approve at the same moment
    statuses = race([(a, url, prepared(a, w)), (b, url, prepared(b, w))])
    # then one was first and the other second: approved once, with two distinct approvals
    assert sorted(statuses) == [302, 302]
    assert current(w).state == WithdrawalState.APPROVED
    assert sorted(approvers(w)) == sorted([f"operator:{a.op.id}", f"operator:{b.op.id}"])
    assert topics(w).count("withdrawal.approved") == 1 and topics(w).count("withdrawal.approval_recorded") == 1


def test_one_operator_approving_from_two_tabs_at_once_counts_once(admin):
    # given a large withdrawal open in two tabs of the same operator
    w = due_withdrawal(LARGE)
    a = admin("finance")
    url = f"/admin/withdrawals/{w.id}/approve"
    # when both tabs approve at the same moment
    statuses = race([(a, url, prepared(a, w)), (a, url, prepared(a, w))])
    # then one approval is recorded, the other refused, and the withdrawal still waits for a second operator
    assert sorted(statuses) == [302, 409]
    assert approvers(w) == [f"operator:{a.op.id}"] and current(w).state == WithdrawalState.REVIEW
    assert len(audits("withdrawal.approve")) == 1


def test_reject_needs_a_reason_and_returns_the_money(admin):
    # given a large withdrawal with one approval
    w = due_withdrawal(LARGE)
    f = admin("finance")
    approve(f, w)
    # when it is rejected without a reason, nothing changes
    refused = f.post(f"/admin/withdrawals/{w.id}/reject", {"reason": ""}, page=f"/admin/withdrawals/{w.id}")
    assert refused.status_code == 400 and current(w).state == WithdrawalState.REVIEW
    # when another finance operator rejects it with a reason
    done = admin("finance").post(f"/admin/withdrawals/{w.id}/reject", {"reason": "账户信息不符"},
                                 page=f"/admin/withdrawals/{w.id}")
    # then it is rejected, the money is available again, and the rejection is audited
    assert done.status_code == 302
    assert (current(w).state, current(w).last_error) == (WithdrawalState.REJECTED, "账户信息不符")
    with db.connection_context():
        assert withdrawals.balances(w.creator_id)["available_fen"] == LARGE
    assert [r.reason for r in audits("withdrawal.reject")] == ["账户信息不符"]
    # and it can no longer be approved
    late = approve(admin("finance"), w)
    assert late.status_code == 409 and current(w).state == WithdrawalState.REJECTED


def test_roles_without_the_permission_are_refused_and_nothing_changes(admin):
    # given a withdrawal under review
    w = due_withdrawal(SMALL)
    for role in ("support", "ops", "readonly"):
        a = admin(role)
        # when they try to approve or reject it (with valid CSRF and action tokens)
        for path, form in (("approve", {}), ("reject", {"reason": "越权尝试"})):
            answer = a.post(f"/admin/withdrawals/{w.id}/{path}", form, page="/admin/")
            # then each is a 403
            assert answer.status_code == 403, (role, path)
    # and support cannot even open the queue; readonly sees it without the action forms
    assert admin("support").get("/admin/withdrawals/").status_code == 403
    page = admin("readonly").get(f"/admin/withdrawals/{w.id}")
    assert page.status_code == 200 and b'id="approve-form"' not in page.data
    # and nothing changed
    assert current(w).state == WithdrawalState.REVIEW and approvers(w) == []
    with db.connection_context():
        assert AuditEntry.select().where(AuditEntry.action.startswith("withdrawal.")).count() == 0


def test_the_queue_lists_withdrawals_by_state(admin):
    # given withdrawals in review, approved and rejected
    review, approved, rejected = due_withdrawal(LARGE), due_withdrawal(20_000), due_withdrawal(SMALL)
    with db.connection_context():
        payouts.reject(rejected.id, "operator:cli", "测试")
    a = admin("readonly")
    # when each tab is opened
    tabs = {state: a.get(f"/admin/withdrawals/?state={state}").data.decode()
            for state in ("review", "approved", "rejected", "paid")}
    # then each lists the withdrawals in its state
    assert f'data-withdrawal="{review.id}"' in tabs["review"]
    assert f'data-withdrawal="{approved.id}"' not in tabs["review"]
    assert f'data-withdrawal="{approved.id}"' in tabs["approved"]
    assert f'data-withdrawal="{rejected.id}"' in tabs["rejected"]
    assert "data-withdrawal=" not in tabs["paid"]
    assert 'id="waiting">1<' in tabs["review"]
    # and the review tab is the default, an unknown state a 404
    assert f'data-withdrawal="{review.id}"' in a.get("/admin/withdrawals/").data.decode()
    assert a.get("/admin/withdrawals/?state=bogus").status_code == 404
