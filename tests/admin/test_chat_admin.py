"""Chat admin through the real HTTP interface: group auto-reply rules (added, edited, switched
off and on through the functions `qianxing groups` uses), RE2 validation of regex rules, group
settings, and roles without chat.edit refused with nothing written."""

from __future__ import annotations

import pytest

from bots.groups import match_rule
from models.audit import AuditEntry
from models.chat import GroupConfig, GroupRule
from models.db import db

RULES = "/admin/chat/rules/"
GROUPS = "/admin/chat/groups/"


def rules() -> list[GroupRule]:
    with db.connection_context():
        return list(GroupRule.select().order_by(GroupRule.id))


def audit(action: str) -> list[AuditEntry]:
    with db.connection_context():
        return list(AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id))


def rule_form(**values: object) -> dict:
    form = {"scope": "*", "match": "contains", "pattern": "发货", "reply": "{name}，付款后自动发货。",
            "priority": "5"}
    form.update(values)
    return form


def test_an_ops_operator_adds_edits_and_switches_off_a_rule(admin) -> None:  # noqa: ANN001
    """Given an ops operator on the rules page, when they add a rule, then it answers in groups;
    when they edit it, the changed rule answers and the old one is kept switched off; when they
    switch it off, nothing answers, and each step is an audit row."""
    ops = admin("ops")
    # when a rule is added
    answer = ops.post(RULES + "add", rule_form(), page=RULES)
    assert answer.status_code == 302
    (rule,) = rules()
    assert (rule.scope, rule.match, rule.pattern, rule.priority, rule.active) == ("*", "contains", "发货", 5, True)
    with db.connection_context():
        assert match_rule("telegram:-1001", "什么时候发货？").id == rule.id
    page = ops.get(RULES).get_data(as_text=True)
    assert f'data-rule="{rule.id}"' in page and "发货" in page
    # when it is edited
    answer = ops.post(f"{RULES}{rule.id}/edit", rule_form(pattern="几点发货", priority="9"),
                      page=f"{RULES}{rule.id}/edit")
    assert answer.status_code == 302
    old, new = rules()
    assert old.id == rule.id and not old.active
    assert (new.pattern, new.priority, new.active) == ("几点发货", 9, True)
    with db.connection_context():
        assert match_rule("telegram:-1001", "今天几点发货").id == new.id
        assert match_rule("telegram:-1001", "什么时候发货？") is None
    # when it is switched off, then on again
    assert ops.post(f"{RULES}{new.id}/disable", {}, page=RULES).status_code == 302
    with db.connection_context():
        assert match_rule("telegram:-1001", "今天几点发货") is None
    assert ops.post(f"{RULES}{new.id}/enable", {}, page=RULES).status_code == 302
    assert rules()[1].active
    # then every step was audited, with the before and after of the edit
    assert [e.object for e in audit("group_rule.add")] == ["group_rule"]
    (edit,) = audit("group_rule.edit")
    assert edit.before["pattern"] == "发货" and edit.after["pattern"] == "几点发货" and edit.after["id"] == new.id
    assert len(audit("group_rule.disable")) == 1 and len(audit("group_rule.enable")) == 1


@pytest.mark.parametrize(("pattern", "message"), [
    (r"(\w+)\s\1", "反向引用"),  # a backreference: RE2 has none
    ("(?=发货)", "环视"),  # a lookahead
    ("([a-z]", "正则无法解析"),  # not a regex at all
])
def test_a_regex_re2_refuses_is_answered_with_its_reason_and_nothing_is_written(admin, pattern: str,
                                                                                 message: str) -> None:  # noqa: ANN001
    """Given an ops operator, when they add a regex rule RE2 cannot run safely, then the form
    comes back (400) with the reason and no rule or audit row is written."""
    ops = admin("ops")
    answer = ops.post(RULES + "add", rule_form(match="regex", pattern=pattern), page=RULES)
    assert answer.status_code == 400
    assert message in answer.get_data(as_text=True)
    assert pattern.replace("<", "&lt;") in answer.get_data(as_text=True)  # the form keeps what was typed
    assert rules() == [] and audit("group_rule.add") == []


def test_a_bad_edit_leaves_the_old_rule_as_it_was(admin) -> None:  # noqa: ANN001
    """Given a rule, when an edit makes it an unsafe regex, then the old rule is still on and no
    new rule exists."""
    ops = admin("ops")
    ops.post(RULES + "add", rule_form(), page=RULES)
    (rule,) = rules()
    answer = ops.post(f"{RULES}{rule.id}/edit", rule_form(match="regex", pattern=r"(a)\1"),
                      page=f"{RULES}{rule.id}/edit")
    assert answer.status_code == 400 and "反向引用" in answer.get_data(as_text=True)
    (still,) = rules()
    assert still.active and still.pattern == "发货"


def test_a_priority_that_is_not_a_number_is_refused(admin) -> None:  # noqa: ANN001
    ops = admin("ops")
    answer = ops.post(RULES + "add", rule_form(priority="high"), page=RULES)
    assert answer.status_code == 400 and "优先级" in answer.get_data(as_text=True)
    assert rules() == []


def test_group_settings_are_saved_as_the_cli_saves_them(admin) -> None:  # noqa: ANN001
    """Given an ops operator, when they save a group's settings, then the group config holds
    them (banned words split on commas, rate 0 = the default); a bad chat key is refused."""
    ops = admin("ops")
    form = {"chat_key": "telegram:-100777", "title": "千星福利群", "welcome_text": "欢迎 {name}",
            "coupon_text": "新人券 5 元", "promo_ref": "", "banned_words": "代刷，外挂, 刷单",
            "replies_per_minute": "12", "active": "1"}
    assert ops.post(GROUPS + "save", form, page=GROUPS).status_code == 302
    with db.connection_context():
        cfg = GroupConfig.get(GroupConfig.chat_key == "telegram:-100777")
    assert (cfg.title, cfg.welcome_text, cfg.replies_per_minute, cfg.active, cfg.ai_fallback) == (
        "千星福利群", "欢迎 {name}", 12, True, False)
    assert cfg.banned_words == ["代刷", "外挂", "刷单"]
    # when it is saved again with the rate back to the default and the group switched off
    ops.post(GROUPS + "save", {**form, "replies_per_minute": "0", "active": ""}, page=GROUPS)
    with db.connection_context():
        cfg = GroupConfig.get(GroupConfig.chat_key == "telegram:-100777")
    assert cfg.replies_per_minute is None and not cfg.active
    assert "telegram:-100777" in ops.get(GROUPS).get_data(as_text=True)
    # a chat key that is no group's is refused with the service's reason
    answer = ops.post(GROUPS + "save", {**form, "chat_key": "nowhere"}, page=GROUPS)
    assert answer.status_code == 400 and "telegram:-100123" in answer.get_data(as_text=True)
    assert len(audit("group_config.save")) == 2


@pytest.mark.parametrize("role", ["readonly", "support", "finance"])
def test_roles_without_chat_edit_are_refused_and_nothing_changes(admin, role: str) -> None:  # noqa: ANN001
    """Given a rule and a group, when an operator without chat.edit posts rule and group forms,
    then every POST answers 403 and nothing changes."""
    ops = admin("ops")
    ops.post(RULES + "add", rule_form(), page=RULES)
    (rule,) = rules()
    other = admin(role)
    assert other.get(RULES).status_code == 200  # every role may read the rules
    for url, data in ((RULES + "add", rule_form(pattern="退款")),
                      (f"{RULES}{rule.id}/edit", rule_form(pattern="退款")),
                      (f"{RULES}{rule.id}/disable", {}),
                      (GROUPS + "save", {"chat_key": "telegram:-1002", "active": "1"})):
        assert other.post(url, data).status_code == 403, url
    (same,) = rules()
    assert same.active and same.pattern == "发货"
    with db.connection_context():
        assert GroupConfig.select().count() == 0
    assert audit("group_rule.edit") == [] and audit("group_rule.disable") == []
