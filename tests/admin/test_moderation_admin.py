"""The moderation admin through the real pages: adding, importing and disabling words (audited,
effective at once for `moderate`), bad input as a message on the form with nothing written, the
roles that may not, and the decision log with its filters and review mark."""

from __future__ import annotations

import re

import pytest

from content_ai.moderation import moderate
from models.audit import AuditEntry
from models.db import db
from models.moderation import ModerationWord
from tests.factories import moderation_decisions, moderation_word

WORDS = "/admin/content/moderation/words/"
DECISIONS = "/admin/content/moderation/decisions/"


@pytest.fixture
def lists(rt):  # noqa: ANN001, ANN201
    return rt


def audits(action: str) -> list[AuditEntry]:
    with db.connection_context():
        return list(AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id))


def word_count() -> int:
    with db.connection_context():
        return ModerationWord.select().count()


def test_an_added_word_is_audited_and_blocks_at_once(admin, lists):
    ops = admin("ops")
    text = "本店出售走私烟，量大从优"
    assert moderate(text, kind="answer", settings=lists.settings).outcome == "pass"
    # when an ops operator adds a sensitive word on the page
    answer = ops.post(WORDS + "add", {"kind": "sensitive", "word": "走私烟", "reason": "新发现的违禁品"}, page=WORDS)
    # then it is saved, audited with the word, and the next moderation blocks the text
    assert answer.status_code == 302, answer.data[:300]
    [row] = audits("moderation.word_add")
    assert row.after["word"] == "走私烟" and row.after["action"] == "block" and row.reason == "新发现的违禁品"
    assert row.object == "moderation_list:sensitive" and row.role == "ops"
    assert moderate(text, kind="answer", settings=lists.settings).outcome == "block"
    page = ops.get(WORDS + "?kind=sensitive&q=走私").data.decode()
    assert 'data-word="走私烟"' in page


@pytest.mark.parametrize(("word", "message"), [("", "不能为空"), ("最 佳", "已在这个词表中"), ("长" * 40, "最多"),
                                               ("最", "至少 2 个字")])
def test_bad_words_are_a_message_on_the_form(admin, lists, word: str, message: str):
    ops = admin("ops")
    before = word_count()
    answer = ops.post(WORDS + "add", {"kind": "absolute", "word": word}, page=WORDS)
    assert answer.status_code == 400
    assert message in answer.data.decode()
    assert word_count() == before and audits("moderation.word_add") == []


def test_import_adds_good_lines_and_lists_the_skipped_ones(admin, lists):
    ops = admin("ops")
    answer = ops.post(WORDS + "import", {"kind": "absolute", "lines": "宇宙第一\n最佳\n\n天下无双\n最\n"}, page=WORDS)
    page = answer.data.decode()
    assert answer.status_code == 200 and 'id="skipped"' in page and "新增 2 个，跳过 2 行" in page
    [row] = audits("moderation.words_import")
    assert row.after == {"kind": "absolute", "added": ["宇宙第一", "天下无双"], "skipped": 2}
    got = moderate("天下无双的好茶，口感醇厚。", kind="script", settings=lists.settings)
    assert (got.outcome, got.text) == ("rewrite", "好茶，口感醇厚。")


def test_disabling_a_word_is_audited_and_lets_the_text_pass(admin, lists):
    ops = admin("ops")
    word = moderation_word("假药")
    assert moderate("出售假药", kind="answer", settings=lists.settings).outcome == "block"
    answer = ops.post(WORDS + f"{word.id}/edit", {"word": "假药", "action": "block"}, page=WORDS + str(word.id))
    assert answer.status_code == 302
    [row] = audits("moderation.word_edit")
    assert row.before["enabled"] is True and row.after["enabled"] is False
    assert row.object == f"moderation_word:{word.id}"
    assert moderate("出售假药", kind="answer", settings=lists.settings).outcome == "pass"
    # and an edit to an action the list does not take is refused on the form
    bad = ops.post(WORDS + f"{word.id}/edit", {"word": "假药", "action": "allow", "enabled": "1"},
                   page=WORDS + str(word.id))
    assert bad.status_code == 400 and "不能用这种处理方式" in bad.data.decode()
    assert ops.get(WORDS + "999999").status_code == 404


def test_roles_without_the_permission_are_refused(admin, lists):
    # readonly may look but not change
    readonly = admin("readonly")
    assert readonly.get(WORDS).status_code == 200 and 'id="add-form"' not in readonly.get(WORDS).data.decode()
    before = word_count()
    answer = readonly.post(WORDS + "add", {"kind": "sensitive", "word": "坏东西"}, page=WORDS)
    assert answer.status_code == 403 and word_count() == before
    imported = readonly.post(WORDS + "import", {"kind": "sensitive", "lines": "坏东西"}, page=WORDS)
    assert imported.status_code == 403 and word_count() == before
    # support may not even look
    support = admin("support")
    assert support.get(WORDS).status_code == 403 and support.get(DECISIONS).status_code == 403


def test_the_decision_log_page_filters_and_marks_reviewed(admin, lists):
    moderate("口感醇厚", kind="answer", subject="sku:TEA", settings=lists.settings)
    blocked = moderate("网赌平台招代理", kind="group_user", subject="chat:telegram:-100", settings=lists.settings)
    moderate("顶级好茶。口感醇厚。", kind="script", subject="creator:3", settings=lists.settings)
    ops = admin("ops")
    page = ops.get(DECISIONS).data.decode()
    assert len(re.findall(r'data-decision="', page)) == 3
    only = ops.get(DECISIONS + "?outcome=block").data.decode()
    assert re.findall(r'data-decision="(\d+)"', only) == [str(blocked.decision_id)]
    assert "网赌平台招代理" in only and "chat:telegram:-100" in only
    assert len(re.findall(r'data-decision="', ops.get(DECISIONS + "?kind=script").data.decode())) == 1
    assert len(re.findall(r'data-decision="', ops.get(DECISIONS + "?since=2000-01-01&until=2000-01-02")
                          .data.decode())) == 0
    bad = ops.get(DECISIONS + "?since=yesterday")
    assert bad.status_code == 400 and "日期格式无效" in bad.data.decode()
    # when ops marks the block reviewed
    answer = ops.post(DECISIONS + f"{blocked.decision_id}/review", {}, page=DECISIONS + "?outcome=block")
    assert answer.status_code == 302
    [row] = moderation_decisions(outcome="block")
    assert row.reviewed and row.reviewed_by.startswith("operator:")
    [audit] = audits("moderation.decision_review")
    assert audit.after["reviewed"] is True
    # and readonly may not
    assert admin("readonly").post(DECISIONS + f"{blocked.decision_id}/review", {}, page=DECISIONS).status_code == 403
