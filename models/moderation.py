"""Moderation word lists (issue 16): the tables, the text folding shared with the matcher, and
the services the admin calls. The decision log is models/moderation_log.py; the matching itself
(pyahocorasick) is content_ai/moderation.py.

- `ModerationWord`: one word of one list. `kind`: "sensitive" (action block, or rewrite to drop
  it), "absolute" (the Advertising Law's absolute claims: action rewrite, or block), "allow"
  (exceptions: a hit wholly inside an allowed word is no hit). Unique (kind, word). Words are
  never deleted: they are disabled, so the decision log keeps naming them.
- `ModerationDecision`: one moderation outcome (written by models/moderation_log.py).

`fold(text)` is the one normalisation: NFKC, case-folded, keeping letters, digits and "%" only
(spaces, punctuation, symbols and emoji, zero-width and control characters, combining marks are
dropped), with each kept character's index in the original text. Words are matched on their
folded form, so "国 家 级", "国\u200b家级" and "ＮＯ．１" are caught, and two words with the same
folded form are duplicates.

Every edit bumps `generation` (this process) and `updated_at` (every process: the matcher checks
`version()` at most every MODERATION_RELOAD_S seconds and rebuilds its automaton on a change).
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass, field

import peewee as pw

from models.db import BaseModel, JSONText, db, utcnow
from models.errors import InvalidInput, NotFound

KINDS = ("sensitive", "absolute", "allow")
ACTIONS = {"sensitive": ("block", "rewrite"), "absolute": ("rewrite", "block"), "allow": ("allow",)}
WORD_MAX = 32  # characters of a word as typed
IMPORT_MAX_LINES = 1000
SYSTEM = "system:moderation"


class ModerationWord(BaseModel):
    kind = pw.CharField(max_length=16)
    word = pw.CharField(max_length=64)  # NFKC, case-folded, inner spaces collapsed (as shown)
    action = pw.CharField(max_length=8)
    enabled = pw.BooleanField(default=True)
    updated_at = pw.DateTimeField(default=utcnow, index=True)
    updated_by = pw.CharField(max_length=64, default=SYSTEM)

    class Meta:
        table_name = "moderation_word"
        indexes = ((("kind", "word"), True),)


class ModerationDecision(BaseModel):
    at = pw.DateTimeField(default=utcnow, index=True)
    kind = pw.CharField(max_length=16)  # what was moderated: answer, script, group_user, ...
    subject = pw.CharField(max_length=96, default="")  # creator:12, chat:telegram:-1001, sku:VIP-M
    outcome = pw.CharField(max_length=8)  # pass | rewrite | block
    hits = JSONText(default=list)  # the words found, at most 20
    source = pw.CharField(max_length=8, default="local")  # local | wechat (msg_sec_check said risky)
    excerpt = pw.CharField(max_length=210, default="")  # the text, clipped to 200 characters
    reviewed = pw.BooleanField(default=False)
    reviewed_by = pw.CharField(max_length=64, null=True)
    reviewed_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "moderation_decision"
        indexes = ((("outcome", "at"), False), (("kind", "at"), False))


TABLES: list[type[pw.Model]] = [ModerationWord, ModerationDecision]

generation = 0  # bumped by every edit in this process: the matcher rechecks at once


def _bump() -> None:
    global generation
    generation += 1


# -- folding -----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=65536)
def _fold_char(ch: str) -> str:
    out = []
    for c in unicodedata.normalize("NFKC", ch).casefold():
        cat = unicodedata.category(c)
        if cat[0] in "LN" or c == "%":
            out.append(c)
    return "".join(out)


def fold(text: str) -> tuple[str, list[int]]:
    """(the folded text, for each of its characters the index of the original character)."""
    chars: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        if ch.isascii():
            if ch.isalnum() or ch == "%":
                chars.append(ch.lower())
                where.append(i)
            continue
        kept = _fold_char(ch)
        for c in kept:
            chars.append(c)
            where.append(i)
    return "".join(chars), where


def shown_form(word: str) -> str:
    """A word as stored and shown: NFKC, case-folded, inner whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", word).casefold().split())


# -- services ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImportResult:
    added: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (line, reason)


def _check_kind_action(kind: str, action: str | None) -> str:
    if kind not in KINDS:
        raise InvalidInput("没有这个词表（敏感词、极限词或例外词）", code="unknown_kind")
    action = action or ACTIONS[kind][0]
    if action not in ACTIONS[kind]:
        raise InvalidInput("这个词表不能用这种处理方式", code="invalid_action")
    return action


def _existing(kind: str, exclude_id: int | None = None) -> dict[str, str]:
    """folded form -> the word, of every word of a list (enabled or not)."""
    return {fold(w)[0]: w for i, w in ModerationWord.select(ModerationWord.id, ModerationWord.word)
            .where(ModerationWord.kind == kind).tuples() if i != exclude_id}


def _check_word(kind: str, word: str, *, exclude_id: int | None = None,
                existing: dict[str, str] | None = None) -> str:
    """The word's stored form, or InvalidInput: empty_word, word_too_long, word_too_short,
    duplicate_word (the same folded form in the same list)."""
    shown = shown_form(word or "")
    folded, _ = fold(shown)
    if not folded:
        raise InvalidInput("请输入词语（不能为空或只有标点）", code="empty_word")
    if len(shown) > WORD_MAX:
        raise InvalidInput(f"词语最多 {WORD_MAX} 个字", code="word_too_long")
    if len(folded) < 2:
        raise InvalidInput("词语至少 2 个字（单字会误伤大量正常文本）", code="word_too_short")
    have = _existing(kind, exclude_id) if existing is None else existing
    if folded in have:
        raise InvalidInput(f"“{have[folded]}”已在这个词表中", code="duplicate_word")
    return shown


def add_word(kind: str, word: str, *, actor: str, action: str | None = None) -> ModerationWord:
    with db.atomic():
        action = _check_kind_action(kind, action)
        shown = _check_word(kind, word)
        row = ModerationWord.create(kind=kind, word=shown, action=action, enabled=True,
                                    updated_at=utcnow(), updated_by=actor[:64])
    _bump()
    return row


def get_word(word_id: int) -> ModerationWord:
    row = ModerationWord.get_or_none(ModerationWord.id == word_id) if 0 < word_id < 2**63 else None
    if row is None:
        raise NotFound("词语不存在", code="word_not_found")
    return row


def edit_word(word_id: int, *, actor: str, word: str | None = None, action: str | None = None,
              enabled: bool | None = None) -> ModerationWord:
    """Change a word's text, action or enabled flag (None: as it is). A change that changes
    nothing writes nothing."""
    with db.atomic():
        row = get_word(word_id)
        new_action = _check_kind_action(row.kind, action or row.action)
        new_word = row.word if word is None else _check_word(row.kind, word, exclude_id=row.id)
        new_enabled = row.enabled if enabled is None else bool(enabled)
        if (new_word, new_action, new_enabled) == (row.word, row.action, row.enabled):
            return row
        row.word, row.action, row.enabled = new_word, new_action, new_enabled
        row.updated_at, row.updated_by = utcnow(), actor[:64]
        row.save()
    _bump()
    return row


def import_words(kind: str, text: str, *, actor: str, action: str | None = None) -> ImportResult:
    """Words one per line (blank lines ignored). Each valid new word is added; a duplicate, an
    empty, too short or too long line is skipped with its reason. Raises InvalidInput
    unknown_kind / invalid_action / nothing_to_import / too_many_lines (nothing written)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    action = _check_kind_action(kind, action)
    if not lines:
        raise InvalidInput("请粘贴要导入的词语，每行一个", code="nothing_to_import")
    if len(lines) > IMPORT_MAX_LINES:
        raise InvalidInput(f"一次最多导入 {IMPORT_MAX_LINES} 行", code="too_many_lines")
    result = ImportResult()
    with db.atomic():
        existing = _existing(kind)
        for line in lines:
            try:
                shown = _check_word(kind, line, existing=existing)
            except InvalidInput as exc:
                result.skipped.append((line[:WORD_MAX + 8], exc.message))
                continue
            ModerationWord.create(kind=kind, word=shown, action=action, enabled=True, updated_at=utcnow(),
                                  updated_by=actor[:64])
            result.added.append(shown)
            existing[fold(shown)[0]] = shown
    if result.added:
        _bump()
    return result


def words(kind: str | None = None, *, q: str = "", limit: int = 1000) -> list[ModerationWord]:
    query = ModerationWord.select().order_by(ModerationWord.kind, ModerationWord.word).limit(limit)
    if kind in KINDS:
        query = query.where(ModerationWord.kind == kind)
    if q.strip():
        query = query.where(ModerationWord.word.contains(shown_form(q)[:WORD_MAX]))
    return list(query)


def enabled_words() -> list[tuple[str, str, str]]:
    """(kind, word, action) of every enabled word."""
    return list(ModerationWord.select(ModerationWord.kind, ModerationWord.word, ModerationWord.action)
                .where(ModerationWord.enabled == True).tuples())  # noqa: E712


def version() -> tuple[int, str]:
    """Changes whenever a word is added, edited, enabled or disabled (in any process)."""
    count, latest = ModerationWord.select(pw.fn.COUNT(ModerationWord.id),
                                          pw.fn.MAX(ModerationWord.updated_at)).scalar(as_tuple=True)
    return int(count or 0), str(latest or "")


def seed_defaults(actor: str = SYSTEM) -> int:
    """Insert the starter lists (models/moderation_defaults.py) where missing; how many."""
    from models.moderation_defaults import DEFAULTS

    have = {(k, w) for k, w in ModerationWord.select(ModerationWord.kind, ModerationWord.word).tuples()}
    rows = [{"kind": k, "word": shown_form(w), "action": a, "enabled": True, "updated_at": utcnow(),
             "updated_by": actor} for k, w, a in DEFAULTS if (k, shown_form(w)) not in have]
    if rows:
        with db.atomic():
            ModerationWord.insert_many(rows).on_conflict_ignore().execute()
        _bump()
    return len(rows)
