"""System pages: the audit log (read-only) and operator accounts (owner only)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_admin.contrib.peewee.filters import FilterEqual, FilterLike
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin import local_time
from miniapp_api.admin.actions import flash_duplicate, form_reason, perform
from miniapp_api.admin.base import QxModelView, QxView
from miniapp_api.admin.security import current, personal
from models import operators
from models.audit import AuditEntry
from models.errors import DomainError, InvalidInput
from models.operators import Operator, Role

# What finance may read in the audit log besides its own rows: the money side of the business.
FINANCE_ACTIONS = ("order.", "withdrawal.", "ledger.", "export.", "refund.")


class AuditLogView(QxModelView):
    """Every operator action, newest first. No create, edit or delete: the view offers none and
    the database refuses UPDATE and DELETE on the table (migration 0008)."""

    permission = "audit.view"
    audit_name = "audit"
    column_list = ("created_at", "operator_name", "role", "action", "object", "reason", "ip")
    column_details_list = ("id", "created_at", "operator_id", "operator_name", "role", "action", "object",
                           "before", "after", "reason", "ip", "request_key")
    column_labels = {"created_at": _l("时间"), "operator_name": _l("操作员"), "role": _l("角色"),
                     "action": _l("操作"), "object": _l("对象"), "reason": _l("原因"), "ip": "IP",
                     "before": _l("之前"), "after": _l("之后")}
    column_default_sort = ("id", True)
    column_searchable_list = ("object", "reason")
    column_filters = (FilterEqual(AuditEntry.operator_name, _l("操作员")),
                      FilterLike(AuditEntry.action, _l("操作")),
                      FilterEqual(AuditEntry.object, _l("对象")))
    column_formatters = {"ip": lambda v, c, m, n: personal(m.ip, 4, 0),
                         "created_at": lambda v, c, m, n: local_time(m.created_at)}
    column_formatters_detail = column_formatters

    def get_query(self) -> Any:
        query = AuditEntry.select()
        who = current()
        if who is None:
            return query.where(AuditEntry.id < 0)
        if who.can("audit.view_all"):
            return query
        money = [AuditEntry.action.startswith(prefix) for prefix in FINANCE_ACTIONS]
        scope = AuditEntry.operator_id == who.id
        for clause in money:
            scope |= clause
        return query.where(scope)

    def get_count_query(self) -> Any:
        return self.get_query().select()


class OperatorsView(QxView):
    permission = "operators.manage"

    @expose("/")
    def index(self) -> Any:
        rows = list(Operator.select().order_by(Operator.id))
        return self.render("qx/operators.html", rows=rows, roles=[r.value for r in Role], shown=None)

    @expose("/create", methods=["POST"])
    def create(self) -> Any:
        name, role = request.form.get("name") or "", request.form.get("role") or ""
        try:
            outcome = perform("operator.create", f"operator-name:{name[:60]}",
                              run=lambda: operators.create_operator(name, role),
                              after=lambda r: {"id": r[0].id, "name": r[0].name, "role": r[0].role})
        except DomainError as exc:
            flash(exc.message, "error")
            return self.index(), 400
        if outcome.duplicate:
            flash_duplicate()
            return redirect(url_for(".index"))
        op, password = outcome.result
        flash(_("已创建操作员 %(name)s", name=op.name), "success")
        rows = list(Operator.select().order_by(Operator.id))
        return self.render("qx/operators.html", rows=rows, roles=[r.value for r in Role],
                           shown={"name": op.name, "password": password})

    @expose("/<int:operator_id>/<any(disable,enable,reset_password,reset_totp,role):what>", methods=["POST"])
    def act(self, operator_id: int, what: str) -> Any:
        who = current()
        op = Operator.get_or_none(Operator.id == operator_id)
        if op is None or who is None:
            flash(_("页面不存在"), "error")
            return redirect(url_for(".index")), 404
        before = {"active": op.active, "role": op.role, "totp": bool(op.totp_secret)}
        shown = None
        try:
            reason = form_reason()
            if op.id == who.id and what in ("disable", "role"):
                raise InvalidInput(_("不能停用自己或修改自己的角色"), code="self_lockout")

            def run() -> Any:
                nonlocal shown
                if what in ("disable", "enable"):
                    operators.set_active(op, what == "enable")
                elif what == "reset_password":
                    import secrets

                    password = secrets.token_urlsafe(12)
                    operators.set_password(op, password, one_time=True)
                    shown = {"name": op.name, "password": password}
                elif what == "reset_totp":
                    operators.reset_totp(op)
                else:
                    operators.set_role(op, request.form.get("role") or "")

            outcome = perform(f"operator.{what}", f"operator:{op.id}", run=run, reason=reason, before=before,
                              after=lambda _r: {"active": op.active, "role": op.role, "totp": bool(op.totp_secret)})
        except DomainError as exc:
            flash(exc.message, "error")
            return redirect(url_for(".index"))
        if outcome.duplicate:
            flash_duplicate()
            return redirect(url_for(".index"))
        flash(_("已完成"), "success")
        if shown:
            rows = list(Operator.select().order_by(Operator.id))
            return self.render("qx/operators.html", rows=rows, roles=[r.value for r in Role], shown=shown)
        return redirect(url_for(".index"))


def register(admin: Admin) -> None:
    admin.add_view(AuditLogView(AuditEntry, name=_l("审计日志"), endpoint="audit", url="audit",
                                category=_l("系统")))
    admin.add_view(OperatorsView(name=_l("操作员"), endpoint="operators", url="operators", category=_l("系统")))
