"""Admin pages: live sessions (issue 13) — the list (state, creator, title, start in
LIVE_TIMEZONE, reservations, lottery), a session's page (pinned products with their ladder and
assist offers, reservations, the lottery, the short-drama episodes that lead to it, its events,
a link to its live dashboard), and the operator's actions: schedule a session for a creator,
reschedule, cancel (with a reason), start, end (which queues the settlement of its orders).

Every action goes through helper A's services (models/live_planning.schedule, models/live.
reschedule / cancel / go_live / end_live with creator=None) inside `actions.perform`: once per
form, audited, with `live.manage`; `live.view` opens the pages.
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin import live_forms
from miniapp_api.admin.actions import flash_duplicate, form_reason, perform
from miniapp_api.admin.base import QxView
from miniapp_api.admin.security import must
from miniapp_api.deps import runtime
from models import assist, live, live_planning, live_prices, lottery, reservations
from models.drama import DramaEpisode, DramaSeries
from models.errors import DomainError
from models.events import events_for
from models.live import LiveSession
from models.lottery import Lottery
from models.money import rmb
from models.network import Creator
from tasks import queues

PAGE = 50
STATES = ("scheduled", "live", "ended", "cancelled")
STATE_LABELS = {"scheduled": _l("已预告"), "live": _l("直播中"), "ended": _l("已结束"), "cancelled": _l("已取消")}
LOTTERY_LABELS = {"pending": _l("待开奖"), "drawn": _l("已开奖"), "below_threshold": _l("未达门槛，不开奖"),
                  "cancelled": _l("已取消")}

KIND_LABELS = {"placement": _l("剧情植入"), "after_show": _l("番外直播"), "cliffhanger": _l("悬念引流")}


def _tz() -> str:
    return runtime().settings.LIVE_TIMEZONE


def shown(moment: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored time in LIVE_TIMEZONE, as the pages show it."""
    return live.local_time(moment, _tz(), fmt) or "—"


def dashboard_url(session_id: int) -> str | None:
    """The live dashboard page of the session (helper F's admin view), if the app has one."""
    for rule in current_app.url_map.iter_rules():
        if rule.endpoint.startswith("live_dashboard.") and "session_id" in rule.arguments \
                and "GET" in (rule.methods or ()):
            return url_for(rule.endpoint, session_id=session_id)
    return None


def _after(session: LiveSession) -> dict[str, Any]:
    return {"state": session.state, "scheduled_at": session.scheduled_at.isoformat() if session.scheduled_at else None,
            "plan_version": session.plan_version}


class LiveSessionsView(QxView):
    permission = "live.view"

    @expose("/")
    def index(self) -> Any:
        state = request.args.get("state") or ""
        if state and state not in STATES:
            abort(404)
        code = (request.args.get("creator") or "").strip()
        query = (LiveSession.select(LiveSession, Creator).join(Creator)
                 .order_by(LiveSession.id.desc()).limit(PAGE))
        if state:
            query = query.where(LiveSession.state == state)
        if code:
            query = query.where(Creator.code == code)
        before = live_forms.row_id(request.args.get("before"))
        if before:
            query = query.where(LiveSession.id < before)
        rows = list(query)
        ids = [s.id for s in rows]
        counts = reservations.counts(ids)
        lotteries = {lot.session_id: lot for lot in Lottery.select(Lottery.session, Lottery.state, Lottery.threshold,
                                                                   Lottery.prizes).where(Lottery.session.in_(ids))} \
            if ids else {}
        return self.render("qx/live/sessions.html", rows=rows, counts=counts, lotteries=lotteries, state=state,
                           states=STATES, labels=STATE_LABELS, lottery_labels=LOTTERY_LABELS, creator=code,
                           more=rows[-1].id if len(rows) == PAGE else None, shown=shown, tz=_tz(),
                           can_manage=must("live.view").can("live.manage"))

    def _session(self, session_id: int) -> LiveSession:
        found = LiveSession.select(LiveSession, Creator).join(Creator).where(LiveSession.id == session_id).first()
        if found is None:
            abort(404)
        return found

    def _detail(self, s: LiveSession, status: int = 200, form: dict | None = None) -> Any:
        who = must("live.view")
        pins = live.pins_of(s.id)
        episodes = list(DramaEpisode.select(DramaEpisode, DramaSeries).join(DramaSeries)
                        .where(DramaEpisode.live_session == s.id).order_by(DramaSeries.id, DramaEpisode.number))
        page = self.render(
            "qx/live/session.html", s=s, pins=pins, ladders=live_prices.offers(s.id), assists=assist.offers(s.id),
            reserved=reservations.count(s.id), draw=lottery.public_state(s.id), episodes=episodes,
            history=events_for(s.subject), labels=STATE_LABELS, kinds=KIND_LABELS, lottery_labels=LOTTERY_LABELS,
            shown=shown, tz=_tz(), rmb=rmb, dashboard=dashboard_url(s.id), form=form or {},
            can_manage=who.can("live.manage"))
        return page if status == 200 else (page, status)

    @expose("/<int:session_id>")
    def detail(self, session_id: int) -> Any:
        return self._detail(self._session(session_id))

    # ---- scheduling ---------------------------------------------------------------------------

    def _new(self, form: dict, status: int = 200) -> Any:
        must("live.manage")
        page = self.render("qx/live/new.html", form=form, tz=_tz())
        return page if status == 200 else (page, status)

    @expose("/new")
    def new(self) -> Any:
        return self._new({"minutes": "60"})

    @expose("/new", methods=["POST"])
    def create(self) -> Any:
        who = must("live.manage")
        form = {k: request.form.get(k, "") for k in ("creator", "title", "start", "minutes", "cover", "pins",
                                                      "lottery", "reason")}
        actor = f"operator:{who.id}"
        try:
            host = live_forms.creator_by_code(form["creator"])
            spec = live_planning.SessionSpec(
                title=form["title"].strip(), scheduled_at=live_forms.local_start(form["start"], _tz()),
                expected_minutes=live_forms.whole(form["minutes"], _("时长"), 60), cover_url=form["cover"].strip(),
                pins=live_forms.pin_lines(form["pins"]), lottery=live_forms.lottery_spec(form["lottery"]))
            max_pins = runtime().settings.LIVE_MAX_PINS
            outcome = perform("live.schedule", f"creator:{host.id}", reason=form_reason(required=False),
                              run=lambda: live_planning.schedule(host, spec, actor=actor, max_pins=max_pins),
                              after=lambda s: {"session": s.id, **_after(s), "title": s.title,
                                               "pins": [p.sku_code for p in spec.pins]},
                              permission="live.manage")
        except DomainError as exc:
            flash(exc.message, "error")
            return self._new(form, 400)
        if outcome.duplicate:
            flash_duplicate()
            return redirect(url_for(".index"))
        flash(_("直播已预告：%(title)s", title=outcome.result.title), "success")
        return redirect(url_for(".detail", session_id=outcome.result.id))

    # ---- the session's actions ----------------------------------------------------------------

    def _act(self, session_id: int, action: str, run: Any, done: str, *, reason_required: bool = False) -> Any:
        """Run one action on the session through `perform`; a refusal shows the page again."""
        must("live.manage")
        s = self._session(session_id)
        try:
            reason = form_reason(required=reason_required)
            outcome = perform(f"live.{action}", s.subject, reason=reason, before=_after(s),
                              run=lambda: run(reason), after=lambda r: _after(r[0] if isinstance(r, tuple) else r),
                              permission="live.manage")
        except DomainError as exc:
            flash(exc.message, "error")
            return self._detail(self._session(session_id), 409 if exc.status == 409 else 400, dict(request.form))
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(done, "success")
            if action == "end" and outcome.result[1]:
                queues.settle_live(s.id)  # after the commit, as every enqueue
        return redirect(url_for(".detail", session_id=s.id))

    @expose("/<int:session_id>/reschedule", methods=["POST"])
    def reschedule(self, session_id: int) -> Any:
        who = must("live.manage")
        try:
            start = live_forms.local_start(request.form.get("start", ""), _tz())
        except DomainError as exc:
            flash(exc.message, "error")
            return self._detail(self._session(session_id), 400, dict(request.form))
        return self._act(session_id, "reschedule",
                         lambda _r: live.reschedule(None, session_id, start, actor=f"operator:{who.id}"),
                         _("已改期，已预约的用户会收到新的提醒"))

    @expose("/<int:session_id>/cancel", methods=["POST"])
    def cancel(self, session_id: int) -> Any:
        who = must("live.manage")
        return self._act(session_id, "cancel",
                         lambda reason: live.cancel(None, session_id, actor=f"operator:{who.id}", reason=reason),
                         _("直播已取消，已预约的用户会收到取消通知"), reason_required=True)

    @expose("/<int:session_id>/start", methods=["POST"])
    def start(self, session_id: int) -> Any:
        who = must("live.manage")
        return self._act(session_id, "start", lambda _r: live.go_live(None, session_id, actor=f"operator:{who.id}"),
                         _("直播已开始"))

    @expose("/<int:session_id>/end", methods=["POST"])
    def end(self, session_id: int) -> Any:
        who = must("live.manage")
        return self._act(session_id, "end", lambda _r: live.end_live(None, session_id, actor=f"operator:{who.id}"),
                         _("直播已结束，本场订单的结算已排队"))


def register(admin: Admin) -> None:
    """Adds this area's views to the admin."""
    admin.add_view(LiveSessionsView(name=_l("直播场次"), endpoint="live_admin", url="live/sessions",
                                    category=_l("直播")))

