"""Admin pages: the ledger, read-only — platform account balances, one creator's buckets (found
by invite code), transactions with their entries (keyset pages, filters by kind, order and key),
and "verify": the checks of `qianxing ledger verify` queued as a job from the page (audited;
tasks/ledger.py runs them in the worker, one at a time, and keeps the latest result in Redis for
a week); the page shows that result, or "running since …" and reloads itself every 3 s while the
job waits or runs, or says Redis cannot be reached.

Nothing here writes to the ledger: it changes only through the domain services.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from redis.exceptions import RedisError

from miniapp_api.admin.actions import record
from miniapp_api.admin.base import QxView
from miniapp_api.admin.security import must
from models import ledger, ledger_reading
from models.db import db
from models.errors import Conflict
from models.money import rmb
from models.network import Creator
from tasks import ledger as verification

ACCOUNT_LABELS = {ledger.CASH_WECHATPAY: _l("微信支付清算"), ledger.SALES: _l("销售收入"),
                  ledger.COMMISSION_EXPENSE: _l("佣金支出"), ledger.REWARD_EXPENSE: _l("奖励支出"),
                  ledger.PAYOUT_CLEARING: _l("提现打款清算"), ledger.WITHDRAWAL_FEES: _l("提现手续费收入"),
                  ledger.DISCOUNT_EXPENSE: _l("优惠券支出")}
STATE_LABELS = {"none": _l("从未核对"), "queued": _l("排队中"), "running": _l("核对中"), "done": _l("已完成"),
                "failed": _l("失败"), "interrupted": _l("已中断（可重新开始）"),
                "unknown": _l("状态未知（Redis 不可用）")}
BUCKET_LABELS = {ledger.PENDING: _l("待结算"), ledger.AVAILABLE: _l("可提现"), ledger.WITHDRAWING: _l("提现中"),
                 ledger.CREDIT: _l("购物金")}


def _moment(epoch: int) -> dt.datetime | None:
    """Epoch seconds as the naive UTC time the `local_time` filter shows (None: not yet)."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None) if epoch else None


def _int(value: str | None) -> int | None:
    try:
        number = int((value or "").strip())
    except ValueError:
        return None
    return number if number > 0 else None


class LedgerView(QxView):
    permission = "ledger.view"

    def _page(self) -> Any:
        who = must("ledger.view")
        code = (request.args.get("creator") or "").strip()[:32]
        creator, buckets = None, None
        if code:
            creator = Creator.get_or_none(Creator.code == code)
            if creator is None:
                flash(_("没有邀请码为 %(code)s 的达人", code=code), "error")
            else:
                buckets = ledger_reading.creator_balances(creator.id)
        status = verification.verification_status()
        times = {k: _moment(status[k]) for k in ("queued_at", "started_at", "finished_at")}
        return self.render("qx/ledger.html", platform=ledger_reading.platform_balances(), labels=ACCOUNT_LABELS,
                           code=code, creator=creator, buckets=buckets, bucket_labels=BUCKET_LABELS,
                           creator_account=ledger.creator_account, rmb=rmb, verification=status, times=times,
                           state_label=STATE_LABELS.get(status["state"], ""),
                           polling=status["state"] in ("queued", "running"), can_verify=who.can("ledger.verify"))

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
        who = must("ledger.verify")
        try:
            job = verification.queue_verification(who.name)
        except Conflict:
            flash(_("已有一个账本核对任务在排队或运行中，结果会显示在下方"), "warning")
        except RedisError:
            flash(_("Redis 不可用，无法开始核对，请稍后再试"), "error")
        else:
            with db.atomic():
                record("ledger.verify", "ledger", after={"job": job, "queued": True})
            flash(_("账本核对已开始，结果会自动刷新"), "success")
        return redirect(url_for(".index", _anchor="verify"))


def register(admin: Admin) -> None:
    """Adds this area's views to the admin."""
    admin.add_view(LedgerView(name=_l("账本"), endpoint="ledger", url="ledger"))
