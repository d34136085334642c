"""Admin pages: orders. The list (filters, keyset pages of 50, newest first), one order's whole
record, and the operator's actions on it (miniapp_api/admin/order_actions.py).

    GET  /admin/orders/                     the list: ?status= &buyer= &creator= &sku= &live= &from= &to=
                                            &min= &max= &no= (models/order_search.py), &after=<id>
    GET  /admin/orders/<id>                 the order's record (models/order_record.py)
    POST /admin/orders/<id>/<action>        mark_paid, redeliver, resend, refund, hold, release, fraud

A filter that cannot be used answers 400 with the reason on the page; an action refused by its
service answers 4xx with the reason on the order's page and changes nothing.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin import order_actions, set_aside
from miniapp_api.admin.actions import flash_duplicate, form_reason
from miniapp_api.admin.base import QxView
from miniapp_api.admin.order_actions import SPECS
from miniapp_api.admin.security import current, must, personal
from models.errors import DomainError, NotFound
from models.money import yuan
from models.order_record import order_record
from models.order_search import FilterError, parse_cursor, parse_filters, search, shanghai
from models.orders import Order, Status

MAX_ID = 2**63 - 1
STATUS_LABELS = {Status.PENDING: _l("待付款"), Status.PAID: _l("已付款"), Status.DELIVERED: _l("已发货"),
                 Status.EXPIRED: _l("已过期"), Status.CANCELLED: _l("已取消"), Status.REFUNDED: _l("已退款")}
FIELD_LABELS = {"status": _l("状态"), "buyer": _l("买家"), "creator": _l("推广码"), "sku": _l("SKU 编码"),
                "live": _l("直播场次"), "from": _l("开始日期"), "to": _l("结束日期"), "min": _l("最低金额"),
                "max": _l("最高金额"), "no": _l("订单号"), "after": _l("翻页位置")}
_FILTER_MESSAGES = {
    "invalid_status": _l("%(field)s无效"),
    "invalid_buyer": _l("%(field)s应为 openid 或用户 ID"),
    "invalid_creator": _l("%(field)s格式不正确（4-32 位字母、数字、- 或 _）"),
    "invalid_sku": _l("%(field)s无效"),
    "invalid_id": _l("%(field)s应为正整数"),
    "invalid_date": _l("%(field)s格式应为 YYYY-MM-DD"),
    "negative_amount": _l("%(field)s不能为负数"),
    "invalid_amount": _l("%(field)s应为元，最多两位小数"),
    "invalid_no": _l("%(field)s只包含字母和数字"),
    "unknown_buyer": _l("没有这个买家：%(value)s"),
    "unknown_creator": _l("没有推广码为 %(value)s 的推广员"),
    "unknown_sku": _l("没有这个 SKU：%(value)s"),
    "unknown_cursor": _l("翻页位置无效，请从第一页开始"),
}


def filter_message(exc: FilterError) -> str:
    """A filter's error in the operator's language, naming the field and the value given."""
    field = str(FIELD_LABELS.get(exc.field, exc.field))
    value = (request.args.get(exc.field) or "")[:64]
    if exc.code == "invalid_range":
        return _("结束日期早于开始日期") if exc.field == "to" else _("最高金额低于最低金额")
    template = _FILTER_MESSAGES.get(exc.code)
    return str(template) % {"field": field, "value": value} if template else exc.message


def error_status(exc: DomainError) -> int:
    """The HTTP status a refused action answers: the service's own 4xx, else 409 (a payment
    provider's failure is not the admin's server error)."""
    return exc.status if 400 <= exc.status < 500 else 409


def helpers() -> dict[str, Any]:
    """What the order templates format with."""
    return {"personal": personal, "yuan": yuan, "shanghai": shanghai, "status_labels": STATUS_LABELS}


class OrdersView(QxView):
    permission = "orders.view"

    @expose("/")
    def index(self) -> Any:
        args = {k: (request.args.get(k) or "")[:80] for k in FIELD_LABELS}
        try:
            filters = parse_filters(request.args)
            page = search(filters, after=parse_cursor(request.args.get("after")))
        except FilterError as exc:
            flash(filter_message(exc), "error")
            return self.render("qx/orders.html", rows=[], next_url=None, args=args, first_url=None,
                               statuses=list(STATUS_LABELS), **helpers()), 400
        query = filters.as_args()
        next_url = url_for(".index", **query, after=page.next_after) if page.next_after else None
        first_url = url_for(".index", **query) if request.args.get("after") else None
        return self.render("qx/orders.html", rows=page.rows, next_url=next_url, first_url=first_url, args=args,
                           statuses=list(STATUS_LABELS), export_args=query, **helpers())

    def _detail(self, order_id: int, status: int = 200) -> Any:
        if order_id > MAX_ID:  # an id no database column holds (SQLite would not even compare it)
            abort(404)
        try:
            record = order_record(order_id)
        except NotFound:
            abort(404)
        who = current()
        offered = [s for s in SPECS.values() if who is not None and who.can(s.permission) and s.applies(record.order)]
        return self.render("qx/order_detail.html", r=record, o=record.order, offered=offered, **helpers()), status

    @expose("/<int:order_id>")
    def detail(self, order_id: int) -> Any:
        return self._detail(order_id)

    @expose("/<int:order_id>/<action>", methods=["POST"])
    def act(self, order_id: int, action: str) -> Any:
        spec = SPECS.get(action)
        if spec is None:
            abort(404)
        who = must(spec.permission)  # a forbidden action is refused before anything is read or written
        order = Order.get_or_none(Order.id == order_id) if order_id <= MAX_ID else None
        if order is None:
            abort(404)
        try:
            outcome, text = order_actions.run(spec, order, who, form_reason())
        except DomainError as exc:
            if exc.status == 403:
                abort(403)
            flash(order_actions.message(exc), "error")
            return self._detail(order_id, error_status(exc))
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(text, "success")
        return redirect(url_for(".detail", order_id=order_id))


def register(admin: Admin) -> None:
    """Adds this area's views to the admin."""
    admin.add_view(OrdersView(name=_l("订单"), endpoint="orders", url="orders", category=_l("订单")))
    set_aside.register(admin)  # the orders batch jobs set aside (miniapp_api/admin/set_aside.py)
