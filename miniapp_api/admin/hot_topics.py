"""Admin pages: hot topics (issue 16). Operators import a hot-topic list, a CSV upload or a URL
returning JSON, and see the products suggested for each topic with their scores and hooks.

- The CSV is parsed in the request (`tasks.hot_topics.queue_csv`): a file that cannot be
  imported is a message on the form (400), nothing stored; its good lines are stored and a job
  pairs them. A URL is checked here (http/https) and fetched by the job (`queue_url`); a feed
  that fails shows as a failed import with its reason.
- The form's one-time action token is the import's unique key: a form sent twice is one import.
- "Re-pair" queues a finished import again: its topics are paired with the catalog as it is now.
- Every action needs content.manage and is audited; the pages need content.view.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin.actions import TOKEN_FIELD, flash_duplicate, form_reason, perform
from miniapp_api.admin.activity import read_upload
from miniapp_api.admin.base import LargeUploads, QxView, size_text
from miniapp_api.admin.security import must
from miniapp_api.deps import runtime
from models import hot_topic_lists, hot_topics
from models.errors import DomainError
from tasks import hot_topics as jobs

STATE_LABELS = {"queued": "排队中", "running": "运行中", "done": "已完成", "failed": "失败"}
SOURCE_LABELS = {"csv": "CSV 上传", "url": "网址"}
TOPICS_SHOWN = 500


class HotTopicsView(LargeUploads, QxView):
    permission = "content.view"
    upload_endpoints = ("upload",)

    def _index(self, status: int = 200, **context: Any) -> Any:
        s = runtime().settings
        context.setdefault("url", "")
        return self.render("qx/content/hot_topics.html", imports=hot_topics.recent_imports(50),
                           states=STATE_LABELS, sources=SOURCE_LABELS, max_rows=s.HOT_TOPIC_MAX_ROWS,
                           limit=size_text(s.HOT_TOPIC_MAX_BYTES), title_max=hot_topic_lists.TITLE_MAX,
                           **context), status

    @expose("/")
    def index(self) -> Any:
        return self._index()

    @expose("/<int:import_id>")
    def detail(self, import_id: int) -> Any:
        row = hot_topics.get_import(import_id)
        if row is None:
            abort(404)
        return self.render("qx/content/hot_topic.html", row=row, states=STATE_LABELS, sources=SOURCE_LABELS,
                           topics=hot_topics.topics_with_pairs(import_id, TOPICS_SHOWN), shown=TOPICS_SHOWN,
                           bad=hot_topics.bad_lines(row), polling=row.state in ("queued", "running"))

    def _start(self, action: str, run: Any, after: Any) -> Any:
        """Perform an import action; a bad file or URL is a message on the form (400)."""
        try:
            outcome = perform(action, "hot_topic_import:new", reason=form_reason(required=False), atomic=False,
                              run=run, after=after)
        except DomainError as exc:
            flash(exc.message, "error")
            return self._index(400, url=(request.form.get("url") or "")[:500])
        if outcome.duplicate:
            flash_duplicate()
            return redirect(url_for(".index"))
        import_id = outcome.result if isinstance(outcome.result, int) else outcome.result[0]
        row = hot_topics.get_import(import_id)
        if row is not None and row.state == "failed":
            flash(_("导入失败：%(error)s", error=row.error), "error")
        else:
            flash(_("已开始导入，配对完成后可在详情页查看"), "success")
        return redirect(url_for(".detail", import_id=import_id))

    @expose("/upload", methods=("POST",))
    def upload(self) -> Any:
        who = must("content.manage")
        key = request.form.get(TOKEN_FIELD) or ""
        try:
            name, data = read_upload()
        except DomainError as exc:
            flash(exc.message, "error")
            return self._index(400)
        return self._start("hot_topics.import_csv",
                           lambda: jobs.queue_csv(data, key=key, operator=who.name),
                           lambda r: {"file": name, "bytes": len(data), "import": r[0], "rows": r[1].read,
                                      "topics": len(r[1].rows), "bad": len(r[1].bad)})

    @expose("/url", methods=("POST",))
    def from_url(self) -> Any:
        who = must("content.manage")
        key = request.form.get(TOKEN_FIELD) or ""
        url = (request.form.get("url") or "").strip()
        return self._start("hot_topics.import_url", lambda: jobs.queue_url(url, key=key, operator=who.name),
                           lambda import_id: {"url": url[:500], "import": import_id})

    @expose("/<int:import_id>/repair", methods=("POST",))
    def repair(self, import_id: int) -> Any:
        must("content.manage")
        if hot_topics.get_import(import_id) is None:
            abort(404)
        try:
            outcome = perform("hot_topics.repair", f"hot_topic_import:{import_id}", atomic=False,
                              reason=form_reason(required=False), run=lambda: jobs.queue_repair(import_id),
                              after=lambda queued: {"queued": queued})
        except DomainError as exc:
            flash(exc.message, "error")
            return redirect(url_for(".detail", import_id=import_id))
        if outcome.duplicate:
            flash_duplicate()
        elif outcome.result:
            flash(_("已重新排队配对"), "success")
        else:
            flash(_("这个导入正在进行中或没有话题，不能重新配对"), "warning")
        return redirect(url_for(".detail", import_id=import_id))


def register(admin: Admin) -> None:
    """Adds this area's views to the admin."""
    admin.add_view(HotTopicsView(name=_l("热点配对"), endpoint="hot_topics", url="content/hot-topics",
                                 category=_l("内容运营")))
