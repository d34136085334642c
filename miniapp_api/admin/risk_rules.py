"""Admin pages: the risk rules, penalties and allowlist (issue 15).

    GET  /admin/risk/rules/                  the rules in force: code, scope, what it catches,
                                             version, weight, enabled, blocking, parameters
    GET  /admin/risk/rules/<code>            a rule's edit form and its version history
    POST /admin/risk/rules/<code>/edit       params (JSON), weight, enabled, blocking (edge scopes
                                             only) and a reason -> `risk_rules.update_rule`: a new
                                             version; past decisions keep naming the one they used
    GET  /admin/risk/penalties/              penalties not lifted
    POST /admin/risk/penalties/<id>/lift     with a reason -> `risk_penalties.lift`
    GET  /admin/risk/allow/                  allowlist entries in force
    POST /admin/risk/allow/<id>/revoke       with a reason -> `risk_cases.revoke_allow`

`risk.view` opens the pages; editing a rule needs `risk.rules` (the owner), lifting and revoking
`risk.decide`; each POST is refused with 403 before anything is read, and goes through
`actions.perform` (once per form, audited: a rule change with the version before and after).
Bad input (unknown code, bad JSON, a negative threshold, an absurd window) is a message on the
form and nothing is written.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin import risk_forms as forms
from miniapp_api.admin.actions import flash_duplicate, form_reason, perform
from miniapp_api.admin.base import QxView
from miniapp_api.admin.security import current, must
from models import risk_admin, risk_cases, risk_penalties, risk_rules
from models.errors import DomainError
from models.risk_tables import RiskAllow, RiskPenalty

MAX_ID = 2**63 - 1


def actor() -> str:
    who = current()
    return f"operator:{who.id}" if who else "operator:?"


def rule_snapshot(view: risk_rules.RuleView) -> dict[str, Any]:
    """A rule version as the audit rows record it."""
    out = dataclasses.asdict(view)
    out["created_at"] = str(view.created_at) if view.created_at else None
    return out


def _failed(exc: DomainError) -> None:
    if exc.status == 403:
        abort(403)
    flash(forms.message_of(exc), "error")


def _listed_action(index: Callable[[int], Any], act: Callable[[], Any], success: str) -> Any:
    """Run an audited action of a list page (`act` returns perform's outcome): a refusal shows
    its message on the list with its status, a repeated form acts once, else back to the list."""
    try:
        outcome = act()
    except DomainError as exc:
        _failed(exc)
        return index(forms.status_of(exc))
    if outcome.duplicate:
        flash_duplicate()
    else:
        flash(success, "success")
    return redirect(url_for(".index"))


class RiskRulesView(QxView):
    permission = "risk.view"

    def _common(self) -> dict[str, Any]:
        return {"scopes": forms.SCOPE_LABELS, "specs": risk_rules.BY_CODE, "blockable": forms.BLOCKABLE_SCOPES,
                "dumps": _dumps}

    @expose("/")
    def index(self) -> Any:
        return self._index()

    def _index(self, status: int = 200) -> Any:
        who = must("risk.view")
        order = list(forms.SCOPE_LABELS)
        rules = sorted(risk_rules.current().values(),
                       key=lambda r: (order.index(r.scope) if r.scope in order else len(order), r.code))
        page = self.render("qx/risk/rules.html", rules=rules, can_edit=who.can("risk.rules"), **self._common())
        return page if status == 200 else (page, status)

    def _rule(self, code: str, status: int = 200, form: dict | None = None) -> Any:
        who = must("risk.view")
        rule = risk_rules.current().get(code)
        if rule is None:
            abort(404)
        page = self.render("qx/risk/rule.html", rule=rule, history=risk_rules.history(code), form=form or {},
                           can_edit=who.can("risk.rules"), **self._common())
        return page if status == 200 else (page, status)

    @expose("/<code>")
    def rule(self, code: str) -> Any:
        return self._rule(code)

    @expose("/<code>/edit", methods=["POST"])
    def edit(self, code: str) -> Any:
        must("risk.rules")  # refused before anything is read or written
        form = {k: v for k, v in request.form.items(multi=False) if k not in ("csrf_token", "action_token")}
        rule = risk_rules.current().get(code)
        try:
            reason = form_reason()
            params, weight = forms.rule_params(), forms.rule_weight()
            blocking = bool(request.form.get("blocking")) if request.form.get("blocking_shown") else None
            outcome = perform(
                "risk.rule_update", f"risk_rule:{code[:32]}", reason=reason,
                before=rule_snapshot(rule) if rule else None, after=rule_snapshot, permission="risk.rules",
                run=lambda: risk_rules.update_rule(code, actor=actor(), note=reason[:200], params=params,
                                                   weight=weight, enabled=bool(request.form.get("enabled")),
                                                   blocking=blocking))
        except DomainError as exc:
            _failed(exc)
            if rule is None:
                return self._index(forms.status_of(exc))
            return self._rule(code, forms.status_of(exc), form)
        if outcome.duplicate:
            flash_duplicate()
        elif rule is not None and outcome.result.version == rule.version:
            flash(_("没有改动，规则仍是第 %(v)s 版", v=rule.version), "warning")
        else:
            flash(_("规则 %(code)s 已更新为第 %(v)s 版；之前的判定不受影响", code=code, v=outcome.result.version),
                  "success")
        return redirect(url_for(".rule", code=code))


def _dumps(params: dict[str, Any]) -> str:
    return json.dumps(params, ensure_ascii=False, sort_keys=True)


class RiskPenaltiesView(QxView):
    permission = "risk.view"

    @expose("/")
    def index(self) -> Any:
        return self._index()

    def _index(self, status: int = 200) -> Any:
        who = must("risk.view")
        rows = risk_penalties.active(limit=200)
        creators = risk_admin.creators_by_id({p.creator_id for p in rows})
        page = self.render("qx/risk/penalties.html", rows=rows, creators=creators, kinds=forms.PENALTY_LABELS,
                           can_decide=who.can(forms.DECIDE), detail=forms.penalty_detail)
        return page if status == 200 else (page, status)

    @expose("/<int:penalty_id>/lift", methods=["POST"])
    def lift(self, penalty_id: int) -> Any:
        must(forms.DECIDE)
        found = RiskPenalty.get_or_none(RiskPenalty.id == penalty_id) if penalty_id <= MAX_ID else None
        if found is None:
            abort(404)
        before = {"penalty": found.id, "creator": found.creator_id, "kind": found.kind, "lifted_at": None}

        def act() -> Any:
            reason = form_reason()
            return perform("risk.penalty_lift", f"creator:{found.creator_id}", reason=reason, before=before,
                           run=lambda: risk_penalties.lift(found.id, actor=actor(), reason=reason),
                           after=lambda p: {**before, "lifted_at": str(p.lifted_at), "lifted_by": p.lifted_by},
                           permission=forms.DECIDE)

        return _listed_action(self._index, act, _("处罚已解除，达人会收到通知"))


class RiskAllowView(QxView):
    permission = "risk.view"

    @expose("/")
    def index(self) -> Any:
        return self._index()

    def _index(self, status: int = 200) -> Any:
        who = must("risk.view")
        rows = risk_cases.allows(limit=200)
        creators = risk_admin.creators_by_id({a.subject_id for a in rows if a.subject_kind == "creator"})
        page = self.render("qx/risk/allow.html", rows=rows, creators=creators, can_decide=who.can(forms.DECIDE))
        return page if status == 200 else (page, status)

    @expose("/<int:allow_id>/revoke", methods=["POST"])
    def revoke(self, allow_id: int) -> Any:
        must(forms.DECIDE)
        found = RiskAllow.get_or_none(RiskAllow.id == allow_id) if allow_id <= MAX_ID else None
        if found is None:
            abort(404)
        before = {"allow": found.id, "subject": f"{found.subject_kind}:{found.subject_id}", "rule": found.rule_code,
                  "until": str(found.until), "revoked_at": str(found.revoked_at) if found.revoked_at else None}
        return _listed_action(self._index, lambda: perform(
            "risk.allow_revoke", f"{found.subject_kind}:{found.subject_id}", reason=form_reason(), before=before,
            permission=forms.DECIDE, run=lambda: risk_cases.revoke_allow(found.id, actor=actor()),
            after=lambda _r: {**before, "revoked_at": str(RiskAllow.get_by_id(found.id).revoked_at)}),
            _("白名单已撤销，规则重新对其生效"))


def register(admin: Admin) -> None:
    """Adds the rules, penalties and allowlist pages to the 风控 menu."""
    admin.add_view(RiskRulesView(name=_l("风控规则"), endpoint="risk_rules", url="risk/rules",
                                 category=forms.CATEGORY))
    admin.add_view(RiskPenaltiesView(name=_l("风控处罚"), endpoint="risk_penalties", url="risk/penalties",
                                     category=forms.CATEGORY))
    admin.add_view(RiskAllowView(name=_l("风控白名单"), endpoint="risk_allow", url="risk/allow",
                                 category=forms.CATEGORY))
