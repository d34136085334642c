"""Admin page: the orders a delivery or settlement batch set aside (models/failures.py), so an
operator sees them without the shell and retries one after fixing its cause.

    GET  /admin/orders/set-aside/                         open failures, newest first: ?job= &before=<id>
    POST /admin/orders/set-aside/<job>/<order_id>/retry   retry now, with a reason, audited:
         delivery   what `qianxing orders redeliver` does (orders.redeliver)
         settlement what `qianxing settle --retry-set-aside` does for this order (orders.retry_settlement)

A forbidden retry is refused before anything is read (403). A retry that fails again is recorded as
one more attempt, and the row stays on the page with its new reason.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin import order_actions
from miniapp_api.admin.actions import flash_duplicate, form_reason, perform
from miniapp_api.admin.base import QxView
from miniapp_api.admin.security import current, must
from miniapp_api.deps import runtime
from models import failures
from models.errors import DomainError
from models.orders import Order
from models.set_aside import JOBS, open_failure, open_failures, retry_settlement

PAGE = 50
MAX_ID = 2**63 - 1
JOB_LABELS = {failures.DELIVERY: _l("发货"), failures.SETTLEMENT: _l("结算")}
RETRY_PERMISSION = {failures.DELIVERY: "orders.redeliver", failures.SETTLEMENT: "orders.retry_settlement"}


def _int_arg(name: str) -> int | None:
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) <= MAX_ID:
        raise ValueError(name)
    return int(raw)


class SetAsideView(QxView):
    permission = "orders.view"

    def _page(self, status: int = 200) -> Any:
        job = request.args.get("job") or None
        try:
            if job is not None and job not in JOBS:
                raise ValueError("job")
            before = _int_arg("before")
        except ValueError:
            flash(_("筛选条件无效"), "error")
            return self.render("qx/set_aside.html", rows=[], job=None, next_url=None, first_url=None,
                               **self._helpers()), 400
        rows = open_failures(job=job, before=before, limit=PAGE + 1)
        more, rows = len(rows) > PAGE, rows[:PAGE]
        query = {"job": job} if job else {}
        next_url = url_for(".index", **query, before=rows[-1].id) if more else None
        first_url = url_for(".index", **query) if before is not None else None
        return self.render("qx/set_aside.html", rows=rows, job=job, next_url=next_url, first_url=first_url,
                           **self._helpers()), status

    @staticmethod
    def _helpers() -> dict[str, Any]:
        who = current()
        return {"job_labels": JOB_LABELS,
                "can_retry": {j: who is not None and who.can(p) for j, p in RETRY_PERMISSION.items()}}

    @expose("/")
    def index(self) -> Any:
        return self._page()

    @expose("/<job>/<int:order_id>/retry", methods=["POST"])
    def retry(self, job: str, order_id: int) -> Any:
        if job not in RETRY_PERMISSION:
            abort(404)
        who = must(RETRY_PERMISSION[job])  # refused before anything is read or written
        order = Order.get_or_none(Order.id == order_id) if order_id <= MAX_ID else None
        if order is None:
            abort(404)
        try:
            reason = form_reason()
            if open_failure(job, order_id) is None:
                flash(_("订单 %(id)s 已不在搁置列表中", id=order_id), "warning")
                return self._page(409)
            if job == failures.DELIVERY:
                outcome, _text = order_actions.run(order_actions.SPECS["redeliver"], order, who, reason)
            else:
                rt = runtime()
                intervals = rt.settings.intervals("ITEM_RETRY_INTERVALS")
                outcome = perform("order.retry_settlement", f"order:{order_id}", reason=reason, atomic=False,
                                  permission=RETRY_PERMISSION[job],
                                  run=lambda: retry_settlement(order_id, rt.payout, intervals),
                                  after=lambda settled: {"settled": settled})
        except DomainError as exc:
            if exc.status == 403:
                abort(403)
            flash(order_actions.message(exc), "error")
            return self._page(order_actions_status(exc))
        if outcome.duplicate:
            flash_duplicate()
        else:
            still = open_failure(job, order_id)
            if still is None:
                flash(_("订单 %(id)s 已重试成功", id=order_id), "success")
            else:
                flash(_("订单 %(id)s 重试仍然失败：%(error)s", id=order_id, error=still.error), "error")
        return redirect(url_for(".index"))


def order_actions_status(exc: DomainError) -> int:
    return exc.status if 400 <= exc.status < 500 else 409


def register(admin: Admin) -> None:
    admin.add_view(SetAsideView(name=_l("搁置的订单"), endpoint="set_aside", url="orders/set-aside",
                                category=_l("订单")))
