"""Hand-off cases (issue 16): a question the bot could not answer well enough, or a request for
a human, waiting for a person to answer it in the chat it came from.

A case belongs to one chat (`chat_key`, platform:chat_id). At most ONE case per chat is open
at a time (a partial unique index, `OPEN_INDEX`); a second hand-off in a chat whose case is
still open appends its question to that case instead of opening another. States:

    open --answer--> answered --close--> closed
      \\------------------close-----------^

Routing (`route`): a group whose GroupConfig links a creator (`promo_ref`, that creator's
invite code) goes to that creator, who answers in chat (`/answer <id> <text>`); everything else
(private chats, groups without a creator, a creator nobody can reach in a private chat, a
question from the linked creator themself) goes to the operators, who answer in the admin.
Only the routed creator may answer a creator's case; operators may answer any case.

Messages are outbox rows (models/outbox.py) written in the same transaction as the change they
tell about, under keys of their own, so a retried call never sends twice and a case never
exists without its notice: `handoff:{id}:notice:{n}` (the creator is told about the n-th
question of the case, in their private chat) and `handoff:{id}:answer` (the answer, in the
asker's chat). The sender's drain (scheduled by the caller after commit, or the periodic
safety net) sends them. The texts given here are final: the caller moderates them first.
No network, no Redis.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

import peewee as pw

from models.chat import ChatIdentity, GroupConfig, Platform
from models.db import BaseModel, db, utcnow
from models.errors import Conflict, Forbidden, InvalidInput, NotFound
from models.network import Creator
from models.outbox import NewMessage, encode_payload, write
from models.reminders import channel_for, user_targets

QUESTION_MAX = 500  # one question as kept (clipped)
QUESTIONS_MAX = 4000  # all questions of a case together (later ones are counted, not kept)
DRAFT_MAX = 1000
ANSWER_MAX = 1000
NAME_MAX = 64
CREATOR, OPERATORS = "creator", "operators"


class CaseState(StrEnum):
    OPEN = "open"
    ANSWERED = "answered"
    CLOSED = "closed"


class HandoffCase(BaseModel):
    chat_key = pw.CharField(max_length=80)  # platform:chat_id
    platform = pw.CharField(max_length=16)
    chat_id = pw.CharField(max_length=64)
    chat_kind = pw.CharField(max_length=8)  # private, group
    asker_id = pw.BigIntegerField()  # the user who asked first
    asker_name = pw.CharField(max_length=NAME_MAX, default="")
    question = pw.TextField()  # the questions, one a line, clipped
    questions = pw.IntegerField(default=1)  # how many were handed off into this case
    draft = pw.TextField(default="")  # what the bot would have said ("" when nothing)
    reason = pw.CharField(max_length=200, default="")  # why it handed off
    routed_to = pw.CharField(max_length=12)  # creator | operators
    creator_id = pw.BigIntegerField(null=True)  # the creator who answers (routed_to creator)
    state = pw.CharField(max_length=10, default=CaseState.OPEN.value)
    answer = pw.TextField(default="")
    answered_by = pw.CharField(max_length=64, null=True)  # creator:<id> | operator:<id>
    opened_at = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)
    answered_at = pw.DateTimeField(null=True)
    closed_at = pw.DateTimeField(null=True)
    closed_by = pw.CharField(max_length=64, null=True)

    class Meta:
        table_name = "handoff_case"
        indexes = ((("state", "id"), False), (("creator_id", "state"), False), (("chat_key", "id"), False))

    @property
    def first_question(self) -> str:
        return self.question.split("\n", 1)[0]


TABLES: list[type[pw.Model]] = [HandoffCase]
# One open case per chat (PostgreSQL and SQLite both take a partial unique index).
OPEN_INDEX = ("CREATE UNIQUE INDEX IF NOT EXISTS handoff_case_open_chat ON handoff_case (chat_key) "
              "WHERE state = 'open'")


def _clip(text: str, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _check_chat(platform: str, chat_id: str, chat_kind: str) -> str:
    if platform not in {p.value for p in Platform}:
        raise InvalidInput("unknown chat platform", code="unknown_platform")
    if not chat_id or len(chat_id) > 64 or any(ch.isspace() for ch in chat_id):
        raise InvalidInput("bad chat id", code="invalid_chat")
    if chat_kind not in ("private", "group"):
        raise InvalidInput("chat kind is private or group", code="invalid_chat")
    return f"{platform}:{chat_id}"


# ---- routing -------------------------------------------------------------------------------------


def linked_creator(chat_key: str) -> Creator | None:
    """The creator a group's config links (`promo_ref`), if any and still known."""
    cfg = GroupConfig.get_or_none(GroupConfig.chat_key == chat_key)
    if cfg is None or not cfg.promo_ref:
        return None
    return Creator.get_or_none(Creator.code == cfg.promo_ref)


def route(chat_key: str, chat_kind: str, asker_id: int) -> tuple[str, int | None]:
    """(routed_to, creator id): a group's linked creator, unless the asker is that creator or
    the creator cannot be told in a private chat; else the operators."""
    if chat_kind == "group":
        creator = linked_creator(chat_key)
        if creator is not None and int(creator.user_id) != int(asker_id) \
                and private_chat_of(int(creator.user_id), chat_key.partition(":")[0]) is not None:
            return CREATOR, int(creator.id)
    return OPERATORS, None


# ---- reaching a user in chat -------------------------------------------------------------------


def private_chat_of(user_id: int, platform: str, now: dt.datetime | None = None) -> tuple[str, str] | None:
    """Where a private message to this user goes: their account on `platform` (the one the case
    came from) if it can be messaged now, else their Telegram chat or open WeChat window (the
    reminders' reachability rule). (platform, chat id) or None."""
    now = now or utcnow()
    if platform not in (Platform.WECHAT.value,):
        found = (ChatIdentity.select(ChatIdentity.chat_id)
                 .where((ChatIdentity.user == user_id) & (ChatIdentity.platform == platform))
                 .order_by(ChatIdentity.last_inbound_at.desc(nulls="LAST"), ChatIdentity.id.desc()).first())
        if found is not None:
            return platform, found.chat_id
    push = channel_for(user_targets([user_id], now, set())[user_id], now, consent_ok=False)
    return (push.platform, str(push.chat_id)) if push is not None else None


def notice_text(case: HandoffCase, question: str) -> str:
    where = "群聊" if case.chat_kind == "group" else "私聊"
    who = case.asker_name or "一位用户"
    return (f"【待人工回复 #{case.id}】{where}里 {who} 问：{question}\n"
            f"请回复：/answer {case.id} 你的回答（或发送「回复 {case.id} 你的回答」）。")


def answer_text(case: HandoffCase, answer: str) -> str:
    if case.chat_kind == "group":
        who = f"@{case.asker_name} " if case.asker_name else ""
        return f"{who}关于「{_clip(case.first_question, 40)}」，人工回复：{answer}"
    return f"关于你的问题「{_clip(case.first_question, 40)}」，人工回复：{answer}"


def _tell_creator(case: HandoffCase, question: str) -> str | None:
    creator = Creator.get_or_none(Creator.id == case.creator_id)
    if creator is None:
        return None
    where = private_chat_of(int(creator.user_id), case.platform)
    if where is None:
        return None
    key = f"handoff:{case.id}:notice:{case.questions}"
    written = write([NewMessage(key, where[0], where[1], "private",
                                encode_payload({"text": notice_text(case, question)}))])
    return where[0] if written else None


# ---- the services ---------------------------------------------------------------------------------


def open_case(*, platform: str, chat_id: str, chat_kind: str, asker_id: int, question: str,
              asker_name: str = "", draft: str = "", reason: str = "") -> tuple[HandoffCase, bool, str | None]:
    """Hand a question to a human: open the chat's case, or append to its open one.
    Returns (case, created, platform of a notice written for the routed creator or None).
    Raises InvalidInput (empty question, bad chat)."""
    chat_key = _check_chat(platform, str(chat_id), chat_kind)
    question = _clip(question, QUESTION_MAX)
    if not question:
        raise InvalidInput("the question is empty", code="empty_question")
    if isinstance(asker_id, bool) or not isinstance(asker_id, int) or asker_id <= 0:
        raise InvalidInput("bad asker", code="invalid_asker")
    name, draft, reason = _clip(asker_name, NAME_MAX), _clip(draft, DRAFT_MAX), _clip(reason, 200)
    routed_to, creator_id = route(chat_key, chat_kind, asker_id)
    now = utcnow()
    with db.atomic():
        case, created = _open_or_append(chat_key, platform, str(chat_id), chat_kind, asker_id, name, question,
                                        draft, reason, routed_to, creator_id, now)
        notified = _tell_creator(case, question) if case.routed_to == CREATOR else None
    return case, created, notified


def _open_or_append(chat_key: str, platform: str, chat_id: str, chat_kind: str, asker_id: int, name: str,
                    question: str, draft: str, reason: str, routed_to: str, creator_id: int | None,
                    now: dt.datetime) -> tuple[HandoffCase, bool]:
    for _attempt in range(3):
        existing = HandoffCase.get_or_none((HandoffCase.chat_key == chat_key)
                                           & (HandoffCase.state == CaseState.OPEN.value))
        if existing is not None:
            joined = existing.question + "\n" + question
            changes: dict[Any, Any] = {HandoffCase.questions: HandoffCase.questions + 1,
                                       HandoffCase.updated_at: now}
            if len(joined) <= QUESTIONS_MAX:
                changes[HandoffCase.question] = joined
            if draft and not existing.draft:
                changes[HandoffCase.draft] = draft
            done = (HandoffCase.update(changes)
                    .where((HandoffCase.id == existing.id) & (HandoffCase.state == CaseState.OPEN.value))
                    .execute())
            if done:
                return HandoffCase.get_by_id(existing.id), False
            continue  # answered or closed meanwhile: open a new one
        try:
            with db.atomic():  # a savepoint: the unique index refuses a second open case
                case = HandoffCase.create(
                    chat_key=chat_key, platform=platform, chat_id=chat_id, chat_kind=chat_kind,
                    asker_id=asker_id, asker_name=name, question=question, draft=draft, reason=reason,
                    routed_to=routed_to, creator_id=creator_id, opened_at=now, updated_at=now)
            return case, True
        except pw.IntegrityError:
            continue  # someone opened the chat's case a moment ago: append to it
    raise Conflict("the chat's case changed too often, try again", code="handoff_busy")


def get(case_id: int) -> HandoffCase:
    if isinstance(case_id, bool) or not isinstance(case_id, int) or not 0 < case_id < 2**63:
        raise NotFound("没有找到这个编号的待回复问题，请核对编号。", code="handoff_not_found")
    case = HandoffCase.get_or_none(HandoffCase.id == case_id)
    if case is None:
        raise NotFound("没有找到这个编号的待回复问题，请核对编号。", code="handoff_not_found")
    return case


def open_case_of(chat_key: str) -> HandoffCase | None:
    return HandoffCase.get_or_none((HandoffCase.chat_key == chat_key) & (HandoffCase.state == CaseState.OPEN.value))


def answer(case_id: int, text: str, *, by: str, creator_id: int | None = None) -> HandoffCase:
    """Answer an open case: the answer is kept, the case becomes `answered`, and the answer is
    written to the asker's chat (outbox key `handoff:{id}:answer`) in the same transaction.
    `creator_id`: the answering creator (must be the one the case is routed to); None for an
    operator. Raises NotFound (handoff_not_found), Forbidden (not_your_case), InvalidInput
    (empty_answer, answer_too_long), Conflict (case_not_open)."""
    case = get(case_id)
    if creator_id is not None and (case.routed_to != CREATOR or case.creator_id != creator_id):
        raise Forbidden("这个问题不是转给你的，只有被转接的创作者可以回复。", code="not_your_case")
    text = (text or "").strip()
    if not text:
        raise InvalidInput("回复内容不能为空。", code="empty_answer")
    if len(text) > ANSWER_MAX:
        raise InvalidInput(f"回复最多 {ANSWER_MAX} 个字。", code="answer_too_long")
    if not by or len(by) > 64:
        raise InvalidInput("bad answerer", code="invalid_answerer")
    now = utcnow()
    with db.atomic():
        done = (HandoffCase.update(state=CaseState.ANSWERED.value, answer=text, answered_by=by, answered_at=now,
                                   updated_at=now)
                .where((HandoffCase.id == case.id) & (HandoffCase.state == CaseState.OPEN.value)).execute())
        if not done:
            raise Conflict("这个问题已经回复或关闭了。", code="case_not_open")
        case = HandoffCase.get_by_id(case.id)
        write([NewMessage(f"handoff:{case.id}:answer", case.platform, case.chat_id, case.chat_kind,
                          encode_payload({"text": answer_text(case, text)}))])
    return case


def close(case_id: int, *, by: str) -> HandoffCase:
    """Close an open or answered case (nothing is sent). Raises NotFound, Conflict (case_closed)."""
    case = get(case_id)
    now = utcnow()
    done = (HandoffCase.update(state=CaseState.CLOSED.value, closed_at=now, closed_by=by[:64], updated_at=now)
            .where((HandoffCase.id == case.id) & (HandoffCase.state != CaseState.CLOSED.value)).execute())
    if not done:
        raise Conflict("这个问题已经关闭了。", code="case_closed")
    return HandoffCase.get_by_id(case.id)


def list_cases(state: str | None = None, *, before: int | None = None, routed_to: str | None = None,
               creator_id: int | None = None, limit: int = 50) -> list[HandoffCase]:
    """Cases newest first (keyset pages: `before` an id), by state, routing and creator."""
    query = HandoffCase.select()
    if state is not None:
        if state not in {s.value for s in CaseState}:
            raise InvalidInput("state is open, answered or closed", code="invalid_state")
        query = query.where(HandoffCase.state == state)
    if routed_to is not None:
        query = query.where(HandoffCase.routed_to == routed_to)
    if creator_id is not None:
        query = query.where(HandoffCase.creator_id == creator_id)
    if before is not None:
        query = query.where(HandoffCase.id < before)
    return list(query.order_by(HandoffCase.id.desc()).limit(max(1, min(limit, 500))))


def counts() -> dict[str, int]:
    rows = HandoffCase.select(HandoffCase.state, pw.fn.COUNT(HandoffCase.id)).group_by(HandoffCase.state).tuples()
    found = dict.fromkeys((s.value for s in CaseState), 0)
    found.update({state: int(n) for state, n in rows})
    return found
