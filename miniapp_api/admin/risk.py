"""Admin pages: risk review cases (issue 15) — the queue and a case's page.

    GET  /admin/risk/cases/                       cases by state (open by default), outcome, "mine";
                                                  keyset pages (?before=<id>); the header counts open
                                                  cases, the orders they hold and the money waiting
    GET  /admin/risk/cases/<id>                   the rules that fired with their evidence, the linked
                                                  orders, withdrawals under review, the identities with
                                                  their neighbours and the evidence graph (ECharts)
    POST /admin/risk/cases/<id>/assign            to me, to an operator by name, or to nobody
    POST /admin/risk/cases/<id>/clear             with a note: the holds are released
    POST /admin/risk/cases/<id>/confirm           with a note and an optional penalty (downgrade by
                                                  levels or to a floor, withdrawals suspended for days)
    POST /admin/risk/cases/<id>/allowlist         with a note, an end date and the rule codes

`risk.view` opens the pages; every POST needs `risk.decide` (refused with 403 before anything is
read) and goes through `actions.perform` (once per form, audited with the case before and after).
A refusal of the service (case_decided, note_required, invalid_penalty, until_required, ...) is a
message on the case page and nothing is written. The services are models/risk_cases.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin import risk_forms as forms
from miniapp_api.admin.actions import flash_duplicate, perform
from miniapp_api.admin.base import QxView
from miniapp_api.admin.security import current, must
from models import risk_admin, risk_cases, risk_rules
from models.errors import DomainError
from models.money import rmb
from models.operators import Operator
from models.risk_tables import RiskCase

MAX_ID = 2**63 - 1
DECIDE = forms.DECIDE


def _before() -> int | None:
    raw = (request.args.get("before") or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) <= MAX_ID:
        abort(400)
    return int(raw)


def snapshot(case: RiskCase) -> dict[str, Any]:
    """The case as its audit rows record it."""
    return {"case": case.id, "creator": case.creator_id, "state": case.state, "outcome": case.outcome,
            "score": case.score, "held_fen": case.held_fen, "assignee": case.assignee,
            "decided_by": case.decided_by, "note": case.decision_note}


def actor() -> str:
    who = current()
    return f"operator:{who.id}" if who else "operator:?"


def helpers() -> dict[str, Any]:
    return {"rmb": rmb, "outcomes": forms.OUTCOME_LABELS, "states": forms.STATE_LABELS,
            "scopes": forms.SCOPE_LABELS, "identity_labels": forms.IDENTITY_LABELS, "summary": forms.summary,
            "when": forms.when}


class RiskCasesView(QxView):
    permission = "risk.view"

    @expose("/")
    def index(self) -> Any:
        who = must("risk.view")
        state = request.args.get("state", "open")
        outcome = request.args.get("outcome") or ""
        mine = request.args.get("mine") == "1"
        if state not in (*risk_admin.STATES, "all") or outcome not in ("", *risk_admin.OUTCOMES):
            abort(404)
        rows = risk_admin.queue(state=None if state == "all" else state, outcome=outcome or None,
                                assignee=who.name if mine else None, before_id=_before(),
                                limit=risk_admin.PAGE)
        more = rows[-1].case.id if len(rows) == risk_admin.PAGE else None
        filters = {"state": state, "outcome": outcome or None, "mine": "1" if mine else None}
        return self.render("qx/risk/cases.html", rows=rows, more=more, filters=filters, state=state,
                           outcome=outcome, mine=mine, head=risk_cases.summary(),
                           state_keys=(*risk_admin.STATES, "all"), outcome_keys=risk_admin.OUTCOMES, **helpers())

    def _case(self, case_id: int) -> RiskCase:
        if case_id > MAX_ID:
            abort(404)
        try:
            return risk_cases.get_case(case_id)
        except DomainError:
            abort(404)

    def _detail(self, case_id: int, status: int = 200, form: dict | None = None) -> Any:
        who = must("risk.view")
        self._case(case_id)
        found = risk_cases.evidence(case_id)
        case = found.case
        fired = sorted({h.get("code") for h in found.hits if h.get("code")})
        operators = [name for (name,) in Operator.select(Operator.name).where(Operator.active == True)  # noqa: E712
                     .order_by(Operator.name).limit(200).tuples()]
        page = self.render(
            "qx/risk/case.html", case=case, creator=found.creator, ev=found, fired=fired,
            graph=forms.graph_data(found.graph), withdrawal_states=forms.WITHDRAWAL_LABELS,
            rules=sorted(risk_rules.BY_CODE), operators=operators, form=form or {}, me=who.name,
            can_decide=who.can(DECIDE), is_open=case.state == "open", **helpers())
        return page if status == 200 else (page, status)

    @expose("/<int:case_id>")
    def detail(self, case_id: int) -> Any:
        return self._detail(case_id)

    def _decide(self, case_id: int, action: str, run: Callable[[], RiskCase], done: str) -> Any:
        """Run a decision on the case through `perform`; a refusal is a message on its page."""
        form = {k: v for k, v in request.form.items(multi=False) if k not in ("csrf_token", "action_token")}
        try:
            before = snapshot(self._case(case_id))
            outcome = perform(f"risk.case_{action}", f"risk_case:{case_id}", reason=forms.text("note"),
                              before=before, run=run, after=snapshot, permission=DECIDE)
        except DomainError as exc:
            if exc.status == 403:
                abort(403)
            flash(forms.message_of(exc), "error")
            return self._detail(case_id, forms.status_of(exc), form)
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(done, "success")
        return redirect(url_for(".detail", case_id=case_id))

    @expose("/<int:case_id>/assign", methods=["POST"])
    def assign(self, case_id: int) -> Any:
        who = must(DECIDE)  # refused before anything is read or written
        try:
            to = forms.assignee(who.name)
        except DomainError as exc:
            flash(forms.message_of(exc), "error")
            return self._detail(self._case(case_id).id, 400)
        done = _("已分配给 %(name)s", name=to) if to else _("已取消分配")
        return self._decide(case_id, "assign", lambda: risk_cases.assign(case_id, to, actor=actor()), done)

    @expose("/<int:case_id>/clear", methods=["POST"])
    def clear(self, case_id: int) -> Any:
        must(DECIDE)
        return self._decide(case_id, "clear", lambda: risk_cases.clear(case_id, actor=actor(), note=forms.text("note")),
                            _("已放行：冻结的佣金按正常流程结算"))

    @expose("/<int:case_id>/confirm", methods=["POST"])
    def confirm(self, case_id: int) -> Any:
        must(DECIDE)

        def run() -> RiskCase:
            return risk_cases.confirm(case_id, actor=actor(), note=forms.text("note"), penalty=forms.penalty())

        return self._decide(case_id, "confirm", run, _("已确认违规：相关佣金已冲回或追回"))

    @expose("/<int:case_id>/allowlist", methods=["POST"])
    def allowlist(self, case_id: int) -> Any:
        must(DECIDE)

        def run() -> RiskCase:
            return risk_cases.allowlist(case_id, actor=actor(), note=forms.text("note"), until=forms.until(),
                                        codes=forms.codes())

        return self._decide(case_id, "allowlist", run, _("已加入白名单并放行"))


def register(admin: Admin) -> None:
    """Adds this area's views to the admin (miniapp_api/admin/risk_rules.py adds the rest of 风控)."""
    admin.add_view(RiskCasesView(name=_l("风控案件"), endpoint="risk_cases", url="risk/cases",
                                 category=forms.CATEGORY))
