"""Admin pages: withdrawals — the queue by state, a withdrawal's story (approvals, payout
attempts and the provider's answers, its ledger entries), approve and reject.

Approving goes through `models.payouts.approve`, the same service as `qianxing withdrawals
approve`: above WITHDRAW_SECOND_APPROVAL_ABOVE_FEN it takes two different operators (the first
approval is recorded and the withdrawal stays under review; the same operator again is refused),
serialised on the withdrawal's row lock (models/approvals.py). Rejecting needs a reason and ends
it. Both are one-time, audited actions (`actions.perform`).
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin.actions import flash_duplicate, form_reason, perform
from miniapp_api.admin.base import QxView
from miniapp_api.admin.security import must, personal
from miniapp_api.deps import runtime
from models import approvals, payouts
from models.errors import DomainError
from models.events import events_for
from models.ledger_reading import entries_of
from models.money import rmb
from models.network import Creator
from models.operators import Operator
from models.team import openid_of
from models.withdrawals import Withdrawal, WithdrawalState

TABS = (WithdrawalState.REVIEW, WithdrawalState.APPROVED, WithdrawalState.PAYING, WithdrawalState.PAID,
        WithdrawalState.FAILED, WithdrawalState.REJECTED)
TAB_LABELS = {WithdrawalState.REVIEW: _l("待审核"), WithdrawalState.APPROVED: _l("已批准待打款"),
              WithdrawalState.PAYING: _l("打款中"), WithdrawalState.PAID: _l("已打款"),
              WithdrawalState.FAILED: _l("打款失败"), WithdrawalState.REJECTED: _l("已驳回")}


def _int(value: str | None) -> int | None:
    try:
        number = int(value or "")
    except ValueError:
        return None
    return number if number > 0 else None


def _threshold() -> int:
    return runtime().settings.WITHDRAW_SECOND_APPROVAL_ABOVE_FEN


def _actor_names(actors: list[str]) -> dict[str, str]:
    """`operator:12` -> the operator's name, for the page (events and approvals store the id)."""
    ids = {int(a.split(":", 1)[1]) for a in actors if a.startswith("operator:") and a.split(":", 1)[1].isdigit()}
    names = {op.id: op.name for op in Operator.select(Operator.id, Operator.name).where(Operator.id.in_(list(ids)))} \
        if ids else {}
    return {f"operator:{i}": n for i, n in names.items()}


class WithdrawalsView(QxView):
    permission = "withdrawals.view"

    @expose("/")
    def index(self) -> Any:
        state = request.args.get("state") or WithdrawalState.REVIEW.value
        if state not in {s.value for s in TABS}:
            abort(404)
        rows, more = approvals.queue(state, before_id=_int(request.args.get("before")))
        creators = {c.id: c for c in Creator.select(Creator.id, Creator.code, Creator.name).where(
            Creator.id.in_([w.creator_id for w in rows]))} if rows else {}
        waiting = Withdrawal.select().where(Withdrawal.state == WithdrawalState.REVIEW.value).count()
        return self.render("qx/withdrawals.html", rows=rows, more=more, state=state, tabs=TABS, labels=TAB_LABELS,
                           creators=creators, waiting=waiting, rmb=rmb, threshold=_threshold(),
                           needed=approvals.needed)

    def _withdrawal(self, withdrawal_id: int) -> Withdrawal:
        found = Withdrawal.get_or_none(Withdrawal.id == withdrawal_id)
        if found is None:
            abort(404)
        return found

    def _detail(self, w: Withdrawal, status: int = 200) -> Any:
        who = must("withdrawals.view")
        creator = Creator.get_by_id(w.creator_id)
        history = events_for(w.subject)
        approved_by = approvals.approvers(w.id)
        names = _actor_names([e.actor for e in history] + [a.approver for a in approved_by]
                             + ([w.reviewed_by] if w.reviewed_by else []))
        mine = f"operator:{who.id}" in {a.approver for a in approved_by}
        page = self.render(
            "qx/withdrawal.html", w=w, creator=creator, openid=personal(openid_of(creator)), history=history,
            attempts=approvals.attempts(history), approvals=approved_by, names=names, rmb=rmb,
            needed=approvals.needed(w.amount_fen, _threshold()), threshold=_threshold(), mine=mine,
            txns=entries_of(approvals.ledger_keys(w)), labels=TAB_LABELS,
            can_approve=who.can("withdrawals.approve") and w.state == WithdrawalState.REVIEW,
            can_reject=who.can("withdrawals.reject") and w.state in (WithdrawalState.REVIEW, WithdrawalState.APPROVED))
        return page if status == 200 else (page, status)

    @expose("/<int:withdrawal_id>")
    def detail(self, withdrawal_id: int) -> Any:
        return self._detail(self._withdrawal(withdrawal_id))

    @expose("/<int:withdrawal_id>/approve", methods=["POST"])
    def approve(self, withdrawal_id: int) -> Any:
        who = must("withdrawals.approve")
        w = self._withdrawal(withdrawal_id)
        before = {"state": w.state, "approvals": [a.approver for a in approvals.approvers(w.id)]}
        actor, threshold = f"operator:{who.id}", _threshold()
        try:
            outcome = perform("withdrawal.approve", w.subject, reason=form_reason(required=False), before=before,
                              run=lambda: payouts.approve(w.id, actor, second_above_fen=threshold),
                              after=lambda r: {"state": r.state, "reviewed_by": r.reviewed_by,
                                               "approvals": [a.approver for a in approvals.approvers(w.id)]},
                              permission="withdrawals.approve")
        except approvals.SameApprover:
            flash(_("你已经批准过这笔提现。金额超过 %(limit)s，需要另一位操作员第二次批准。", limit=rmb(threshold)),
                  "error")
            return self._detail(self._withdrawal(w.id), status=409)
        except DomainError as exc:
            flash(exc.message, "error")
            return self._detail(self._withdrawal(w.id), status=409 if exc.status == 409 else 400)
        if outcome.duplicate:
            flash_duplicate()
        elif outcome.result.state == WithdrawalState.REVIEW:
            flash(_("已记录你的批准（第 1 位，共需 2 位）。金额超过 %(limit)s，还需要另一位操作员批准。",
                    limit=rmb(threshold)), "success")
        elif before["state"] != WithdrawalState.REVIEW:
            flash(_("这笔提现此前已经批准"), "warning")
        else:
            flash(_("已批准，将在打款时间到达后打款"), "success")
        return redirect(url_for(".detail", withdrawal_id=w.id))

    @expose("/<int:withdrawal_id>/reject", methods=["POST"])
    def reject(self, withdrawal_id: int) -> Any:
        who = must("withdrawals.reject")
        w = self._withdrawal(withdrawal_id)
        actor = f"operator:{who.id}"
        try:
            reason = form_reason()
            outcome = perform("withdrawal.reject", w.subject, reason=reason, before={"state": w.state},
                              run=lambda: payouts.reject(w.id, actor, reason),
                              after=lambda r: {"state": r.state}, permission="withdrawals.reject")
        except DomainError as exc:
            flash(exc.message, "error")
            return self._detail(self._withdrawal(w.id), status=409 if exc.status == 409 else 400)
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(_("已驳回，金额已退回达人的可提现余额"), "success")
        return redirect(url_for(".detail", withdrawal_id=w.id))


def register(admin: Admin) -> None:
    """Adds this area's views to the admin."""
    admin.add_view(WithdrawalsView(name=_l("提现"), endpoint="withdrawals", url="withdrawals"))
