"""Admin pages: the live dashboard (issue 13).

- `/admin/live/dashboard`: sessions live now and the most recent others, with their figures;
- `/admin/live/dashboard/<id>`: one session's dashboard (models/live_board.board, the same
  figures as the creator's API), refreshed by static/qx/live_dashboard.js from
  `/admin/live/dashboard/<id>/data.json` every 2 s, with an ECharts chart of the kept samples;
- `/admin/live/dashboard/rules`: the hint rules (models/live_hints.py) with their thresholds,
  texts and an on/off switch.
`live.view` opens the pages. `live.manage` closes a poll, reconciles a session's figures with
the database now, edits a rule: each through `actions.perform` (once per form, audited).
"""

from __future__ import annotations

from typing import Any

from flask import abort, jsonify, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin.actions import perform_flashed
from miniapp_api.admin.base import QxView
from miniapp_api.admin.security import current, must
from miniapp_api.deps import runtime
from models import live_board, live_dashboard, live_hints, live_reconcile, live_votes
from models.errors import DomainError
from models.live import LiveSession, LiveState
from models.live_dashboard import DashboardPolicy, LiveSessionStats
from models.money import rmb
from models.network import Creator

RECENT = 30
STATE_LABELS = {"scheduled": _l("已预告"), "live": _l("直播中"), "ended": _l("已结束"), "cancelled": _l("已取消")}
METRIC_LABELS = {"conversion_bp": _l("转化率（基点）"), "online": _l("在线人数"), "unique_viewers": _l("累计观众"),
                 "orders": _l("支付订单"), "gmv_fen": _l("成交额（分）"), "buyers": _l("买家数"),
                 "turnup_bp": _l("预约到场率（基点）")}


def percent(bp: int) -> str:
    whole, rest = divmod(int(bp), 100)
    return f"{whole}.{rest:02d}%"


def _policy() -> DashboardPolicy:
    return DashboardPolicy.of(runtime().settings)


def _can_manage() -> bool:
    who = current()
    return who is not None and who.can("live.manage")


class LiveDashboardView(QxView):
    permission = "live.view"

    @expose("/")
    def index(self) -> Any:
        live_now = list(LiveSession.select(LiveSession, Creator).join(Creator)
                        .where(LiveSession.state == LiveState.LIVE).order_by(LiveSession.id.desc()).limit(100))
        recent = list(LiveSession.select(LiveSession, Creator).join(Creator)
                      .where(LiveSession.state == LiveState.ENDED).order_by(LiveSession.id.desc()).limit(RECENT))
        finals = {s.session_id: s for s in LiveSessionStats.select().where(
            LiveSessionStats.session.in_([s.id for s in recent] or [0]))}
        return self.render("qx/live_dashboard/index.html", live_now=live_now, recent=recent, finals=finals,
                           states=STATE_LABELS, rmb=rmb)

    def _board(self, session_id: int) -> dict[str, Any]:
        try:
            return live_board.board(runtime().redis, session_id, policy=_policy())
        except DomainError:
            abort(404)

    @expose("/<int:session_id>")
    def board(self, session_id: int) -> Any:
        data = self._board(session_id)
        return self.render("qx/live_dashboard/board.html", board=data, states=STATE_LABELS, rmb=rmb,
                           percent=percent, can_manage=_can_manage(),
                           history=live_dashboard.history(runtime().redis, session_id),
                           labels={"online": _("在线人数"), "orders": _("支付订单"), "gmv": _("成交额（元）"),
                                   "empty": _("暂无数据")})

    @expose("/<int:session_id>/data.json")
    def board_json(self, session_id: int) -> Any:
        data = self._board(session_id)
        return jsonify({**data, "history": live_dashboard.history(runtime().redis, session_id)})

    @expose("/<int:session_id>/reconcile", methods=["POST"])
    def reconcile(self, session_id: int) -> Any:
        must("live.manage")
        perform_flashed("live.dashboard_reconcile", f"live:{session_id}", _("已按数据库重新核对本场数据"),
                        reason_required=False, run=lambda: live_reconcile.reconcile(session_id, runtime().redis),
                        after=lambda s: {"orders": s.orders, "gmv_fen": s.gmv_fen, "buyers": s.buyers})
        return redirect(url_for(".board", session_id=session_id))

    @expose("/polls/<int:poll_id>/close", methods=["POST"])
    def close_poll(self, poll_id: int) -> Any:
        must("live.manage")
        who = current()
        poll = live_votes.LivePoll.get_or_none(live_votes.LivePoll.id == poll_id)
        if poll is None:
            abort(404)
        perform_flashed("live.poll_close", f"poll:{poll_id}", _("投票已结束"),
                        run=lambda: live_votes.close_poll(None, poll_id, actor=f"operator:{who.name}")[1],
                        after=lambda closed: {"closed_now": closed})
        return redirect(url_for(".board", session_id=poll.session_id))

    @expose("/rules")
    def rules(self) -> Any:
        return self.render("qx/live_dashboard/rules.html", rules=live_hints.rules(enabled_only=False),
                           metrics=METRIC_LABELS, ops=list(live_hints.OPS), can_manage=_can_manage())

    @expose("/rules/<int:rule_id>", methods=["POST"])
    def rule(self, rule_id: int) -> Any:
        must("live.manage")
        values = {name: request.form.get(name, "") for name in
                  ("metric", "op", "threshold", "for_s", "min_viewers", "lead_s", "text")}
        enabled = request.form.get("enabled") == "1"
        holder: dict[str, Any] = {}

        def run() -> dict[str, Any]:
            holder["before"], after = live_hints.update_rule(rule_id, values, enabled=enabled)
            return after

        perform_flashed("live.hint_rule_update", f"live_hint_rule:{rule_id}", _("提示规则已保存"),
                        reason_required=False, run=run,
                        after=lambda after: {"before": holder.get("before"), "after": after})
        return redirect(url_for(".rules"))


def register(admin: Admin) -> None:
    """Adds this area's views to the admin."""
    admin.add_view(LiveDashboardView(name=_l("直播看板"), endpoint="live_dashboard", url="live/dashboard",
                                     category=_l("直播")))
