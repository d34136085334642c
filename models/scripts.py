"""Creators' short-video scripts (issue 16) and their review: the rows, the remembered style, the
states.

- `ContentScript`: one generated script (the three variants, tags and subtitles as validated JSON,
  written by content_ai/scripts.py), owned by a creator. State: draft -> submitted (the creator
  asks to publish it; the AI check, content_ai.moderation, ran on submit and its decision id is
  kept) -> approved | rejected (an operator's review with a note; a blocked AI check rejects at
  once with reviewer "moderation"). A decided script is final; a rejected one can be generated
  again as a new draft.
- `ContentStyle`: a creator's short free-text style (亲切、专业、搞笑, at most STYLE_MAX characters),
  set once and used by every later script.

The creator is told of a review in chat through the outbox (models/risk_notices.tell_creator: the
creator's reachable chat, one message per key), in the review's own transaction.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from enum import StrEnum
from typing import Any

import peewee as pw

from models import risk_notices
from models.db import BaseModel, JSONText, db, lock_rows, utcnow
from models.errors import InvalidInput, InvalidState, NotFound
from models.network import Creator

STYLE_MAX = 20
NOTE_MAX = 200
PAGE_MAX = 100


class State(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"


class Source(StrEnum):
    MODEL = "model"
    OFFLINE = "offline"


class ContentScript(BaseModel):
    creator = pw.ForeignKeyField(Creator, backref="+", on_delete="CASCADE", index=False)
    sku_code = pw.CharField(max_length=64, default="")  # "" for a script without a product
    topic = pw.CharField(max_length=64, default="")
    style = pw.CharField(max_length=STYLE_MAX, default="")
    data = JSONText()  # the validated script (content_ai/scripts.py `Script.model_dump()`)
    source = pw.CharField(max_length=16, choices=[(s.value, s.value) for s in Source])
    state = pw.CharField(max_length=16, default=State.DRAFT.value, choices=[(s.value, s.value) for s in State])
    decision_id = pw.BigIntegerField(null=True)  # the moderation decision of the submit's AI check
    created_by = pw.CharField(max_length=64, default="")  # creator:<id> or operator:<id>
    created_at = pw.DateTimeField(default=utcnow)
    submitted_at = pw.DateTimeField(null=True)
    reviewer = pw.CharField(max_length=64, null=True)
    reviewed_at = pw.DateTimeField(null=True)
    note = pw.CharField(max_length=NOTE_MAX, default="")

    class Meta:
        table_name = "content_script"
        indexes = ((("creator", "id"), False), (("state", "id"), False))


class ContentStyle(BaseModel):
    creator = pw.ForeignKeyField(Creator, primary_key=True, backref="+", on_delete="CASCADE")
    style = pw.CharField(max_length=STYLE_MAX)
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "content_style"


TABLES: list[type[pw.Model]] = [ContentScript, ContentStyle]


# ---- style -------------------------------------------------------------------------------------


def clean_style(text: str) -> str:
    """A style as stored: NFKC, printable, spaces collapsed, at most STYLE_MAX characters ("" for
    none); InvalidInput (invalid_style) when the text as typed is longer than STYLE_MAX."""
    if len(text or "") > STYLE_MAX:
        raise InvalidInput(f"风格最多 {STYLE_MAX} 个字，例如：亲切、专业、搞笑", code="invalid_style")
    style = re.sub(r"\s+", " ", "".join(ch if ch.isprintable() else " "
                                        for ch in unicodedata.normalize("NFKC", text or ""))).strip()
    return style[:STYLE_MAX]


def set_style(creator: Creator | int, text: str) -> str:
    """Remember the creator's style (replacing the last one; a blank one clears it); returns it
    as stored."""
    style = clean_style(text)
    creator_id = creator if isinstance(creator, int) else creator.id
    with db.atomic():
        if not style:
            ContentStyle.delete().where(ContentStyle.creator == creator_id).execute()
            return ""
        (ContentStyle.insert(creator=creator_id, style=style, updated_at=utcnow())
         .on_conflict(conflict_target=[ContentStyle.creator],
                      update={ContentStyle.style: style, ContentStyle.updated_at: utcnow()})
         .execute())
    return style


def style_of(creator: Creator | int | None) -> str:
    """The creator's remembered style, "" when none was set."""
    if creator is None:
        return ""
    creator_id = creator if isinstance(creator, int) else creator.id
    row = ContentStyle.get_or_none(ContentStyle.creator == creator_id)
    return row.style if row else ""


# ---- scripts -----------------------------------------------------------------------------------


def create(creator: Creator | int, *, sku_code: str, topic: str, style: str, data: dict[str, Any],
           source: str, actor: str) -> ContentScript:
    creator_id = creator if isinstance(creator, int) else creator.id
    return ContentScript.create(creator=creator_id, sku_code=sku_code[:64], topic=topic[:64], style=style[:STYLE_MAX],
                                data=data, source=Source(source).value, created_by=actor[:64])


def get(script_id: int, creator: Creator | int | None = None) -> ContentScript:
    """The script; with `creator`, only that creator's (another creator's is NotFound, like a
    missing one)."""
    query = ContentScript.select().where(ContentScript.id == script_id)
    if creator is not None:
        query = query.where(ContentScript.creator == (creator if isinstance(creator, int) else creator.id))
    found = query.first() if 0 < script_id < 2**63 else None
    if found is None:
        raise NotFound("没有找到这个文案", code="script_not_found")
    return found


def list_for(creator: Creator | int | None, *, limit: int = 20, before_id: int | None = None,
             state: str | None = None) -> list[ContentScript]:
    """Newest first, keyset paged; creator=None: everyone's (operators), with `state` a filter."""
    query = ContentScript.select(ContentScript, Creator).join(Creator).order_by(ContentScript.id.desc())
    if creator is not None:
        query = query.where(ContentScript.creator == (creator if isinstance(creator, int) else creator.id))
    if state is not None:
        query = query.where(ContentScript.state == State(state).value)
    if before_id is not None:
        query = query.where(ContentScript.id < before_id)
    return list(query.limit(max(1, min(limit, PAGE_MAX))))


def queue(limit: int = 50) -> list[ContentScript]:
    """The review queue: submitted scripts, the longest waiting first."""
    return list(ContentScript.select(ContentScript, Creator).join(Creator)
                .where(ContentScript.state == State.SUBMITTED.value)
                .order_by(ContentScript.submitted_at, ContentScript.id).limit(max(1, min(limit, PAGE_MAX))))


def _locked(script_id: int, creator_id: int | None = None) -> ContentScript:
    query = ContentScript.select().where(ContentScript.id == script_id)
    if creator_id is not None:
        query = query.where(ContentScript.creator == creator_id)
    found = lock_rows(query).first() if 0 < script_id < 2**63 else None
    if found is None:
        raise NotFound("没有找到这个文案", code="script_not_found")
    return found


def submit(script_id: int, creator: Creator | int, *, decision_id: int | None, blocked: bool,
           data: dict[str, Any] | None = None, now: dt.datetime | None = None) -> ContentScript:
    """The creator submits a draft for publishing, after the AI check (the caller's moderation):
    it joins the review queue, or is rejected at once when the check blocked it. `data`: the
    script with the check's rewrites applied. A script that is not a draft is InvalidState
    (script_not_draft)."""
    creator_id = creator if isinstance(creator, int) else creator.id
    now = now or utcnow()
    with db.atomic():
        script = _locked(script_id, creator_id)
        if script.state != State.DRAFT:
            raise InvalidState("这个文案已经提交过了", code="script_not_draft")
        script.decision_id = decision_id
        script.submitted_at = now
        if data is not None:
            script.data = data
        if blocked:
            script.state, script.reviewer, script.reviewed_at = State.REJECTED.value, "moderation", now
            script.note = "内容安全检查未通过"
            _tell(script, now)
        else:
            script.state = State.SUBMITTED.value
        script.save()
    return script


def review(script_id: int, *, approve: bool, reviewer: str, note: str,
           now: dt.datetime | None = None) -> ContentScript:
    """An operator's decision on a submitted script (the admin audits it): approved or rejected
    with a note (required when rejecting); the creator is told in chat. InvalidState
    (script_not_submitted) when it is not waiting for review."""
    note = " ".join((note or "").split())[:NOTE_MAX]
    if not approve and len(note) < 2:
        raise InvalidInput("驳回需要填写原因（至少 2 个字）", code="note_required")
    now = now or utcnow()
    with db.atomic():
        script = _locked(script_id)
        if script.state != State.SUBMITTED:
            raise InvalidState("这个文案不在待审核状态", code="script_not_submitted")
        script.state = (State.APPROVED if approve else State.REJECTED).value
        script.reviewer, script.reviewed_at, script.note = reviewer[:64], now, note
        script.save()
        _tell(script, now)
    return script


def notice_text(script: ContentScript) -> str:
    title = str((script.data or {}).get("title") or script.topic or "短视频文案")[:30]
    if script.state == State.APPROVED:
        extra = f"审核意见：{script.note}" if script.note else "可以发布了。"
        return f"您好，您提交的文案「{title}」（编号 {script.id}）已通过审核。{extra}发布时请保留【广告】标识。"
    reason = script.note or "内容不符合发布规范"
    return (f"您好，您提交的文案「{title}」（编号 {script.id}）未通过审核，原因：{reason}。"
            "可以修改主题后重新生成并提交。")


def _tell(script: ContentScript, now: dt.datetime) -> None:
    risk_notices.tell_creator(script.creator_id, f"script:{script.id}:{script.state}", notice_text(script), now=now)


def counts() -> dict[str, int]:
    """Scripts by state (the admin's header)."""
    rows = ContentScript.select(ContentScript.state, pw.fn.COUNT(ContentScript.id)).group_by(ContentScript.state)
    found = dict(rows.tuples())
    return {s.value: int(found.get(s.value, 0)) for s in State}
