"""Admin pages: chat (group auto-reply rules, group settings, failed pushes); the broadcast
composer is miniapp_api/admin/broadcasts.py, registered from here.

Rules and settings go through the functions `qianxing groups` uses (bots.groups): `save_rule`
(exact, contains or RE2 regex; an unsafe or invalid pattern is refused with its reason, nothing
written), `set_rule_active` and `configure`. Rules are kept, never deleted, as the CLI keeps
them: editing a rule adds the changed rule and switches the old one off, in one transaction.

Failed pushes are the outbox rows (chat messages) and the notices (mini-program subscribe
messages, chat notices) in the `failed` state; a retry puts them back to pending through
`models.outbox.requeue_failed` / `models.notifications.requeue_failed` and queues their push
after commit (tasks.broadcasts.after_retry). Every change is an audited action.
"""

from __future__ import annotations

import re
from typing import Any

from flask import flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from bots.groups import configure, list_rules, save_rule, set_rule_active
from miniapp_api.admin import broadcasts
from miniapp_api.admin.actions import flash_duplicate, form_reason, perform
from miniapp_api.admin.base import QxView
from miniapp_api.admin.security import must, personal
from models import notifications, outbox
from models.chat import GroupConfig, GroupRule, MatchType
from models.errors import DomainError, InvalidInput, NotFound
from tasks.broadcasts import after_retry

CATEGORY = _l("聊天")


def whole_number(text: str | None, label: str, *, default: int = 0) -> int:
    text = (text or "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise InvalidInput(_("%(label)s 必须是整数", label=label), code="invalid_number") from None


def rule_snapshot(rule: GroupRule) -> dict[str, Any]:
    return {"id": rule.id, "scope": rule.scope, "match": rule.match, "pattern": rule.pattern, "reply": rule.reply,
            "priority": rule.priority, "active": rule.active}


def rule_form() -> dict[str, str]:
    f = request.form
    return {"scope": (f.get("scope") or "*").strip(), "match": f.get("match") or "", "pattern": f.get("pattern") or "",
            "reply": f.get("reply") or "", "priority": (f.get("priority") or "0").strip()}


class RulesView(QxView):
    permission = "chat.view"

    def _page(self, status: int = 200, form: dict[str, str] | None = None) -> Any:
        scope = request.args.get("scope") or None
        return self.render("qx/chat_rules.html", rules=list_rules(scope), scope=scope, form=form or {},
                           matches=[m.value for m in MatchType]), status

    @expose("/")
    def index(self) -> Any:
        return self._page()

    @expose("/add", methods=["POST"])
    def add(self) -> Any:
        must("chat.edit")
        form = rule_form()
        try:
            priority = whole_number(form["priority"], _("优先级"))
            outcome = perform("group_rule.add", "group_rule", reason=form_reason(required=False),
                              run=lambda: save_rule(form["scope"], form["match"], form["pattern"], form["reply"],
                                                    priority),
                              after=rule_snapshot)
        except DomainError as exc:
            flash(exc.message, "error")
            return self._page(400, form)
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(_("已添加规则 %(id)s", id=outcome.result.id), "success")
        return redirect(url_for(".index"))

    def _rule(self, rule_id: int) -> GroupRule:
        rule = GroupRule.get_or_none(GroupRule.id == rule_id)
        if rule is None:
            raise NotFound(_("没有规则 %(id)s", id=rule_id), code="rule_not_found")
        return rule

    @expose("/<int:rule_id>/edit", methods=["GET", "POST"])
    def edit(self, rule_id: int) -> Any:
        if request.method == "POST":
            must("chat.edit")
        rule = GroupRule.get_or_none(GroupRule.id == rule_id)
        if rule is None:
            return self.render("qx/error.html", status=404, message=_("没有规则 %(id)s", id=rule_id)), 404
        if request.method == "GET":
            return self.render("qx/chat_rule_edit.html", rule=rule, form=rule_snapshot(rule),
                               matches=[m.value for m in MatchType])
        form = rule_form()
        before = rule_snapshot(rule)

        def replace() -> GroupRule:  # one transaction (perform): the new rule, the old one off
            new = save_rule(form["scope"], form["match"], form["pattern"], form["reply"], priority,
                            active=rule.active)
            set_rule_active(rule.id, False)
            return new

        try:
            priority = whole_number(form["priority"], _("优先级"))
            outcome = perform("group_rule.edit", f"group_rule:{rule.id}", reason=form_reason(required=False),
                              before=before, run=replace, after=rule_snapshot)
        except DomainError as exc:
            flash(exc.message, "error")
            return self.render("qx/chat_rule_edit.html", rule=rule, form=form,
                               matches=[m.value for m in MatchType]), 400
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(_("规则 %(old)s 已停用，修改后的规则为 %(new)s", old=rule.id, new=outcome.result.id), "success")
        return redirect(url_for(".index"))

    @expose("/<int:rule_id>/<any(enable,disable):what>", methods=["POST"])
    def toggle(self, rule_id: int, what: str) -> Any:
        must("chat.edit")
        try:
            rule = self._rule(rule_id)
            outcome = perform(f"group_rule.{what}", f"group_rule:{rule.id}", reason=form_reason(required=False),
                              before=rule_snapshot(rule), run=lambda: set_rule_active(rule.id, what == "enable"),
                              after=rule_snapshot)
        except DomainError as exc:
            flash(exc.message, "error")
            return self._page(404 if isinstance(exc, NotFound) else 400)
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(_("已启用") if what == "enable" else _("已停用"), "success")
        return redirect(url_for(".index"))


# ---- group settings -----------------------------------------------------------------------------

GROUP_FIELDS = ("title", "welcome_text", "coupon_text", "promo_ref", "banned_words", "replies_per_minute",
                "ai_fallback", "active")


def group_snapshot(cfg: GroupConfig | None) -> dict[str, Any] | None:
    if cfg is None:
        return None
    return {"chat_key": cfg.chat_key, **{name: getattr(cfg, name) for name in GROUP_FIELDS}}


def group_changes(form: dict[str, str]) -> dict[str, Any]:
    """The form as `bots.groups.configure` takes it (what `qianxing groups config` passes)."""
    rate = whole_number(form.get("replies_per_minute"), _("每分钟回复数"))
    if not 0 <= rate <= 1000:
        raise InvalidInput(_("每分钟回复数为 0-1000（0 表示使用默认设置）"), code="invalid_config")
    return {"title": form.get("title") or "", "welcome_text": form.get("welcome_text") or "",
            "coupon_text": form.get("coupon_text") or "", "promo_ref": form.get("promo_ref") or "",
            "banned_words": [w for w in re.split(r"[,，\n]", form.get("banned_words") or "") if w.strip()],
            "replies_per_minute": rate or None, "ai_fallback": form.get("ai_fallback") == "1",
            "active": form.get("active") == "1"}


class GroupsView(QxView):
    permission = "chat.view"

    def _page(self, status: int = 200, form: dict[str, Any] | None = None) -> Any:
        groups = list(GroupConfig.select().order_by(GroupConfig.chat_key).limit(500))
        key = request.args.get("key")
        if form is None:
            found = GroupConfig.get_or_none(GroupConfig.chat_key == key) if key else None
            form = group_snapshot(found) or {"active": True}
            if isinstance(form.get("banned_words"), list):
                form["banned_words"] = "，".join(form["banned_words"])
        return self.render("qx/chat_groups.html", groups=groups, form=form), status

    @expose("/")
    def index(self) -> Any:
        return self._page()

    @expose("/save", methods=["POST"])
    def save(self) -> Any:
        must("chat.edit")
        form = {name: request.form.get(name) or "" for name in ("chat_key", *GROUP_FIELDS)}
        key = form["chat_key"].strip()
        before = group_snapshot(GroupConfig.get_or_none(GroupConfig.chat_key == key))
        try:
            changes = group_changes(form)
            outcome = perform("group_config.save", f"group_config:{key[:80]}", reason=form_reason(required=False),
                              before=before, run=lambda: configure(key, **changes), after=group_snapshot)
        except DomainError as exc:
            flash(exc.message, "error")
            return self._page(400, {**form, "active": form["active"] == "1", "ai_fallback": form["ai_fallback"] == "1"})
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(_("已保存群设置 %(key)s", key=key), "success")
        return redirect(url_for(".index", key=key))


# ---- failed pushes ------------------------------------------------------------------------------

PAGE = 50


def ids_of(name: str) -> list[int]:
    found = []
    for value in request.form.getlist(name):
        try:
            found.append(int(value))
        except ValueError:
            continue
    return found[:1000]


class FailedPushesView(QxView):
    permission = "chat.view"

    @expose("/")
    def index(self) -> Any:
        before_m = request.args.get("before_m", type=int)
        before_n = request.args.get("before_n", type=int)
        messages = outbox.failed(PAGE, before_m)
        notices = notifications.failed(PAGE, before_n)
        return self.render("qx/chat_failed.html", messages=messages, notices=notices, page=PAGE, personal=personal)

    @expose("/retry", methods=["POST"])
    def retry(self) -> Any:
        must("chat.retry")
        message_ids, notice_ids = ids_of("message"), ids_of("notice")
        try:
            if not message_ids and not notice_ids:
                raise InvalidInput(_("请选择要重试的消息"), code="nothing_selected")
            outcome = perform("push.retry", "pushes", reason=form_reason(required=False),
                              before={"messages": message_ids, "notices": notice_ids},
                              run=lambda: (outbox.requeue_failed(message_ids),
                                           notifications.requeue_failed(notice_ids)),
                              after=lambda r: {"messages": [m[0] for m in r[0]], "notices": [n[0] for n in r[1]]})
        except DomainError as exc:
            flash(exc.message, "error")
            return redirect(url_for(".index"))
        if outcome.duplicate:
            flash_duplicate()
            return redirect(url_for(".index"))
        messages, notices = outcome.result
        if not after_retry({platform for _id, platform in messages}, notices):
            flash(_("已重新排队，但任务队列暂时不可用：稍后由定时任务发送"), "warning")
        else:
            flash(_("已重新排队 %(n)s 条", n=len(messages) + len(notices)), "success")
        return redirect(url_for(".index"))


def register(admin: Admin) -> None:
    """Adds this area's views to the admin (the broadcast pages included)."""
    admin.add_view(RulesView(name=_l("群自动回复"), endpoint="chat_rules", url="chat/rules", category=CATEGORY))
    admin.add_view(GroupsView(name=_l("群设置"), endpoint="chat_groups", url="chat/groups", category=CATEGORY))
    broadcasts.register(admin, CATEGORY)
    admin.add_view(FailedPushesView(name=_l("发送失败"), endpoint="chat_failed", url="chat/failed",
                                    category=CATEGORY))
