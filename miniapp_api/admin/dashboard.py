"""The admin's home page: the dashboard.

Every business figure comes from one call to `models.rollups.dashboard()`: the rollups that the
periodic job tasks.rollups.refresh_rollups keeps current (every minute), plus the few live counts
it reads through their indexes, so a page view never scans the orders or the ledger. The queue
backlog is read from RQ's structures in Redis (queue lengths and registry sizes: a handful of
Redis commands); Redis unreachable is a message in that card and the page still answers 200.

The charts are drawn by static/qx/dashboard.js with the vendored ECharts from the JSON block
`#dashboard-data` (Flask's `tojson`: a product named `</script>` cannot end the script element),
with the labels already in the operator's language.

`POST /admin/refresh` (dashboard.refresh: owner, finance, ops) queues a refresh run now, for the
first figures after a deploy or when they look stale; it is audited.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app, flash, redirect, url_for
from flask_admin import AdminIndexView, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from miniapp_api.admin import actions
from miniapp_api.admin.security import Guarded, current, must
from miniapp_api.deps import runtime
from models import rollups
from models.db import db, utcnow
from models.money import rmb
from models.order_search import shanghai

REFRESH_JOB = "tasks.rollups.refresh_rollups"
REFRESH_TIMEOUT_S = 3600  # the first run after a deploy recomputes the whole history
STALE_AFTER = dt.timedelta(minutes=5)  # the job runs every minute: older figures mean it is not running
WAITING_LABELS = {"review": _l("待审核"), "approved": _l("已批准待打款"), "paying": _l("打款中")}


def percent_bp(bp: int | None) -> str:
    """Basis points as a percentage with two decimals, from integers: 1234 -> '12.34%'."""
    if bp is None:
        return "—"
    whole, rest = divmod(bp, 100)
    return f"{whole}.{rest:02d}%"


def queue_backlog(redis: Redis, main_queue: str) -> dict[str, Any]:
    """Per RQ queue: jobs waiting, running, scheduled and failed, and the number of workers.
    A few commands per queue (list lengths and sorted-set sizes); raises RedisError."""
    queues = {q.name: q for q in Queue.all(connection=redis)}
    queues.setdefault(main_queue, Queue(main_queue, connection=redis))
    rows = []
    for name in sorted(queues):
        q = queues[name]
        rows.append({"name": name, "queued": q.count,
                     "started": StartedJobRegistry(queue=q).get_job_count(cleanup=False),
                     "scheduled": ScheduledJobRegistry(queue=q).get_job_count(cleanup=False),
                     "failed": FailedJobRegistry(queue=q).get_job_count(cleanup=False)})
    totals = {key: sum(r[key] for r in rows) for key in ("queued", "started", "scheduled", "failed")}
    return {"queues": rows, "totals": totals, "workers": Worker.count(connection=redis)}


def chart_data(board: rollups.Dashboard) -> dict[str, Any]:
    """What static/qx/dashboard.js draws: amounts in fen (the script writes them as yuan from
    integers), the labels in the operator's language."""
    plays, entries, paid = board.funnel
    return {
        **board.chart(),
        "top_skus": [{"name": name, "gmv_fen": fen} for name, fen in board.top_skus],
        "top_creators": [{"name": name, "gmv_fen": fen} for name, fen in board.top_creators],
        "funnel": [{"stage": "plays", "name": _("视频播放"), "value": plays},
                   {"stage": "live_entries", "name": _("直播间进入"), "value": entries},
                   {"stage": "orders", "name": _("支付订单"), "value": paid}],
        "labels": {"gmv": _("成交额（元）"), "orders": _("支付订单"), "yuan": _("元"), "count": _("笔"),
                   "top_skus": _("热销商品（近 30 天成交额）"), "top_creators": _("达人排行（近 30 天成交额）"),
                   "funnel": _("转化漏斗（近 30 天）"), "empty": _("暂无数据")},
    }


def _link(endpoint: str, permission: str, **values: Any) -> str | None:
    """The URL of another admin page when it exists and this operator may open it, else None
    (the figure is shown without a link)."""
    who = current()
    if endpoint not in current_app.view_functions or who is None or not who.can(permission):
        return None
    return url_for(endpoint, **values)


def links() -> dict[str, Any]:
    return {
        "withdrawals": {state: _link("withdrawals.index", "withdrawals.view", state=state) for state in WAITING_LABELS},
        "low_stock": _link("vault.index", "vault.view") or _link("skus.index_view", "catalog.view"),
        "failed_pushes": _link("chat_failed.index", "chat.view"),
        "jobs": _link("jobs.index", "jobs.view"),
        "failed_deliveries": _link("set_aside.index", "orders.view", job="delivery"),
        "failed_settlements": _link("set_aside.index", "orders.view", job="settlement"),
    }


class DashboardView(Guarded, AdminIndexView):
    permission = "dashboard.view"

    def __init__(self, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name or _l("仪表盘"), **kwargs)

    @expose("/")
    def index(self) -> Any:
        board = rollups.dashboard()
        rt = runtime()
        try:
            backlog, redis_down = queue_backlog(rt.redis, rt.queue.name), None
        except RedisError as exc:
            backlog, redis_down = None, type(exc).__name__
        who = current()
        stale = board.as_of is not None and utcnow() - board.as_of > STALE_AFTER
        return self.render(
            "qx/dashboard.html", board=board, data=chart_data(board), backlog=backlog, redis_down=redis_down,
            as_of=shanghai(board.as_of) if board.as_of else None, stale=stale, links=links(),
            waiting_labels=WAITING_LABELS, rmb=rmb, percent=percent_bp,
            can_refresh=who is not None and who.can("dashboard.refresh"))

    @expose("/refresh", methods=["POST"])
    def refresh(self) -> Any:
        must("dashboard.refresh")
        try:
            job = runtime().queue.enqueue(REFRESH_JOB, job_timeout=REFRESH_TIMEOUT_S,
                                          description="dashboard refresh (admin)")
        except RedisError:
            flash(_("无法连接任务队列（Redis），请稍后再试"), "error")
            return redirect(url_for(".index"))
        with db.atomic():
            actions.record("dashboard.refresh", "rollups", after={"job": job.id})
        flash(_("已排队重新计算，任务进程几秒内完成后刷新本页即可看到"), "success")
        return redirect(url_for(".index"))
