"""The moderation word lists and decision log on both backends: the seeded starter lists, adding,
editing and importing words with bad input refused by code and nothing written, the folded
duplicate check, and the decision log's filters and review mark."""

from __future__ import annotations

import datetime as dt

import pytest

from models import moderation, moderation_log
from models.db import db, utcnow
from models.errors import InvalidInput, NotFound
from models.moderation import ModerationDecision, ModerationWord
from models.moderation_defaults import ABSOLUTE, ALLOW, SENSITIVE
from tests.factories import moderation_decisions, moderation_word


@pytest.fixture
def lists(rt):  # noqa: ANN001, ANN201
    return rt


def count() -> int:
    with db.connection_context():
        return ModerationWord.select().count()


def test_the_starter_lists_are_seeded_once(lists):
    with db.connection_context():
        assert moderation.seed_defaults() == 0
        by_kind = {k: ModerationWord.select().where(ModerationWord.kind == k).count() for k in moderation.KINDS}
    assert by_kind == {"absolute": len(ABSOLUTE), "allow": len(ALLOW), "sensitive": len(SENSITIVE)}
    assert "最" not in ABSOLUTE and "最近" not in ABSOLUTE and "最后" not in ABSOLUTE  # time words stay


def test_a_word_is_stored_folded_with_its_default_action(lists):
    row = moderation_word("  Ｆｒｅｅ  Money  ", kind="absolute")
    assert (row.word, row.action, row.enabled, row.updated_by) == ("free money", "rewrite", True, "operator:test")


@pytest.mark.parametrize(("kind", "word", "action", "code"), [
    ("sensitive", "", None, "empty_word"),
    ("sensitive", " ，。！ ", None, "empty_word"),
    ("sensitive", "长" * 33, None, "word_too_long"),
    ("absolute", "最", None, "word_too_short"),
    ("absolute", "最 佳", None, "duplicate_word"),  # the same folded form as the seeded 最佳
    ("sensitive", "网\u200b赌", None, "duplicate_word"),
    ("nonsense", "什么词", None, "unknown_kind"),
    ("allow", "第一名次", "block", "invalid_action"),
    ("sensitive", "坏东西", "allow", "invalid_action"),
])
def test_bad_words_are_refused_and_nothing_is_written(lists, kind: str, word: str, action, code: str):  # noqa: ANN001
    before = count()
    with pytest.raises(InvalidInput) as raised, db.connection_context():
        moderation.add_word(kind, word, actor="operator:test", action=action)
    assert raised.value.code == code and raised.value.message
    assert count() == before


def test_edit_changes_the_word_and_refuses_a_duplicate(lists):
    row = moderation_word("坏词甲")
    other = moderation_word("坏词乙")
    with db.connection_context():
        edited = moderation.edit_word(row.id, actor="operator:b", word="坏词丙", action="rewrite")
        assert (edited.word, edited.action, edited.updated_by) == ("坏词丙", "rewrite", "operator:b")
        with pytest.raises(InvalidInput) as raised:
            moderation.edit_word(row.id, actor="operator:b", word="坏 词 乙")
        assert raised.value.code == "duplicate_word"
        assert ModerationWord.get_by_id(other.id).word == "坏词乙"
        with pytest.raises(NotFound):
            moderation.edit_word(10**12, actor="operator:b", enabled=False)


def test_an_edit_that_changes_nothing_writes_nothing(lists):
    row = moderation_word("坏词丁")
    generation = moderation.generation
    with db.connection_context():
        same = moderation.edit_word(row.id, actor="operator:x", word="坏词丁", enabled=True)
        assert same.updated_by == "operator:test"
    assert moderation.generation == generation
    with db.connection_context():
        off = moderation.edit_word(row.id, actor="operator:x", enabled=False)
        version = moderation.version()
    assert not off.enabled and moderation.generation == generation + 1
    assert ("sensitive", "坏词丁", "block") not in _enabled()
    assert version[0] == count()


def _enabled() -> list[tuple[str, str, str]]:
    with db.connection_context():
        return moderation.enabled_words()


def test_import_adds_the_good_lines_and_reports_the_bad_ones(lists):
    text = "走私货\n\n  假冒伪劣  \n走私货\n网赌\n最\n" + "长" * 40 + "\n"
    with db.connection_context():
        result = moderation.import_words("sensitive", text, actor="operator:test")
    assert result.added == ["走私货", "假冒伪劣"]
    assert [line for line, _ in result.skipped] == ["走私货", "网赌", "最", "长" * 40]
    assert all(reason for _, reason in result.skipped)
    assert ("sensitive", "假冒伪劣", "block") in _enabled()


@pytest.mark.parametrize(("text", "code"), [("", "nothing_to_import"), ("\n \n", "nothing_to_import"),
                                            ("\n".join(f"词{i:04d}" for i in range(1001)), "too_many_lines")])
def test_an_import_with_nothing_or_too_much_writes_nothing(lists, text: str, code: str):
    before = count()
    with pytest.raises(InvalidInput) as raised, db.connection_context():
        moderation.import_words("sensitive", text, actor="operator:test")
    assert raised.value.code == code and count() == before


def test_the_decision_log_filters_by_outcome_kind_and_date(lists):
    with db.connection_context():
        a = moderation_log.record(kind="answer", subject="sku:A", outcome="pass", hits=[], source="local", text="好")
        b = moderation_log.record(kind="script", subject="creator:1", outcome="rewrite", hits=["最佳"],
                                  source="local", text="最佳" * 300)
        c = moderation_log.record(kind="group_user", subject="chat:x", outcome="block", hits=["网赌"],
                                  source="wechat", text="x\x00y\u200bz")
        ModerationDecision.update(at=utcnow() - dt.timedelta(days=3)).where(ModerationDecision.id == a).execute()
    assert [r.id for r in moderation_decisions()] == [c, b, a]
    assert [r.id for r in moderation_decisions(outcome="rewrite")] == [b]
    assert [r.id for r in moderation_decisions(kind="group_user")] == [c]
    assert [r.id for r in moderation_decisions(since=utcnow() - dt.timedelta(days=1))] == [c, b]
    assert [r.id for r in moderation_decisions(until=utcnow() - dt.timedelta(days=1))] == [a]
    rows = {r.id: r for r in moderation_decisions()}
    assert len(rows[b].excerpt) == 200 and rows[b].excerpt.endswith("…") and rows[b].hits == ["最佳"]
    assert rows[c].excerpt == "x·y·z" and rows[c].source == "wechat"
    with pytest.raises(InvalidInput):
        moderation_decisions(outcome="maybe")


def test_a_decision_is_reviewed_once(lists):
    with db.connection_context():
        made = moderation_log.record(kind="answer", subject="", outcome="block", hits=["网赌"], source="local",
                                     text="网赌")
        row = moderation_log.mark_reviewed(made, actor="operator:9")
        assert (row.reviewed, row.reviewed_by) == (True, "operator:9") and row.reviewed_at is not None
        with pytest.raises(InvalidInput) as raised:
            moderation_log.mark_reviewed(made, actor="operator:9")
        assert raised.value.code == "already_reviewed"
        with pytest.raises(NotFound):
            moderation_log.mark_reviewed(made + 1, actor="operator:9")
