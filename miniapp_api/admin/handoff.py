"""Admin pages: hand-off cases (issue 16) — the questions the chat bot handed to a human.

    GET  /admin/content/handoff/               cases by state (open by default; answered, closed, all),
                                               newest first, keyset pages (?before=<id>)
    GET  /admin/content/handoff/<id>           one case: the chat, the asker, the questions, the
                                               bot's draft and why it handed off, the answer
    POST /admin/content/handoff/<id>/answer    the answer (`answer` field): moderated (kind
                                               handoff_reply), kept on the case, sent to the asker's
                                               chat through the sender; the chat's AI stays silent
                                               for HANDOFF_SILENCE_S
    POST /admin/content/handoff/<id>/close     closes an open or answered case (nothing is sent)

`content.view` or `content.handoff` opens the pages (support answers hand-offs without seeing
the other content pages); the POSTs need `content.handoff` (refused with 403 before
anything is read) and go through `actions.perform` (once per form, audited with the case before
and after). Operators may answer any open case, also one routed to a creator. A refusal (empty
or blocked answer, a case answered meanwhile) is a message on the case page; nothing is written.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from bots.commands.handoff_flow import deliver_answer
from miniapp_api.admin.actions import flash_duplicate, perform
from miniapp_api.admin.base import QxView
from miniapp_api.admin.security import Signed, current, must
from miniapp_api.deps import runtime
from models import handoff
from models.errors import DomainError
from models.network import Creator

PAGE = 50
MAX_ID = 2**63 - 1
ACT = "content.handoff"
STATES = ("open", "answered", "closed", "all")
STATE_LABELS = {"open": _l("待回复"), "answered": _l("已回复"), "closed": _l("已关闭"), "all": _l("全部")}
ROUTE_LABELS = {handoff.CREATOR: _l("创作者"), handoff.OPERATORS: _l("运营")}
MESSAGES = {
    "empty_answer": _l("回复内容不能为空"),
    "answer_too_long": _l("回复太长了（最多 1000 字）"),
    "answer_blocked": _l("回复包含不适宜发布的内容，请修改后再发送"),
    "case_not_open": _l("这个问题已经回复或关闭了"),
    "case_closed": _l("这个问题已经关闭了"),
}


def snapshot(case: handoff.HandoffCase) -> dict[str, Any]:
    """The case as its audit rows record it (the answer clipped; never the asker's personal data)."""
    return {"case": case.id, "chat": case.chat_key, "state": case.state, "routed_to": case.routed_to,
            "creator": case.creator_id, "questions": case.questions, "answer": case.answer[:200],
            "answered_by": case.answered_by}


def _before() -> int | None:
    raw = (request.args.get("before") or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) <= MAX_ID:
        abort(400)
    return int(raw)


def _message(exc: DomainError) -> str:
    return str(MESSAGES.get(exc.code) or exc.message)


def _seer() -> Signed:
    """The operator, who must see content or act on hand-offs (support answers without the rest
    of the content pages), else 403."""
    who = current()
    if who is None:
        abort(401)
    if not (who.can("content.view") or who.can(ACT)):
        abort(403)
    return who


class HandoffView(QxView):
    permission = "content.view"

    def is_accessible(self) -> bool:
        who = current()
        return who is not None and (who.can("content.view") or who.can(ACT))

    @expose("/")
    def index(self) -> Any:
        who = _seer()
        state = request.args.get("state", "open")
        if state not in STATES:
            abort(404)
        rows = handoff.list_cases(None if state == "all" else state, before=_before(), limit=PAGE + 1)
        more, rows = len(rows) > PAGE, rows[:PAGE]
        next_url = url_for(".index", state=state, before=rows[-1].id) if more else None
        return self.render("qx/handoff.html", rows=rows, state=state, states=STATE_LABELS, routes=ROUTE_LABELS,
                           counts=handoff.counts(), next_url=next_url, can_act=who.can(ACT))

    def _case(self, case_id: int) -> handoff.HandoffCase:
        if case_id > MAX_ID:
            abort(404)
        try:
            return handoff.get(case_id)
        except DomainError:
            abort(404)

    def _detail(self, case_id: int, status: int = 200, typed: str = "") -> Any:
        who = _seer()
        case = self._case(case_id)
        creator = Creator.get_or_none(Creator.id == case.creator_id) if case.creator_id else None
        page = self.render("qx/handoff_case.html", case=case, creator=creator, states=STATE_LABELS,
                           routes=ROUTE_LABELS, typed=typed, can_act=who.can(ACT),
                           max_answer=handoff.ANSWER_MAX)
        return page if status == 200 else (page, status)

    @expose("/<int:case_id>")
    def detail(self, case_id: int) -> Any:
        return self._detail(case_id)

    @expose("/<int:case_id>/answer", methods=["POST"])
    def answer(self, case_id: int) -> Any:
        who = must(ACT)  # refused before anything is read or written
        typed = (request.form.get("answer") or "").strip()
        case = self._case(case_id)
        rt = runtime()
        try:
            outcome = perform("handoff.answer", f"handoff_case:{case.id}", reason=typed[:500], before=snapshot(case),
                              permission=ACT, after=snapshot,
                              run=lambda: deliver_answer(rt.redis, rt.settings, case.id, typed,
                                                         by=f"operator:{who.id}"))
        except DomainError as exc:
            if exc.status == 403:
                abort(403)
            flash(_message(exc), "error")
            return self._detail(case.id, 409 if exc.status == 409 else 400, typed[:handoff.ANSWER_MAX])
        if outcome.duplicate:
            flash_duplicate()
        else:
            rt.sender.schedule(case.platform, None)  # the answer's outbox row, after its commit
            flash(_("已回复，回复正在发送到提问的聊天"), "success")
        return redirect(url_for(".detail", case_id=case.id))

    @expose("/<int:case_id>/close", methods=["POST"])
    def close(self, case_id: int) -> Any:
        who = must(ACT)
        case = self._case(case_id)
        try:
            note = (request.form.get("reason") or "")[:500]
            outcome = perform("handoff.close", f"handoff_case:{case.id}", reason=note, before=snapshot(case),
                              permission=ACT, after=snapshot,
                              run=lambda: handoff.close(case.id, by=f"operator:{who.id}"))
        except DomainError as exc:
            if exc.status == 403:
                abort(403)
            flash(_message(exc), "error")
            return self._detail(case.id, 409 if exc.status == 409 else 400)
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(_("已关闭"), "success")
        return redirect(url_for(".index"))


def register(admin: Admin) -> None:
    admin.add_view(HandoffView(name=_l("人工转接"), endpoint="handoff", url="content/handoff", category=_l("内容运营")))
