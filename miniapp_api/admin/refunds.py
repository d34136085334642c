"""Admin page: the shoppers' refund requests that the refund policy left to an operator
(models/refund_requests.py; SELF_REFUND_AUTO) — the order, the buyer (masked), the amount,
the shopper's reason and whether any key of the order was revealed.

    GET  /admin/orders/refund-requests/                 pending requests, newest first: ?before=<id>
    POST /admin/orders/refund-requests/<id>/approve     with a note: REFUNDING, the refund job queued
    POST /admin/orders/refund-requests/<id>/reject      with a note: REJECTED, the shopper told

Deciding needs `orders.refund`, the permission of an order's refund action; each decision is a
one-time, audited action (`actions.perform`). The refund itself is the job's
(tasks/refund_requests.py, `payments.refund_order`), so WeChat Pay is never called from the form.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin.actions import flash_duplicate, form_reason, perform
from miniapp_api.admin.base import QxView
from miniapp_api.admin.security import current, must, personal
from models import refund_requests
from models.errors import DomainError
from models.money import rmb
from tasks.refund_requests import channels, enqueue_notice, enqueue_refund

PAGE = 50
MAX_ID = 2**63 - 1
DECIDE = "orders.refund"
MESSAGES = {
    "request_not_pending": _l("这个退款申请已经处理过了"),
    "refund_request_not_found": _l("退款申请不存在"),
    "reason_required": _l("请填写原因（至少 2 个字）"),
    "missing_action_token": _l("表单缺少一次性令牌，请刷新页面后重试"),
}


def _before() -> int | None:
    raw = (request.args.get("before") or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) <= MAX_ID:
        raise ValueError("before")
    return int(raw)


class RefundRequestsView(QxView):
    permission = "orders.view"

    def _page(self, status: int = 200) -> Any:
        try:
            before = _before()
        except ValueError:
            flash(_("筛选条件无效"), "error")
            before, status = None, 400
        rows = refund_requests.pending_queue(before_id=before, limit=PAGE + 1)
        more, rows = len(rows) > PAGE, rows[:PAGE]
        who = current()
        page = self.render("qx/refund_requests.html", rows=rows, rmb=rmb, personal=personal,
                           can_decide=who is not None and who.can(DECIDE),
                           next_url=url_for(".index", before=rows[-1].id) if more else None,
                           first_url=url_for(".index") if before is not None else None)
        return page if status == 200 else (page, status)

    @expose("/")
    def index(self) -> Any:
        return self._page()

    @expose("/<int:request_id>/<decision>", methods=["POST"])
    def decide(self, request_id: int, decision: str) -> Any:
        if decision not in ("approve", "reject"):
            abort(404)
        who = must(DECIDE)  # refused before anything is read or written
        found = refund_requests.RefundRequest.get_or_none(refund_requests.RefundRequest.id == request_id) \
            if request_id <= MAX_ID else None
        if found is None:
            abort(404)
        actor = f"operator:{who.name}"[:64]
        service = refund_requests.approve if decision == "approve" else refund_requests.reject
        try:
            note = form_reason()
            outcome = perform(f"refund_request.{decision}", f"order:{found.order_id}", reason=note,
                              before={"state": found.state, "request": found.id}, permission=DECIDE,
                              run=lambda: service(found.id, actor, note, channels()),
                              after=lambda r: {"state": r.state, "request": r.id})
        except DomainError as exc:
            if exc.status == 403:
                abort(403)
            flash(str(MESSAGES[exc.code]) if exc.code in MESSAGES else exc.message, "error")
            return self._page(exc.status if 400 <= exc.status < 500 else 409)
        if outcome.duplicate:
            flash_duplicate()
        elif decision == "approve":
            enqueue_refund(found.id)
            flash(_("已批准，正在原路退款；完成后会通知买家"), "success")
        else:
            enqueue_notice(found.id)
            flash(_("已拒绝，买家会收到通知"), "success")
        return redirect(url_for(".index"))


def register(admin: Admin) -> None:
    admin.add_view(RefundRequestsView(name=_l("退款申请"), endpoint="refund_requests",
                                      url="orders/refund-requests", category=_l("订单")))
