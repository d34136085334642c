"""Admin pages: coupons (issue 14) — the list (name, code, kind, funder, window, uses / max,
spent / budget, active), creating a coupon (every field of CouponSpec: kind and amounts, scope
by product ids and SKU codes with exclusions, funder, campaign, window, limits), a coupon's page
with its redemptions (order, shopper, discount, funder, state), withdrawing it, and issuing it
to a list of shoppers (pasted user ids or openids, or a CSV upload; checked whole, then issued
in bulk through `coupons.issue` with source "operator" and a source_key of the form's one-time
token, so a form sent twice issues nothing twice).

Every POST goes through `actions.perform` (once per form, audited, `promo.manage`); bad input is
a flashed message on the form and nothing is written. `promo.view` opens the pages.
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
from miniapp_api.admin.live_forms import row_id
from miniapp_api.admin.security import must
from miniapp_api.deps import runtime
from models import coupons, promo_admin
from models.coupons import Coupon
from models.errors import DomainError
from models.live_rules import local_time
from models.money import rmb

STATE_LABELS = {"reserved": _l("已占用"), "consumed": _l("已使用"), "released": _l("已释放"), "returned": _l("已退回")}


def _tz() -> str:
    return runtime().settings.LIVE_TIMEZONE


def shown(moment: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return local_time(moment, _tz(), fmt) or "—"


def _snapshot(c: Coupon) -> dict[str, Any]:
    return {"coupon": c.id, "name": c.name, "code": c.code, "kind": c.kind, "active": c.active, "uses": c.uses,
            "max_uses": c.max_uses, "spent_fen": c.spent_fen, "budget_fen": c.budget_fen, "campaign": c.campaign}


def terms(c: Coupon) -> str:
    """What the coupon takes off, as the pages show it."""
    if c.kind == "amount_off":
        return _("满 %(t)s 减 %(a)s", t=rmb(c.threshold_fen), a=rmb(c.amount_off_fen)) if c.threshold_fen \
            else _("立减 %(a)s", a=rmb(c.amount_off_fen))
    if c.kind == "percent_off":
        off = f"{c.percent_bp / 100:g}%"
        text = _("%(p)s 折扣", p=off)
        if c.threshold_fen:
            text = _("满 %(t)s ", t=rmb(c.threshold_fen)) + text
        return text + (_("，最多减 %(cap)s", cap=rmb(c.cap_fen)) if c.cap_fen else "")
    return _("一口价 %(p)s", p=rmb(c.fixed_price_fen or 0))


class CouponsView(QxView):
    permission = "promo.view"

    def _common(self) -> dict[str, Any]:
        return {"kinds": forms.KIND_LABELS, "scopes": forms.SCOPE_LABELS, "campaigns": forms.CAMPAIGN_LABELS,
                "shown": shown, "rmb": rmb, "terms": terms, "tz": _tz()}

    @expose("/")
    def index(self) -> Any:
        who = must("promo.view")
        state = request.args.get("state") or ""
        if state not in ("", "active", "inactive"):
            abort(404)
        rows = promo_admin.coupon_page(row_id(request.args.get("before")),
                                       active={"active": True, "inactive": False}.get(state))
        return self.render("qx/promo/coupons.html", rows=rows, state=state, can_manage=who.can("promo.manage"),
                           more=rows[-1].coupon.id if len(rows) == promo_admin.PAGE else None, **self._common())

    # ---- create ------------------------------------------------------------------------------

    def _new(self, form: dict[str, str], status: int = 200) -> Any:
        must("promo.manage")
        page = self.render("qx/promo/coupon_new.html", form=form, **self._common())
        return page if status == 200 else (page, status)

    @expose("/new")
    def new(self) -> Any:
        return self._new({"kind": "amount_off", "scope": "shelf", "per_user_limit": "1"})

    @expose("/new", methods=["POST"])
    def create(self) -> Any:
        who = must("promo.manage")
        form = {k: v for k, v in request.form.items() if k not in ("csrf_token", TOKEN_FIELD)}
        try:
            spec = forms.coupon_spec(_tz())
            outcome = perform("coupon.create", "coupon:new", reason=form_reason(required=False),
                              run=lambda: coupons.create_coupon(spec, actor=f"operator:{who.id}"),
                              after=_snapshot, permission="promo.manage")
        except DomainError as exc:
            flash(forms.message_of(exc), "error")
            return self._new(form, 400)
        if outcome.duplicate:
            flash_duplicate()
            return redirect(url_for(".index"))
        flash(_("优惠券已创建：%(name)s", name=outcome.result.name), "success")
        return redirect(url_for(".detail", coupon_id=outcome.result.id))

    # ---- one coupon ----------------------------------------------------------------------------

    def _detail(self, coupon_id: int, status: int = 200, form: dict | None = None) -> Any:
        who = must("promo.view")
        try:
            coupon = promo_admin.get_coupon(coupon_id)
        except DomainError:
            abort(404)
        rows = promo_admin.redemptions(coupon_id, row_id(request.args.get("before")))
        page = self.render("qx/promo/coupon.html", c=coupon, owner=promo_admin.owner_code(coupon.owner_creator_id),
                           rows=rows, states=STATE_LABELS, form=form or {}, can_manage=who.can("promo.manage"),
                           more=rows[-1].redemption.id if len(rows) == promo_admin.PAGE else None, **self._common())
        return page if status == 200 else (page, status)

    @expose("/<int:coupon_id>")
    def detail(self, coupon_id: int) -> Any:
        return self._detail(coupon_id)

    @expose("/<int:coupon_id>/deactivate", methods=["POST"])
    def deactivate(self, coupon_id: int) -> Any:
        who = must("promo.manage")
        try:
            before = _snapshot(promo_admin.get_coupon(coupon_id))
            outcome = perform("coupon.deactivate", f"coupon:{coupon_id}", reason=form_reason(), before=before,
                              run=lambda: promo_admin.deactivate_coupon(coupon_id, actor=f"operator:{who.id}"),
                              after=_snapshot, permission="promo.manage")
        except DomainError as exc:
            flash(forms.message_of(exc), "error")
            return self._detail(coupon_id, 404 if exc.status == 404 else (409 if exc.status == 409 else 400),
                                dict(request.form))
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(_("优惠券已停用"), "success")
        return redirect(url_for(".detail", coupon_id=coupon_id))

    @expose("/<int:coupon_id>/issue", methods=["POST"])
    def issue(self, coupon_id: int) -> Any:
        who = must("promo.manage")
        token = request.form.get(TOKEN_FIELD) or ""
        try:
            promo_admin.get_coupon(coupon_id)
            users = promo_admin.resolve_recipients(promo_admin.parse_recipients(forms.recipients_text()))
            key = promo_admin.batch_key(token)
            outcome = perform("coupon.issue", f"coupon:{coupon_id}", reason=form_reason(),
                              run=lambda: promo_admin.issue_to_list(coupon_id, users, key=key,
                                                                    actor=f"operator:{who.id}"),
                              after=lambda made: {"recipients": len(users), "granted": made, "source_key": key},
                              permission="promo.manage")
        except DomainError as exc:
            flash(forms.message_of(exc), "error")
            status = 404 if exc.status == 404 else (409 if exc.status == 409 else 400)
            return self._detail(coupon_id, status, {k: v for k, v in request.form.items() if k == "recipients"})
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(_("已发放 %(n)s 张（名单 %(total)s 人，已有的不重复发放）", n=outcome.result, total=len(users)),
                  "success")
        return redirect(url_for(".detail", coupon_id=coupon_id))


def register(admin: Admin) -> None:
    """Adds this area's views to the admin."""
    admin.add_view(CouponsView(name=_l("优惠券"), endpoint="coupons_admin", url="promo/coupons",
                               category=_l("营销")))
