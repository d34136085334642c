"""Admin pages: live talk tracks (issue 16), in the 内容 menu.

- `/admin/content/talk/`: the sessions live now and the scheduled ones (soonest first), each with
  its pinned products and a 生成话术 button;
- POST `/admin/content/talk/<id>`: writes the session's talk track (content_ai/live_tracks.py:
  the model under the guards when one is configured, else the templates) and shows it. It costs
  a model call, so it is an action: once per form, audited (`content.talk_track`), for an
  operator with `content.manage` or `live.manage`; `content.view` opens the list.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from content_ai import live_tracks
from miniapp_api.admin.actions import flash_duplicate, perform
from miniapp_api.admin.base import QxView
from miniapp_api.admin.security import current
from miniapp_api.deps import runtime
from models import live_content
from models.errors import DomainError
from models.live import LivePin, LiveSession, LiveState
from models.network import Creator

PAGE = 100
MANAGE = ("content.manage", "live.manage")
SECTION_LABELS = {"opening": _l("开场"), "product": _l("商品"), "welfare": _l("福利"), "closing": _l("收尾")}
SOURCE_LABELS = {"model": _l("模型生成（已通过事实与审核检查）"), "offline": _l("模板生成（离线）")}


def _can_manage() -> bool:
    who = current()
    return who is not None and any(who.can(p) for p in MANAGE)


class LiveTalkView(QxView):
    permission = "content.view"

    @expose("/")
    def index(self) -> Any:
        sessions = list(LiveSession.select(LiveSession, Creator).join(Creator)
                        .where(LiveSession.state.in_([LiveState.LIVE.value, LiveState.SCHEDULED.value]))
                        .order_by(LiveSession.state, LiveSession.scheduled_at, LiveSession.id).limit(PAGE))
        pins: dict[int, int] = {}
        for pin in LivePin.select(LivePin.session).where(LivePin.session.in_([s.id for s in sessions] or [0])):
            pins[pin.session_id] = pins.get(pin.session_id, 0) + 1
        return self.render("qx/live_talk/index.html", sessions=sessions, pins=pins, can_manage=_can_manage(),
                           tz=runtime().settings.LIVE_TIMEZONE)

    @expose("/<int:session_id>", methods=["POST"])
    def generate(self, session_id: int) -> Any:
        if not _can_manage():
            abort(403)
        rt = runtime()

        def run() -> live_tracks.TalkTrack:
            facts = live_content.talk_facts(session_id, rt.settings.LIVE_TIMEZONE)
            # an operator's request does not use up the creator's daily model quota
            return live_tracks.talk_track(facts, ai=rt.ai, settings=rt.settings)

        try:
            outcome = perform("content.talk_track", f"live:{session_id}", run=run, atomic=False,
                              after=lambda t: {"source": t.source, "sections": len(t.sections)})
        except DomainError as exc:
            flash(exc.message if exc.code not in ("live_ended", "live_cancelled", "live_not_found")
                  else _("这场直播已结束、已取消或不存在，不能生成话术"), "error")
            return redirect(url_for(".index"))
        if outcome.duplicate:
            flash_duplicate()
            return redirect(url_for(".index"))
        track: live_tracks.TalkTrack = outcome.result
        return self.render("qx/live_talk/track.html", track=track, sections=SECTION_LABELS,
                           source=SOURCE_LABELS.get(track.source, track.source))


def register(admin: Admin) -> None:
    """Adds this area's views to the admin."""
    admin.add_view(LiveTalkView(name=_l("直播话术"), endpoint="live_talk", url="content/talk", category=_l("内容运营")))
