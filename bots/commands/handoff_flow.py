"""Grounded answers in chat and hand-offs to a human (issue 16): what the groups' AI fallback
(bots/groups.py) and private free text (replies.free_text) say, and the silence after a human
answered.

    answer(ctx, question) -> list[Reply] | None

1. While the chat is silent (a human answered there within HANDOFF_SILENCE_S: a hand-off
   answer, or the group's linked creator speaking), there is no AI answer: a group hears
   nothing, a private message goes on to a human (step 3). The silence is a Redis key
   `qx:chat:handoff:quiet:<chat key>` with that expiry; commands are not affected.
2. `content_ai.answers.reply` answers from the catalog and the FAQ (the model when one is
   configured, else the offline path; it never raises and is bounded by the model's timeout).
3. A reply that hands off opens (or appends to) the chat's hand-off case (models/handoff.py:
   routed to the group's linked creator, who is told in a private chat, else the operators),
   and the asker is told once per case "已转给人工，稍后回复你" (later questions of the same
   asker: nothing in a group, a short receipt in a private chat, which always answers).
4. Otherwise its text, or None when it has nothing to say (the caller decides: a group stays
   silent, a private chat gets the "not understood" hint).

`deliver_answer` is how a human's answer reaches the asker (the creator's /answer and the
admin's answer form): checked, moderated (kind "handoff_reply"), kept on the case with the
message to the asker's chat written to the outbox in the same transaction, and the chat made
silent.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError

from bots.commands.i18n import _
from bots.commands.registry import Context
from bots.types import Reply
from content_ai import answers
from content_ai.moderation import moderate
from models import handoff
from models.errors import Conflict, DomainError, Forbidden, InvalidInput
from models.network import Creator

log = logging.getLogger(__name__)

QUIET = "qx:chat:handoff:quiet"  # + chat key: a human answered here recently
ACKED = "qx:chat:handoff:ack"  # + case id + user id: the asker was told the case is with a human
ACK_TTL_S = 7 * 86_400


# ---- silence --------------------------------------------------------------------------------------


def quiet_key(chat_key: str) -> str:
    return f"{QUIET}:{chat_key}"


def silence(redis: Any, settings: Any, chat_key: str) -> bool:
    """A human answered in this chat: the AI stays silent there for HANDOFF_SILENCE_S (0: off)."""
    seconds = int(getattr(settings, "HANDOFF_SILENCE_S", 0) or 0)
    if seconds <= 0:
        return False
    try:
        redis.set(quiet_key(chat_key), "1", ex=seconds)
    except RedisError:
        log.warning("hand-off silence not kept (Redis unavailable)")
        return False
    return True


def silenced(redis: Any, chat_key: str) -> bool:
    try:
        return bool(redis.exists(quiet_key(chat_key)))
    except RedisError:
        return False  # Redis down: answering beats a silent bot


# ---- answering --------------------------------------------------------------------------------------


def _asker(ctx: Context) -> Creator | None:
    return Creator.get_or_none(Creator.user == ctx.user.id)


def answer(ctx: Context, question: str, *, linked: Creator | None = None) -> list[Reply] | None:
    """What the bot says to a free-text question in this chat: [] while the chat is silent or
    when the question went to a human and the asker was told already, None when there is
    nothing to say. `linked`: a group's linked creator (the hand-off goes there)."""
    incoming = ctx.incoming
    if silenced(ctx.redis, incoming.chat_key):
        # a human is talking here: no AI answer; a private message goes on to the human
        return hand_off(ctx, question, reason="after_human") if incoming.chat_kind == "private" else []
    me = _asker(ctx)
    creator_id = int(me.id) if me is not None else (int(linked.id) if linked is not None else None)
    got = answers.reply(question, settings=ctx.settings, ai=ctx.ai,
                        audience="creator" if me is not None else "shopper", creator_id=creator_id,
                        chat_kind=incoming.chat_kind)
    if got.handoff:
        # a model or offline answer it was unsure of is the human's draft; the hand-off's own
        # polite text (source "none") is not: the asker gets our one notice per case instead
        draft = got.text if got.source != "none" else ""
        return hand_off(ctx, question, draft=draft, reason=got.reason or "handoff")
    if not got.text:
        return None
    return [Reply(text=got.text)]


def kick(ctx: Context) -> None:
    """Have the process's sender drain now what a handler wrote to the outbox (a creator's
    notice, an answer), instead of waiting for the periodic drain."""
    if ctx.outbound is None:
        return
    for platform in ctx.outbound.platforms:
        ctx.outbound.schedule(platform, None)


def hand_off(ctx: Context, question: str, *, draft: str = "", reason: str = "") -> list[Reply]:
    """Open or append to the chat's case; tell the asker once per case."""
    incoming = ctx.incoming
    try:
        case, _created, notified = handoff.open_case(
            platform=incoming.platform, chat_id=incoming.chat_id, chat_kind=incoming.chat_kind,
            asker_id=int(ctx.user.id), asker_name=ctx.display_name, question=question, draft=draft, reason=reason)
    except DomainError as exc:  # a chat the case table cannot hold: no case, so no promise of one
        log.warning("hand-off not opened: %s", exc.code)
        return [] if incoming.chat_kind == "group" else [Reply(text=_("抱歉，系统开小差了，请稍后再试。"))]
    if notified:
        kick(ctx)
    try:
        first = ctx.redis.set(f"{ACKED}:{case.id}:{ctx.user.id}", "1", nx=True, ex=ACK_TTL_S)
    except RedisError:
        first = _created
    if not first:  # told already: a group hears nothing more, a private chat a short receipt
        return [] if incoming.chat_kind == "group" else [Reply(text=_("收到，已补充给人工，会一并回复你。"))]
    if incoming.chat_kind == "group":
        who = ctx.display_name or _("这位朋友")
        return [Reply(text=_("{who}，你的问题已转给人工，稍后回复你。").format(who=who))]
    return [Reply(text=_("你的问题已转给人工，稍后回复你。"))]


# ---- a human's answer -----------------------------------------------------------------------------------


def deliver_answer(redis: Any, settings: Any, case_id: int, text: str, *, by: str,
                   creator_id: int | None = None, wechat: Any = None) -> handoff.HandoffCase:
    """A human answers a case: refusals first (not found, not theirs, not open, empty), then
    moderation, then the answer and its outbox row (models.handoff.answer), then the chat's
    silence. The caller schedules the sender's drain for `case.platform` after this returns.
    Raises the domain errors of models.handoff, and InvalidInput (answer_blocked)."""
    case = handoff.get(case_id)
    if creator_id is not None and (case.routed_to != handoff.CREATOR or case.creator_id != creator_id):
        raise Forbidden(_("这个问题不是转给你的，只有被转接的创作者可以回复。"), code="not_your_case")
    if case.state != handoff.CaseState.OPEN:
        raise Conflict(_("这个问题已经回复或关闭了。"), code="case_not_open")
    text = (text or "").strip()
    if not text:
        raise InvalidInput(_("回复内容不能为空。"), code="empty_answer")
    decision = moderate(text, kind="handoff_reply", subject=f"chat:{case.chat_key}", settings=settings,
                        wechat=wechat)
    if decision.blocked or not decision.text.strip():
        raise InvalidInput(_("回复包含不适宜发布的内容，请修改后再发送。"), code="answer_blocked")
    case = handoff.answer(case.id, decision.text, by=by, creator_id=creator_id)
    silence(redis, settings, case.chat_key)
    return case
