"""Admin pages: short dramas (issue 13, seed 000) — the series with their funnel (plays ->
click-throughs -> live entries -> orders of the linked sessions), a series' page with its
episodes, placed products and live links, and the operator's edits (series title and cover,
add or edit an episode) through models/drama with creator=None, each once and audited
(`actions.perform`, permission live.manage; live.view opens the pages)."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin.actions import flash_duplicate, form_reason, perform
from miniapp_api.admin.base import QxView
from miniapp_api.admin.live import KIND_LABELS, shown
from miniapp_api.admin.live_forms import row_id, whole
from miniapp_api.admin.security import must
from models import drama, drama_funnel
from models.errors import DomainError, NotFound
from models.money import rmb

PAGE = 50


def _codes(text: str) -> list[str]:
    return [c.strip() for c in (text or "").replace("\n", ",").split(",") if c.strip()]


def _link(form: dict[str, str]) -> drama.LinkSpec | None:
    """The link fields of an episode form: no kind means no link."""
    kind = (form.get("link_kind") or "").strip()
    if not kind:
        return None
    return drama.LinkSpec(kind, whole(form.get("session_id", ""), _("直播场次 ID")))


def _episode_after(e: drama.DramaEpisode) -> dict[str, Any]:
    return {"episode": e.id, "number": e.number, "title": e.title, "video_url": e.video_url,
            "link": e.link_kind, "session": e.live_session_id}


class DramaView(QxView):
    permission = "live.view"

    @expose("/")
    def index(self) -> Any:
        code = (request.args.get("creator") or "").strip()
        rows = drama.list_series(None, PAGE, row_id(request.args.get("before")), creator_code=code or None)
        ids = [s.id for s in rows]
        return self.render("qx/drama/series_list.html", rows=rows, funnels=drama_funnel.by_series(ids),
                           episodes=drama.episode_counts(ids), creator=code, rmb=rmb,
                           more=rows[-1].id if len(rows) == PAGE else None)

    def _detail(self, series_id: int, status: int = 200, form: dict | None = None) -> Any:
        who = must("live.view")
        try:
            view = drama.get_series(series_id)
        except DomainError:
            abort(404)
        page = self.render("qx/drama/series.html", v=view, funnel=drama_funnel.by_series([view.id])[view.id],
                           kinds=KIND_LABELS, shown=shown, rmb=rmb, form=form or {},
                           can_manage=who.can("live.manage"))
        return page if status == 200 else (page, status)

    @expose("/<int:series_id>")
    def detail(self, series_id: int) -> Any:
        return self._detail(series_id)

    def _act(self, series_id: int, action: str, obj: str, run: Any, after: Any, done: str) -> Any:
        must("live.manage")
        try:
            outcome = perform(action, obj, reason=form_reason(required=False), run=run, after=after,
                              permission="live.manage")
        except DomainError as exc:
            flash(exc.message, "error")
            return self._detail(series_id, 404 if exc.status == 404 else (409 if exc.status == 409 else 400),
                                dict(request.form))
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(done, "success")
        return redirect(url_for(".detail", series_id=series_id))

    @expose("/<int:series_id>/edit", methods=["POST"])
    def edit_series(self, series_id: int) -> Any:
        who = must("live.manage")
        form = request.form
        return self._act(series_id, "drama.series_edit", f"drama:{series_id}",
                         lambda: drama.update_series(None, series_id, title=form.get("title", ""),
                                                     cover_url=form.get("cover_url", "").strip(),
                                                     actor=f"operator:{who.id}"),
                         lambda s: {"title": s.title, "cover_url": s.cover_url}, _("短剧已保存"))

    @expose("/<int:series_id>/episodes", methods=["POST"])
    def add_episode(self, series_id: int) -> Any:
        who = must("live.manage")
        form = request.form

        def run() -> drama.DramaEpisode:
            spec = drama.EpisodeSpec(whole(form.get("number", ""), _("集数")), form.get("title", ""),
                                     form.get("video_url", "").strip(), _codes(form.get("sku_codes", "")),
                                     _link(form))
            return drama.add_episode(None, series_id, spec, actor=f"operator:{who.id}")

        return self._act(series_id, "drama.episode_add", f"drama:{series_id}", run, _episode_after, _("已添加一集"))

    @expose("/<int:series_id>/episodes/<int:episode_id>", methods=["POST"])
    def edit_episode(self, series_id: int, episode_id: int) -> Any:
        who = must("live.manage")
        form = request.form

        def run() -> drama.DramaEpisode:
            episode = drama.DramaEpisode.get_or_none(drama.DramaEpisode.id == episode_id)
            if episode is None or episode.series_id != series_id:
                raise NotFound(_("没有这一集"), code="episode_not_found")
            changes = drama.EpisodeChanges(title=form.get("title", ""), video_url=form.get("video_url", "").strip(),
                                           sku_codes=_codes(form.get("sku_codes", "")), link=_link(form))
            return drama.update_episode(None, episode_id, changes, actor=f"operator:{who.id}")

        return self._act(series_id, "drama.episode_edit", f"drama:{series_id}", run, _episode_after, _("这一集已保存"))


def register(admin: Admin) -> None:
    """Adds this area's views to the admin."""
    admin.add_view(DramaView(name=_l("短剧"), endpoint="drama", url="live/drama", category=_l("直播")))
