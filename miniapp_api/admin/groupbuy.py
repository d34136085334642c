"""Admin pages: group-buy (issue 14) — the activities (SKU, size, group price, window, limits,
teams started, units taken, whether unfilled teams are completed virtually, active), creating
one (`groupbuy.create_activity`), stopping one, an activity's teams (state, paid / size, virtual
seats, expiry), a team's members (order, state, refund), and the group refunds that keep
failing at WeChat Pay (`groupbuy.failing_refunds`: order, attempts, last error, next try) with
"retry now" (the next try brought forward, then the refund job queued after the commit).

Every POST goes through `actions.perform` (once per form, audited); activities need
`promo.manage`, a refund retry `promo.refund_retry` (money). `promo.view` opens the pages.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin import coupon_forms as forms
from miniapp_api.admin.actions import TOKEN_FIELD, flash_duplicate, form_reason, perform
from miniapp_api.admin.base import QxView
from miniapp_api.admin.coupons import shown
from miniapp_api.admin.live_forms import row_id
from miniapp_api.admin.orders import STATUS_LABELS
from miniapp_api.admin.security import must
from miniapp_api.deps import runtime
from models import groupbuy, promo_admin
from models.errors import DomainError
from models.groupbuy import GroupActivity, TeamState
from models.money import rmb
from tasks import queues

REFUND_LABELS = {"requested": _l("退款中"), "succeeded": _l("已退款"), "failed": _l("退款失败（将重试）")}
TEAM_LABELS = {"open": _l("拼团中"), "succeeded": _l("已成团"), "failed": _l("未成团")}
MEMBER_LABELS = {"joining": _l("待支付"), "paid": _l("已付款待成团"), "deliverable": _l("待发货"),
                 "delivered": _l("已发货"), "refunding": _l("退款中"), "refunded": _l("已退款"), "left": _l("已退出")}


def _snapshot(a: GroupActivity) -> dict[str, Any]:
    return {"activity": a.id, "title": a.title, "size": a.size, "group_price_fen": a.group_price_fen,
            "window_s": a.window_s, "virtual_complete": a.virtual_complete, "active": a.active}


def _status(exc: DomainError) -> int:
    return 404 if exc.status == 404 else (409 if exc.status == 409 else 400)


class GroupBuyView(QxView):
    permission = "promo.view"

    def _common(self) -> dict[str, Any]:
        return {"shown": shown, "rmb": rmb, "tz": runtime().settings.LIVE_TIMEZONE, "teams_labels": TEAM_LABELS,
                "member_labels": MEMBER_LABELS, "status_labels": STATUS_LABELS, "refund_labels": REFUND_LABELS}

    @expose("/")
    def index(self) -> Any:
        who = must("promo.view")
        rows = promo_admin.activity_page(row_id(request.args.get("before")))
        return self.render("qx/promo/activities.html", rows=rows, can_manage=who.can("promo.manage"),
                           more=rows[-1].activity.id if len(rows) == promo_admin.PAGE else None, **self._common())

    # ---- create ------------------------------------------------------------------------------

    def _new(self, form: dict[str, str], status: int = 200) -> Any:
        must("promo.manage")
        page = self.render("qx/promo/activity_new.html", form=form, **self._common())
        return page if status == 200 else (page, status)

    @expose("/new")
    def new(self) -> Any:
        return self._new({"size": "3", "window_minutes": "1440", "per_user_limit": "1"})

    @expose("/new", methods=["POST"])
    def create(self) -> Any:
        who = must("promo.manage")
        form = {k: v for k, v in request.form.items() if k not in ("csrf_token", TOKEN_FIELD)}
        try:
            spec = forms.activity_spec(runtime().settings.LIVE_TIMEZONE)
            outcome = perform("group.activity_create", f"sku:{spec.sku_code}", reason=form_reason(required=False),
                              run=lambda: groupbuy.create_activity(spec, actor=f"operator:{who.id}"),
                              after=_snapshot, permission="promo.manage")
        except DomainError as exc:
            flash(forms.message_of(exc), "error")
            return self._new(form, 400)
        if outcome.duplicate:
            flash_duplicate()
            return redirect(url_for(".index"))
        flash(_("拼团活动已创建：%(title)s", title=outcome.result.title), "success")
        return redirect(url_for(".detail", activity_id=outcome.result.id))

    # ---- one activity, its teams, a team's members ---------------------------------------------

    def _detail(self, activity_id: int, status: int = 200) -> Any:
        who = must("promo.view")
        try:
            row = promo_admin.get_activity(activity_id)
        except DomainError:
            abort(404)
        state = request.args.get("state") or ""
        if state and state not in {s.value for s in TeamState}:
            abort(404)
        teams = promo_admin.teams(activity_id, state=state or None, before=row_id(request.args.get("before")))
        page = self.render("qx/promo/activity.html", row=row, a=row.activity, teams=teams, state=state,
                           states=[s.value for s in TeamState], can_manage=who.can("promo.manage"),
                           more=teams[-1].id if len(teams) == promo_admin.PAGE else None, **self._common())
        return page if status == 200 else (page, status)

    @expose("/<int:activity_id>")
    def detail(self, activity_id: int) -> Any:
        return self._detail(activity_id)

    @expose("/<int:activity_id>/deactivate", methods=["POST"])
    def deactivate(self, activity_id: int) -> Any:
        who = must("promo.manage")
        try:
            before = _snapshot(promo_admin.get_activity(activity_id).activity)
            outcome = perform("group.activity_deactivate", f"group_activity:{activity_id}", reason=form_reason(),
                              before=before, after=_snapshot, permission="promo.manage",
                              run=lambda: promo_admin.deactivate_activity(activity_id, actor=f"operator:{who.id}"))
        except DomainError as exc:
            flash(forms.message_of(exc), "error")
            return self._detail(activity_id, _status(exc))
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(_("拼团活动已停止，进行中的团照常进行到结束"), "success")
        return redirect(url_for(".detail", activity_id=activity_id))

    @expose("/teams/<int:team_id>")
    def team(self, team_id: int) -> Any:
        must("promo.view")
        try:
            team = promo_admin.get_team(team_id)
        except DomainError:
            abort(404)
        row = promo_admin.get_activity(team.activity_id)
        return self.render("qx/promo/team.html", t=team, row=row, members=promo_admin.members(team_id),
                           **self._common())

    # ---- refunds that keep failing -------------------------------------------------------------

    @expose("/refunds")
    def refunds(self) -> Any:
        who = must("promo.view")
        return self.render("qx/promo/failing_refunds.html", rows=groupbuy.failing_refunds(200),
                           can_retry=who.can("promo.refund_retry"), **self._common())

    @expose("/refunds/<int:order_id>/retry", methods=["POST"])
    def retry(self, order_id: int) -> Any:
        who = must("promo.refund_retry")
        try:
            outcome = perform("group.refund_retry", f"order:{order_id}", reason=form_reason(required=False),
                              run=lambda: promo_admin.retry_refund_now(order_id, actor=f"operator:{who.id}"),
                              after=lambda r: {"attempts": r.attempts, "next_attempt_at": str(r.next_attempt_at)},
                              permission="promo.refund_retry")
        except DomainError as exc:
            flash(forms.message_of(exc), "error")
            return redirect(url_for(".refunds"))
        if outcome.duplicate:
            flash_duplicate()
        else:
            queues.refund_members([order_id])  # after the commit, as every enqueue
            flash(_("已安排立即重试退款"), "success")
        return redirect(url_for(".refunds"))


def register(admin: Admin) -> None:
    """Adds this area's views to the admin."""
    admin.add_view(GroupBuyView(name=_l("拼团"), endpoint="groupbuy_admin", url="promo/groupbuy",
                                category=_l("营销")))
