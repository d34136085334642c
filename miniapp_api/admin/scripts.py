"""Admin pages: creators' short-video scripts (issue 16) — generate one for a creator, the list,
and the review queue of scripts creators submitted for publishing (AI + human review).

    GET  /admin/content/scripts/                  every script, newest first, by state and creator
                                                  (keyset pages, ?before=<id>); the counts by state;
                                                  the generate form
    POST /admin/content/scripts/new               creator code + SKU + topic (+ style): a draft for
                                                  that creator, by the model or offline
    GET  /admin/content/scripts/<id>              the three variants with their subtitles and tags,
                                                  the AI check's decision, the review
    POST /admin/content/scripts/<id>/approve      optional note
    POST /admin/content/scripts/<id>/reject       note required (the creator reads it)
    GET  /admin/content/script-review/            the queue: submitted scripts, oldest first

`content.view` opens the pages; generating needs `content.manage`, deciding `content.review`
(refused with 403 before anything is read). Every POST is a one-time audited action
(`actions.perform`); a refusal of the service (unknown creator or SKU, a topic too long, a
rejection without a note, a script already decided) is a message on the page and nothing is
written. The creator is told of a decision in chat (models/scripts.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from content_ai import scripts as content
from content_ai.srt import PART_LABELS, PARTS, SLOTS, timestamp
from miniapp_api.admin.actions import flash_duplicate, perform
from miniapp_api.admin.base import QxView
from miniapp_api.admin.security import must
from miniapp_api.deps import runtime
from models import scripts
from models.errors import DomainError, InvalidInput
from models.money import rmb
from models.network import Creator
from tasks import queues

CATEGORY = _l("内容运营")
MANAGE, REVIEW = "content.manage", "content.review"
PAGE = 50
MAX_ID = 2**62
STATE_LABELS = {"draft": _l("草稿"), "submitted": _l("待审核"), "approved": _l("已通过"), "rejected": _l("已驳回")}
SOURCE_LABELS = {"model": _l("模型"), "offline": _l("离线模板")}
MESSAGES = {"unknown_sku": _l("没有这个商品编码，或商品已下架"), "script_not_found": _l("文案不存在")}


def message_of(exc: DomainError) -> str:
    return str(MESSAGES[exc.code]) if exc.code in MESSAGES else exc.message


def _id(raw: str | None) -> int | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) <= MAX_ID:
        abort(400)
    return int(raw)


def _field(name: str, limit: int) -> str:
    return (request.form.get(name) or "").strip()[:limit]


def snapshot(row: scripts.ContentScript) -> dict[str, Any]:
    """The script as its audit rows record it."""
    return {"script": row.id, "creator": row.creator_id, "sku": row.sku_code, "state": row.state,
            "source": row.source, "reviewer": row.reviewer, "note": row.note}


def helpers() -> dict[str, Any]:
    return {"states": STATE_LABELS, "sources": SOURCE_LABELS, "rmb": rmb, "parts": PARTS, "part_labels": PART_LABELS,
            "slots": SLOTS, "timestamp": timestamp}


def _creator(code: str) -> Creator:
    found = Creator.get_or_none(Creator.code == code) if code else None
    if found is None:
        raise InvalidInput(_("没有这个达人邀请码"), code="unknown_creator")
    return found


class ScriptsView(QxView):
    permission = "content.view"

    def _list(self, status: int = 200, form: dict | None = None) -> Any:
        who = must("content.view")
        state = request.args.get("state") or ""
        code = (request.args.get("creator") or "").strip()[:32]
        if state and state not in STATE_LABELS:
            abort(404)
        owner = Creator.get_or_none(Creator.code == code) if code else None
        before = _id(request.args.get("before"))
        rows = [] if code and owner is None else scripts.list_for(owner, limit=PAGE, before_id=before,
                                                                   state=state or None)
        page = self.render("qx/content/scripts.html", rows=rows, state=state, creator=code, counts=scripts.counts(),
                           more=rows[-1].id if len(rows) == PAGE else None, form=form or {},
                           can_manage=who.can(MANAGE), **helpers())
        return page if status == 200 else (page, status)

    @expose("/")
    def index(self) -> Any:
        return self._list()

    @expose("/new", methods=["POST"])
    def create(self) -> Any:
        who = must(MANAGE)
        form = {k: _field(k, 200) for k in ("creator", "sku", "topic", "style")}
        rt = runtime()

        def run() -> scripts.ContentScript:
            return content.create_script(_creator(form["creator"]), form["sku"], form["topic"], form["style"] or None,
                                         ai=rt.ai, settings=rt.settings, actor=f"operator:{who.id}")

        try:  # the model call is outside any transaction; the script and its audit row follow it
            outcome = perform("script.generate", f"creator:{form['creator'][:32]}", run=run, after=snapshot,
                              reason=form["topic"], permission=MANAGE, atomic=False)
        except DomainError as exc:
            if exc.status == 403:
                abort(403)
            flash(message_of(exc), "error")
            return self._list(exc.status if 400 <= exc.status < 500 else 400, form)
        if outcome.duplicate:
            flash_duplicate()
            return redirect(url_for(".index"))
        flash(_("已生成文案（草稿）"), "success")
        return redirect(url_for(".detail", script_id=outcome.result.id))

    def _script(self, script_id: int) -> scripts.ContentScript:
        try:
            return scripts.get(script_id)
        except DomainError:
            abort(404)

    def _detail(self, script_id: int, status: int = 200, form: dict | None = None) -> Any:
        who = must("content.view")
        row = self._script(script_id)
        owner = Creator.get_or_none(Creator.id == row.creator_id)
        page = self.render("qx/content/script.html", s=row, data=row.data or {}, owner=owner, form=form or {},
                           can_review=who.can(REVIEW) and row.state == scripts.State.SUBMITTED, **helpers())
        return page if status == 200 else (page, status)

    @expose("/<int:script_id>")
    def detail(self, script_id: int) -> Any:
        return self._detail(script_id)

    def _decide(self, script_id: int, approve: bool) -> Any:
        who = must(REVIEW)
        note = " ".join((request.form.get("note") or "").split())[:scripts.NOTE_MAX]
        action = "script.approve" if approve else "script.reject"
        run: Callable[[], scripts.ContentScript] = lambda: scripts.review(  # noqa: E731
            script_id, approve=approve, reviewer=who.name, note=note)
        try:
            before = snapshot(self._script(script_id))
            outcome = perform(action, f"content_script:{script_id}", reason=note, before=before, run=run,
                              after=snapshot, permission=REVIEW)
        except DomainError as exc:
            if exc.status == 403:
                abort(403)
            flash(message_of(exc), "error")
            return self._detail(script_id, exc.status if 400 <= exc.status < 500 else 400, {"note": note})
        if outcome.duplicate:
            flash_duplicate()
        else:
            queues.drain_all_outbound()  # the creator's notice, written with the decision, goes out now
            flash(_("已通过，已通知达人") if approve else _("已驳回，已通知达人"), "success")
        return redirect(url_for(".detail", script_id=script_id))

    @expose("/<int:script_id>/approve", methods=["POST"])
    def approve(self, script_id: int) -> Any:
        return self._decide(script_id, True)

    @expose("/<int:script_id>/reject", methods=["POST"])
    def reject(self, script_id: int) -> Any:
        return self._decide(script_id, False)


class ScriptReviewView(QxView):
    permission = "content.view"

    @expose("/")
    def index(self) -> Any:
        who = must("content.view")
        rows = scripts.queue(limit=PAGE)
        return self.render("qx/content/script_review.html", rows=rows, counts=scripts.counts(),
                           can_review=who.can(REVIEW), **helpers())


def register(admin: Admin) -> None:
    """Adds this area's views to the admin (menu 内容)."""
    admin.add_view(ScriptsView(name=_l("短视频文案"), endpoint="scripts", url="content/scripts", category=CATEGORY))
    admin.add_view(ScriptReviewView(name=_l("文案审核"), endpoint="script_review", url="content/script-review",
                                    category=CATEGORY))
