"""Admin pages: the moderation word lists and the decision log (issue 16), menu 内容.

    GET  /admin/content/moderation/words/?kind=&q=      the lists (sensitive, absolute claims,
                                                         allowed exceptions), add and import forms
    GET  /admin/content/moderation/words/<id>           a word's edit form
    POST /admin/content/moderation/words/add            kind, word, action -> `moderation.add_word`
    POST /admin/content/moderation/words/import         kind, action, lines -> `moderation.import_words`
    POST /admin/content/moderation/words/<id>/edit      word, action, enabled -> `moderation.edit_word`
                                                         (disabling is an edit: words are never deleted)
    GET  /admin/content/moderation/decisions/?outcome=&kind=&since=&until=&reviewed=&before=
                                                         the decision log, newest first
    POST /admin/content/moderation/decisions/<id>/review mark a decision reviewed

`content.view` opens the pages; editing and importing need `content.manage`, marking reviewed
`content.review`; each POST is refused with 403 before anything is read, and goes through
`actions.perform` (once per form, audited with the word before and after). Bad input (empty,
too long, a duplicate, an action the list does not take) is a message on the form, nothing
written. The matcher (content_ai/moderation.py) picks the change up at once in this process and
within MODERATION_RELOAD_S in the others.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin.actions import flash_duplicate, form_reason, perform
from miniapp_api.admin.base import QxView
from miniapp_api.admin.security import current, must
from models import moderation, moderation_log
from models.activity import EXPORT_TIMEZONE
from models.errors import DomainError, InvalidInput

CATEGORY = _l("内容运营")
VIEW, MANAGE, REVIEW = "content.view", "content.manage", "content.review"
KIND_LABELS = {"sensitive": _l("敏感词（拦截）"), "absolute": _l("广告法极限词（删除）"), "allow": _l("例外词（放行）")}
ACTION_LABELS = {"block": _l("拦截"), "rewrite": _l("删除该词"), "allow": _l("放行")}
OUTCOME_LABELS = {"pass": _l("通过"), "rewrite": _l("改写"), "block": _l("拦截")}
SUBJECT_KINDS = ("answer", "script", "talk_track", "hint", "hook", "funnel_hint", "group_user", "handoff_reply")
IMPORT_MAX_CHARS = 64_000


def actor() -> str:
    who = current()
    return f"operator:{who.id}" if who else "operator:?"


def snapshot(row: moderation.ModerationWord) -> dict[str, Any]:
    return {"id": row.id, "kind": row.kind, "word": row.word, "action": row.action, "enabled": row.enabled}


def _status(exc: DomainError) -> int:
    if exc.status == 403:
        abort(403)
    return 404 if exc.status == 404 else 400


def _field(name: str, limit: int = 200) -> str:
    return (request.form.get(name) or "")[:limit]


class ModerationWordsView(QxView):
    permission = VIEW

    def _common(self) -> dict[str, Any]:
        return {"kinds": KIND_LABELS, "actions": ACTION_LABELS, "choices": moderation.ACTIONS}

    @expose("/")
    def index(self) -> Any:
        return self._index()

    def _index(self, status: int = 200, form: dict[str, str] | None = None, skipped: list | None = None) -> Any:
        who = must(VIEW)
        kind = request.args.get("kind", "")
        q = (request.args.get("q") or "")[:moderation.WORD_MAX]
        rows = moderation.words(kind if kind in moderation.KINDS else None, q=q)
        page = self.render("qx/content/moderation_words.html", rows=rows, kind=kind, q=q, form=form or {},
                           skipped=skipped or [], can_edit=who.can(MANAGE), **self._common())
        return page if status == 200 else (page, status)

    def _word_page(self, word_id: int, status: int = 200, form: dict[str, str] | None = None) -> Any:
        who = must(VIEW)
        try:
            row = moderation.get_word(word_id)
        except DomainError:
            abort(404)
        page = self.render("qx/content/moderation_word.html", row=row, form=form or {},
                           can_edit=who.can(MANAGE), **self._common())
        return page if status == 200 else (page, status)

    @expose("/<int:word_id>")
    def word(self, word_id: int) -> Any:
        return self._word_page(word_id)

    @expose("/add", methods=["POST"])
    def add(self) -> Any:
        must(MANAGE)
        form = {"kind": _field("kind", 16), "word": _field("word"), "action": _field("action", 8)}
        try:
            outcome = perform("moderation.word_add", f"moderation_list:{form['kind'][:16]}",
                              reason=form_reason(required=False), permission=MANAGE, after=snapshot,
                              run=lambda: moderation.add_word(form["kind"], form["word"], actor=actor(),
                                                              action=form["action"] or None))
        except DomainError as exc:
            flash(exc.message, "error")
            return self._index(_status(exc), form)
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(_("已添加“%(word)s”，立即生效", word=outcome.result.word), "success")
        return redirect(url_for(".index", kind=form["kind"]))

    @expose("/import", methods=["POST"])
    def import_(self) -> Any:
        must(MANAGE)
        kind, action = _field("kind", 16), _field("action", 8)
        form = {"import_kind": kind, "import_action": action, "lines": _field("lines", IMPORT_MAX_CHARS)}
        try:
            if len(request.form.get("lines") or "") > IMPORT_MAX_CHARS:
                raise InvalidInput(_("一次最多粘贴 %(n)s 个字符", n=IMPORT_MAX_CHARS), code="too_long")
            outcome = perform(
                "moderation.words_import", f"moderation_list:{kind[:16]}", reason=form_reason(required=False),
                permission=MANAGE,
                after=lambda r: {"kind": kind, "added": r.added, "skipped": len(r.skipped)},
                run=lambda: moderation.import_words(kind, form["lines"], actor=actor(), action=action or None))
        except DomainError as exc:
            flash(exc.message, "error")
            return self._index(_status(exc), form)
        if outcome.duplicate:
            flash_duplicate()
            return redirect(url_for(".index", kind=kind))
        result = outcome.result
        flash(_("导入完成：新增 %(added)s 个，跳过 %(skipped)s 行", added=len(result.added),
                skipped=len(result.skipped)), "success" if not result.skipped else "warning")
        if result.skipped:
            return self._index(200, {"import_kind": kind, "import_action": action}, result.skipped)
        return redirect(url_for(".index", kind=kind))

    @expose("/<int:word_id>/edit", methods=["POST"])
    def edit(self, word_id: int) -> Any:
        must(MANAGE)
        try:
            row = moderation.get_word(word_id)
        except DomainError:
            abort(404)
        before = snapshot(row)
        form = {"word": _field("word"), "action": _field("action", 8),
                "enabled": "1" if request.form.get("enabled") else ""}
        try:
            outcome = perform("moderation.word_edit", f"moderation_word:{row.id}", reason=form_reason(required=False),
                              permission=MANAGE, before=before, after=snapshot,
                              run=lambda: moderation.edit_word(row.id, actor=actor(),
                                                               word=form["word"] if "word" in request.form else None,
                                                               action=form["action"] or None,
                                                               enabled=bool(form["enabled"])))
        except DomainError as exc:
            flash(exc.message, "error")
            return self._word_page(word_id, _status(exc), form)
        if outcome.duplicate:
            flash_duplicate()
        elif snapshot(outcome.result) == before:
            flash(_("没有改动"), "warning")
        else:
            flash(_("已保存，立即生效"), "success")
        return redirect(url_for(".word", word_id=word_id))


def _day(name: str, *, end: bool = False) -> dt.datetime | None:
    """A YYYY-MM-DD query argument (a Beijing day) as naive UTC: its start, or the next day's."""
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    try:
        day = dt.date.fromisoformat(raw[:10])
    except ValueError:
        raise InvalidInput(_("日期格式无效，请用 年-月-日"), code="invalid_date") from None
    start = dt.datetime.combine(day + dt.timedelta(days=1 if end else 0), dt.time(), ZoneInfo(EXPORT_TIMEZONE))
    return start.astimezone(dt.UTC).replace(tzinfo=None)


class ModerationDecisionsView(QxView):
    permission = VIEW

    @expose("/")
    def index(self) -> Any:
        return self._index()

    def _index(self, status: int = 200) -> Any:
        who = must(VIEW)
        args = {k: (request.args.get(k) or "")[:20] for k in ("outcome", "kind", "since", "until", "reviewed")}
        rows: list[moderation.ModerationDecision] = []
        try:
            before = request.args.get("before", "")
            filters = moderation_log.Filters(
                outcome=args["outcome"] or None, kind=args["kind"] or None, since=_day("since"),
                until=_day("until", end=True),
                reviewed={"yes": True, "no": False}.get(args["reviewed"]),
                before_id=int(before) if before.isdigit() and len(before) < 19 else None)
            rows = moderation_log.decisions(filters, limit=100)
        except DomainError as exc:
            flash(exc.message, "error")
            status = 400 if status == 200 else status
        page = self.render("qx/content/moderation_decisions.html", rows=rows, args=args, outcomes=OUTCOME_LABELS,
                           subject_kinds=SUBJECT_KINDS, can_review=who.can(REVIEW),
                           next_before=rows[-1].id if len(rows) == 100 else None)
        return page if status == 200 else (page, status)

    @expose("/<int:decision_id>/review", methods=["POST"])
    def review(self, decision_id: int) -> Any:
        must(REVIEW)
        try:
            outcome = perform("moderation.decision_review", f"moderation_decision:{decision_id}",
                              reason=form_reason(required=False), permission=REVIEW,
                              before={"id": decision_id, "reviewed": False},
                              after=lambda r: {"id": r.id, "reviewed": True, "outcome": r.outcome},
                              run=lambda: moderation_log.mark_reviewed(decision_id, actor=actor()))
        except DomainError as exc:
            flash(exc.message, "error")
            return self._index(_status(exc))
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(_("已标记为已复核"), "success")
        return redirect(request.form.get("next") if (request.form.get("next") or "").startswith(
            "/admin/content/moderation/decisions") else url_for(".index"))


def register(admin: Admin) -> None:
    """The word lists and the decision log in the 内容 menu."""
    admin.add_view(ModerationWordsView(name=_l("审核词表"), endpoint="moderation_words",
                                       url="content/moderation/words", category=CATEGORY))
    admin.add_view(ModerationDecisionsView(name=_l("审核记录"), endpoint="moderation_decisions",
                                           url="content/moderation/decisions", category=CATEGORY))
