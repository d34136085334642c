"""Admin pages: CSV exports of orders, ledger postings and withdrawals.

    GET /admin/exports/                  the exports page (a form per export the role may run)
    GET /admin/exports/orders.csv        exports.orders: the order list's filters (models/order_search.py)
    GET /admin/exports/ledger.csv        exports.ledger: postings with their transaction; ?from= &to= &kind= &account=
    GET /admin/exports/withdrawals.csv   exports.withdrawals: ?from= &to= &state=

Each export is an audit row with its filters, written before the first byte goes out; the file
is streamed, read in keyset batches of 1,000 rows (memory stays one batch however large the
export). Every cell goes through `csv_cells` (formulas escaped); money is a number of yuan with
two decimals AND the integer fen; personal data is masked unless the role has
personal.unmasked; times are Asia/Shanghai. Exports change nothing, so they are GET links.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from typing import Any

from flask import Response, flash, request, stream_with_context
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin import actions, csv_cells
from miniapp_api.admin.base import QxView
from miniapp_api.admin.orders import FIELD_LABELS, STATUS_LABELS, filter_message
from miniapp_api.admin.security import current, mask, must, unmasked
from models import order_search
from models.db import db
from models.ledger import LedgerTransaction, Posting
from models.money import yuan
from models.network import Creator
from models.order_search import FilterError, parse_date, parse_filters, shanghai, utc_bounds
from models.withdrawals import Withdrawal, WithdrawalState

BATCH = 1000
PERMISSIONS = ("exports.orders", "exports.ledger", "exports.withdrawals")
_KIND = re.compile(r"^[a-z_]{1,32}$")
_ACCOUNT = re.compile(r"^[A-Za-z0-9_:.-]{1,64}$")
LABELS = {**FIELD_LABELS, "kind": _l("凭证类型"), "account": _l("科目"), "state": _l("状态")}


class Yuan(float):
    """An amount of fen as a number cell of yuan with exactly two decimals ("-12.30", not
    "-12.3"): a number to the spreadsheet (csv writes floats with repr), written from the integer
    fen (models.money.yuan), so never a rounding of a float."""

    fen: int

    def __new__(cls, fen: int) -> Yuan:
        value = super().__new__(cls, fen / 100)
        value.fen = int(fen)
        return value

    def __repr__(self) -> str:
        return yuan(self.fen)

    __str__ = __repr__


def money(fen: int | None) -> list[Any]:
    """The two cells of an amount: yuan, fen."""
    return ["", ""] if fen is None else [Yuan(fen), int(fen)]


def personal_cells() -> Callable[..., str]:
    """`personal` for a streamed export: the role is read once, before the first row."""
    if unmasked():
        return lambda value, *_args: value or ""
    return lambda value, *args: mask(value, *args)


def _dates() -> tuple[dt.datetime | None, dt.datetime | None]:
    start = request.args.get("from", "").strip()
    end = request.args.get("to", "").strip()
    day_from = parse_date("from", start) if start else None
    day_to = parse_date("to", end) if end else None
    if day_from and day_to and day_from > day_to:
        raise FilterError("to", "the end date is before the start date", code="invalid_range")
    return utc_bounds(day_from, day_to)


def _stream(name: str, header: list[str], rows: Iterator[list[Any]]) -> Response:
    stamp = dt.datetime.now(order_search.SHANGHAI).strftime("%Y%m%d-%H%M%S")
    return Response(stream_with_context(csv_cells.stream(header, rows)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"',
                             "Cache-Control": "no-store"})


def _audit(action: str, obj: str, filters: dict[str, str]) -> None:
    with db.atomic():
        actions.record(action, obj, after={"filters": filters})


# ---- the rows ---------------------------------------------------------------------------------


def order_header() -> list[str]:
    return [_("订单ID"), _("订单号"), _("下单时间"), _("状态"), _("SKU编码"), _("商品名称"), _("数量"),
            _("单价（元）"), _("单价（分）"), _("金额（元）"), _("金额（分）"), _("加价（元）"), _("加价（分）"),
            _("买家ID"), _("买家openid"), _("买家昵称"), _("推广码"), _("推广员ID"), _("推广员推广码"), _("直播场次"),
            _("充值账号"), _("付款时间"), _("发货时间"), _("退款时间"), _("风控冻结")]


def order_rows(batches: Iterator[list[order_search.OrderRow]]) -> Iterator[list[Any]]:
    show = personal_cells()
    for batch in batches:
        for r in batch:
            yield [r.id, r.no, shanghai(r.created_at), r.status, r.sku_code, r.sku_name, r.quantity,
                   *money(r.unit_price_fen), *money(r.amount_fen), *money(r.markup_fen),
                   r.user_id, show(r.buyer_openid), show(r.buyer_nickname, 1, 0), r.ref_code, r.seller_id,
                   r.seller_code, r.live_id, show(r.recipient_account), shanghai(r.paid_at),
                   shanghai(r.delivered_at), shanghai(r.refunded_at), r.risk_hold]


def ledger_rows(terms: list[Any]) -> Iterator[list[Any]]:
    """Postings with their transaction, oldest first, by keyset on the posting id."""
    after = 0
    while True:
        batch = list(Posting.select(Posting.id, LedgerTransaction.id, LedgerTransaction.key, LedgerTransaction.kind,
                                    LedgerTransaction.order_id, LedgerTransaction.created_at, Posting.account,
                                    Posting.amount_fen, LedgerTransaction.memo)
                     .join(LedgerTransaction).where(Posting.id > after, *terms)
                     .order_by(Posting.id).limit(BATCH).tuples())
        for pid, txn_id, key, kind, order_id, created, account, amount, memo in batch:
            yield [pid, txn_id, key, kind, order_id, shanghai(created), account, *money(amount), memo]
        if len(batch) < BATCH:
            return
        after = batch[-1][0]


def withdrawal_rows(terms: list[Any]) -> Iterator[list[Any]]:
    """Withdrawals with their creator, oldest first, by keyset on the id."""
    show = personal_cells()
    after = 0
    while True:
        batch = list(Withdrawal.select(Withdrawal, Creator.code, Creator.name).join(Creator)
                     .where(Withdrawal.id > after, *terms).order_by(Withdrawal.id).limit(BATCH).objects())
        for w in batch:
            yield [w.id, w.no, w.creator_id, w.code, show(w.name, 1, 0), w.method, *money(w.amount_fen),
                   *money(w.fee_fen), *money(w.amount_fen - w.fee_fen), w.state, shanghai(w.requested_at),
                   shanghai(w.due_at), w.reviewed_by or "", shanghai(w.reviewed_at), shanghai(w.paid_at),
                   w.payout_ref or "", w.last_error or ""]
        if len(batch) < BATCH:
            return
        after = batch[-1].id


# ---- the views --------------------------------------------------------------------------------


class ExportsView(QxView):
    permission = "exports.orders"

    def is_accessible(self) -> bool:
        who = current()
        return who is not None and any(who.can(p) for p in PERMISSIONS)

    def _page(self, status: int = 200) -> Any:
        args = {k: (request.args.get(k) or "")[:80] for k in ("from", "to", "status", "kind", "account", "state")}
        return self.render("qx/exports.html", args=args, statuses=list(STATUS_LABELS), status_labels=STATUS_LABELS,
                           withdrawal_states=[s.value for s in WithdrawalState]), status

    def _refused(self, exc: FilterError) -> Any:
        if exc.field in ("kind", "account", "state"):
            flash(_("%(field)s无效", field=LABELS[exc.field]), "error")
        else:
            flash(filter_message(exc), "error")
        return self._page(400)

    @expose("/")
    def index(self) -> Any:
        return self._page()

    @expose("/orders.csv")
    def orders_csv(self) -> Any:
        must("exports.orders")
        try:
            filters = parse_filters(request.args)
            batches = order_search.walk(filters, batch=BATCH)  # references resolved here: a 400, not a broken file
        except FilterError as exc:
            return self._refused(exc)
        _audit("export.orders", "orders", filters.as_args())
        return _stream("orders", order_header(), order_rows(batches))

    @expose("/ledger.csv")
    def ledger_csv(self) -> Any:
        must("exports.ledger")
        try:
            start, end = _dates()
            kind = request.args.get("kind", "").strip()
            account = request.args.get("account", "").strip()
            if kind and not _KIND.match(kind):
                raise FilterError("kind", "kind: lower-case letters and _", code="invalid_kind")
            if account and not _ACCOUNT.match(account):
                raise FilterError("account", "account: an account name", code="invalid_account")
        except FilterError as exc:
            return self._refused(exc)
        terms = [t for t in (LedgerTransaction.created_at >= start if start else None,
                             LedgerTransaction.created_at < end if end else None,
                             LedgerTransaction.kind == kind if kind else None,
                             Posting.account == account if account else None) if t is not None]
        _audit("export.ledger", "ledger", _given("from", "to", "kind", "account"))
        header = [_("分录ID"), _("凭证ID"), _("凭证键"), _("凭证类型"), _("订单ID"), _("时间"), _("科目"),
                  _("金额（元）"), _("金额（分）"), _("摘要")]
        return _stream("ledger", header, ledger_rows(terms))

    @expose("/withdrawals.csv")
    def withdrawals_csv(self) -> Any:
        must("exports.withdrawals")
        try:
            start, end = _dates()
            state = request.args.get("state", "").strip()
            if state and state not in {s.value for s in WithdrawalState}:
                raise FilterError("state", "state: a withdrawal state", code="invalid_state")
        except FilterError as exc:
            return self._refused(exc)
        terms = [t for t in (Withdrawal.requested_at >= start if start else None,
                             Withdrawal.requested_at < end if end else None,
                             Withdrawal.state == state if state else None) if t is not None]
        _audit("export.withdrawals", "withdrawals", _given("from", "to", "state"))
        header = [_("提现ID"), _("提现单号"), _("推广员ID"), _("推广码"), _("推广员名称"), _("方式"),
                  _("金额（元）"), _("金额（分）"), _("手续费（元）"), _("手续费（分）"),
                  _("到账（元）"), _("到账（分）"),
                  _("状态"), _("申请时间"), _("到期时间"), _("审核人"), _("审核时间"), _("付款时间"), _("付款单号"),
                  _("最近错误")]
        return _stream("withdrawals", header, withdrawal_rows(terms))


def _given(*names: str) -> dict[str, str]:
    return {n: request.args[n].strip()[:80] for n in names if (request.args.get(n) or "").strip()}


def register(admin: Admin) -> None:
    """Adds this area's views to the admin."""
    admin.add_view(ExportsView(name=_l("导出"), endpoint="exports", url="exports", category=_l("财务")))

