"""The FAQ table (models/faq.py): defaults seeded by migration 0022, validated create / update /
disable with stable error codes, and a version that changes with every edit."""

from __future__ import annotations

import pytest

from content_ai.guard import numbers_in
from models import faq
from models.db import db
from models.errors import Conflict, InvalidInput, NotFound


@pytest.fixture
def entries(rt):  # noqa: ANN001, ANN201
    yield


def test_defaults_are_seeded_and_state_no_numbers_of_their_own(entries):
    # given the migrated database / when the FAQ is read
    with db.connection_context():
        rows = faq.enabled()
    # then every default entry is there, enabled, in list order
    assert [r.question for r in rows] == [q for q, _a, _k in faq.DEFAULTS]
    assert 15 <= len(rows) <= 25
    # and no answer states a day count, fee or amount (those come from the settings' rules)
    for row in rows:
        assert not any(ch.isdigit() for ch in row.answer), row.question
        assert numbers_in(row.answer) <= {"0", "1", "1000"}, row.question  # 零钱, 一张券, 千星计划: words
        assert "%" not in row.answer and "天内" not in row.answer


def test_create_update_disable_stamp_and_change_the_version(entries):
    with db.connection_context():
        before = faq.version()
        # when an operator adds an entry with messy keywords
        made = faq.create("  可以用花呗吗？ ", "目前只支持微信支付。", "花呗，分期、 花呗 信用卡", 5, by="ops-ann")
        # then it is cleaned, stamped and the version moved
        assert (made.question, made.keywords, made.updated_by) == ("可以用花呗吗？", "花呗 分期 信用卡", "ops-ann")
        after_create = faq.version()
        assert after_create != before
        # when it is edited: the diff is returned and the version moves again
        diff = faq.update(made.id, question="可以用花呗吗？", answer="目前只支持微信支付，暂不支持花呗。",
                          keywords="花呗", position=5, by="ops-bob")
        assert set(diff) == {"answer", "keywords"}
        assert faq.version() != after_create
        assert faq.get(made.id).updated_by == "ops-bob"
        # and an edit that changes nothing changes nothing
        assert faq.update(made.id, question="可以用花呗吗？", answer="目前只支持微信支付，暂不支持花呗。",
                          keywords="花呗", position=5) == {}
        # when it is disabled it leaves the enabled list; disabling twice is a no-op
        assert faq.disable(made.id, by="ops-ann") is True
        assert faq.disable(made.id) is False
        assert made.id not in {e.id for e in faq.enabled()}


@pytest.mark.parametrize("question, answer, keywords, position, code", [
    ("", "答案", "", 0, "invalid_faq_question"),
    ("问" * 201, "答案", "", 0, "invalid_faq_question"),
    ("问题\x00", "答案", "", 0, "invalid_faq_question"),
    ("问题", "   ", "", 0, "invalid_faq_answer"),
    ("问题", "答" * 1001, "", 0, "invalid_faq_answer"),
    ("问题", "答案", "词" * 201, 0, "invalid_faq_keywords"),
    ("问题", "答案", "", 10**7, "invalid_faq_position"),
    ("问题", "答案", "", True, "invalid_faq_position"),
    (None, "答案", "", 0, "invalid_faq_question"),
])
def test_bad_entries_are_refused_with_a_code(entries, question, answer, keywords, position, code):
    with db.connection_context():
        count = len(faq.all_entries())
        with pytest.raises(InvalidInput) as caught:
            faq.create(question, answer, keywords, position)
        assert caught.value.code == code
        assert len(faq.all_entries()) == count


def test_duplicates_and_missing_entries(entries):
    with db.connection_context():
        taken = faq.DEFAULTS[0][0]
        with pytest.raises(Conflict) as dup:
            faq.create(taken, "另一个答案")
        assert dup.value.code == "faq_question_taken"
        other = faq.enabled()[1]
        with pytest.raises(Conflict):
            faq.update(other.id, question=taken, answer="x")
        with pytest.raises(NotFound) as missing:
            faq.disable(10**6)
        assert missing.value.code == "faq_not_found"
