"""Admin page: the FAQ the answer engine answers from (models/faq.py, issue 16) — list every
entry, add one, edit one (question, answer, keywords, order, enabled), disable one.

    GET  /admin/content/faq/                 every entry, disabled ones too, in list order
    POST /admin/content/faq/new              question, answer, keywords, position
    POST /admin/content/faq/<id>/edit        question, answer, keywords, position, enabled
    POST /admin/content/faq/<id>/disable

Seeing needs `content.view`, changing `content.manage`; every change is a one-time, audited
action (`actions.perform`). Nothing is deleted: an entry is disabled. The engine's index sees a
change at its next version check (content_ai/retrieval.py).
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin.actions import flash_duplicate, form_reason, perform
from miniapp_api.admin.base import QxView
from miniapp_api.admin.security import current, must
from models import faq
from models.errors import DomainError, InvalidInput

MANAGE = "content.manage"
MESSAGES = {
    "invalid_faq_question": _l("问题为 1-200 个字，不能含控制字符"),
    "invalid_faq_answer": _l("答案为 1-1000 个字，不能含控制字符"),
    "invalid_faq_keywords": _l("关键词最多 200 个字，不能含控制字符"),
    "invalid_faq_position": _l("排序应为 -1000000 到 1000000 之间的整数"),
    "faq_question_taken": _l("已有相同的问题"),
    "faq_not_found": _l("问答不存在"),
    "missing_action_token": _l("表单缺少一次性令牌，请刷新页面后重试"),
}


def _position() -> int:
    raw = (request.form.get("position") or "0").strip()
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput("position: a whole number", code="invalid_faq_position") from None


def _snapshot(entry: faq.Faq) -> dict[str, Any]:
    return {"question": entry.question, "answer": entry.answer, "keywords": entry.keywords,
            "position": entry.position, "enabled": entry.enabled}


class FaqView(QxView):
    permission = "content.view"

    def _page(self, status: int = 200, form: dict[str, str] | None = None) -> Any:
        who = current()
        page = self.render("qx/content/faq.html", rows=faq.all_entries(), form=form or {},
                           can_manage=who is not None and who.can(MANAGE))
        return page if status == 200 else (page, status)

    @expose("/")
    def index(self) -> Any:
        return self._page()

    def _run(self, action: str, obj: str, run: Any, success: str, before: Any = None) -> Any:
        try:
            outcome = perform(action, obj, reason=form_reason(required=False), permission=MANAGE, run=run,
                              before=before, after=lambda result: result)
        except DomainError as exc:
            if exc.status == 403:
                abort(403)
            flash(str(MESSAGES[exc.code]) if exc.code in MESSAGES else exc.message, "error")
            kept = {k: (request.form.get(k) or "")[:1000] for k in ("question", "answer", "keywords", "position")}
            status = exc.status if 400 <= exc.status < 500 else 400
            return self._page(status, form=kept if action == "faq.create" else None)
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(success, "success")
        return redirect(url_for(".index"))

    @expose("/new", methods=["POST"])
    def create(self) -> Any:
        must(MANAGE)
        f, who = request.form, current()

        def run() -> dict[str, Any]:
            made = faq.create(f.get("question") or "", f.get("answer") or "", f.get("keywords") or "", _position(),
                              by=who.name if who else "admin")
            return {"id": made.id, **_snapshot(made)}

        return self._run("faq.create", "faq:new", run, _("已添加问答"))

    @expose("/<int:entry_id>/edit", methods=["POST"])
    def edit(self, entry_id: int) -> Any:
        must(MANAGE)
        f, who = request.form, current()
        found = faq.Faq.get_or_none(faq.Faq.id == entry_id)

        def run() -> dict[str, Any]:
            diff = faq.update(entry_id, question=f.get("question") or "", answer=f.get("answer") or "",
                              keywords=f.get("keywords") or "", position=_position(), enabled=f.get("enabled") == "1",
                              by=who.name if who else "admin")
            return {k: list(v) for k, v in diff.items()}

        return self._run("faq.update", f"faq:{entry_id}", run, _("已保存"),
                         before=_snapshot(found) if found else None)

    @expose("/<int:entry_id>/disable", methods=["POST"])
    def disable(self, entry_id: int) -> Any:
        must(MANAGE)
        who = current()

        def run() -> dict[str, Any]:
            return {"disabled": faq.disable(entry_id, by=who.name if who else "admin")}

        return self._run("faq.disable", f"faq:{entry_id}", run, _("已停用"))


def register(admin: Admin) -> None:
    admin.add_view(FaqView(name=_l("常见问题"), endpoint="content_faq", url="content/faq", category=_l("内容运营")))
