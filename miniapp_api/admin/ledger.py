"""Admin pages: the ledger, read-only — platform account balances, one creator's buckets (found
by invite code), transactions with their entries (keyset pages, filters by kind, order and key),
and "verify": the checks of `qianxing ledger verify` run from the page, audited.

Nothing here writes to the ledger: it changes only through the domain services.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, request
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin.actions import record
from miniapp_api.admin.base import QxView
from miniapp_api.admin.security import must
from models import ledger, ledger_reading
from models.db import db
from models.money import rmb
from models.network import Creator

ACCOUNT_LABELS = {ledger.CASH_WECHATPAY: _l("微信支付清算"), ledger.SALES: _l("销售收入"),
                  ledger.COMMISSION_EXPENSE: _l("佣金支出"), ledger.REWARD_EXPENSE: _l("奖励支出"),
                  ledger.PAYOUT_CLEARING: _l("提现打款清算"), ledger.WITHDRAWAL_FEES: _l("提现手续费收入")}
BUCKET_LABELS = {ledger.PENDING: _l("待结算"), ledger.AVAILABLE: _l("可提现"), ledger.WITHDRAWING: _l("提现中"),
                 ledger.CREDIT: _l("购物金")}


def _int(value: str | None) -> int | None:
    try:
        number = int((value or "").strip())
    except ValueError:
        return None
    return number if number > 0 else None


class LedgerView(QxView):
    permission = "ledger.view"

    def _page(self, verification: ledger_reading.Verification | None = None) -> Any:
        who = must("ledger.view")
        code = (request.args.get("creator") or "").strip()[:32]
        creator, buckets = None, None
        if code:
            creator = Creator.get_or_none(Creator.code == code)
            if creator is None:
                flash(_("没有邀请码为 %(code)s 的达人", code=code), "error")
            else:
                buckets = ledger_reading.creator_balances(creator.id)
        return self.render("qx/ledger.html", platform=ledger_reading.platform_balances(), labels=ACCOUNT_LABELS,
                           code=code, creator=creator, buckets=buckets, bucket_labels=BUCKET_LABELS,
                           creator_account=ledger.creator_account, rmb=rmb, verification=verification,
                           can_verify=who.can("ledger.verify"))

    @expose("/")
    def index(self) -> Any:
        return self._page()

    @expose("/transactions")
    def transactions(self) -> Any:
        kind = (request.args.get("kind") or "").strip()[:32]
        key = (request.args.get("key") or "").strip()[:96]
        order_id = _int(request.args.get("order"))
        rows, more = ledger_reading.transactions(kind=kind, order_id=order_id, key=key,
                                                 before_id=_int(request.args.get("before")))
        return self.render("qx/ledger_transactions.html", rows=rows, more=more, kind=kind, key=key,
                           order_id=order_id, rmb=rmb)

    @expose("/transactions/<int:txn_id>")
    def transaction(self, txn_id: int) -> Any:
        found = ledger_reading.transaction(txn_id, after_id=_int(request.args.get("after")) or 0)
        if found is None:
            abort(404)
        txn, more = found
        return self.render("qx/ledger_transaction.html", t=txn, more=more, rmb=rmb)

    @expose("/verify", methods=["POST"])
    def verify(self) -> Any:
        must("ledger.verify")
        result = ledger_reading.verify()
        with db.atomic():
            record("ledger.verify", "ledger", after=result.as_dict())
        if result.ok:
            flash(_("账本平衡，结算与账本一致"), "success")
        else:
            flash(_("账本检查发现问题"), "error")
        return self._page(result)


def register(admin: Admin) -> None:
    """Adds this area's views to the admin."""
    admin.add_view(LedgerView(name=_l("账本"), endpoint="ledger", url="ledger"))
