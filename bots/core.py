"""The conversation core: one update in (`Incoming`), the replies out (`Reply` list), whatever
the platform. Adapters (Telegram, the WeChat official account, the console) call `handle` from
synchronous code or a worker thread and render the replies; the command set lives in
bots.commands, the group behaviour in bots.groups.

Replies are translated into `Incoming.locale` (bots/commands/i18n.py: Chinese by default,
English for a Telegram user whose language_code says so). `handle` never raises for anything a
user can send: a domain error becomes a polite reply naming the problem, and an unexpected
exception is logged (the exception type and the traceback's frames only: never the message
text, the exception's own text or any local value, so no card key or secret can reach the log)
and answered with a polite "稍后再试".

The core reaches nothing global: `handle(incoming, deps)` gets what the commands need (the
settings, a Redis client, the withdrawal policy: `ChatDeps`, which the process's
`qianxing.wiring.Runtime` is) from its caller, and puts it into the `Context` each handler
receives. The adapters' entrypoints (the webhook views, the chat jobs, the console chat) pass
their runtime.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Protocol

from bots import commands, groups
from bots.commands import N_, Command, Context, _, use_locale
from bots.types import Incoming, Reply
from models import identities
from models.db import db
from models.errors import DomainError

log = logging.getLogger(__name__)


class ChatDeps(Protocol):
    """What the conversation core needs from its process (`qianxing.wiring.Runtime` has it)."""

    settings: Any  # qianxing.settings.Settings
    redis: Any  # redis.Redis
    withdraw: Any  # models.withdrawals.WithdrawPolicy
    # and optionally `ai`: content_ai.provider.Provider (absent or None: the offline path),
    # and `sender`: bots.sender.Sender (absent: rows a handler writes wait for the periodic drain)

SORRY = N_("抱歉，系统开小差了，请稍后再试。")


@contextmanager
def _connection() -> Iterator[None]:
    """Use this thread's open connection, or open one for the update and close it after."""
    if not db.is_closed():
        yield
        return
    with db.connection_context():
        yield


def handle(incoming: Incoming, deps: ChatDeps) -> list[Reply]:
    """Everything the bot answers to one update, in order (possibly nothing, in a group)."""
    with use_locale(incoming.locale):
        try:
            with _connection():
                return _handle(_clean(incoming), deps)
        except DomainError as exc:
            return [Reply(text=commands.polite(exc))]
        except Exception as exc:
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error("chat update failed (platform %s, %s chat): %s\n%s", str(incoming.platform)[:16],
                      str(incoming.chat_kind)[:8], type(exc).__name__, frames)
            return [Reply(text=_(SORRY))]


def _strip(value: str) -> str:
    return value.replace("\x00", "") if "\x00" in value else value


def _clean(incoming: Incoming) -> Incoming:
    """NUL characters out of everything a user typed: PostgreSQL refuses them in text columns
    (names, keys, markups, script topics), and no command means anything with them."""
    fields = (incoming.text, incoming.callback or "", incoming.start_payload or "", incoming.sender.name)
    if not any("\x00" in f for f in fields) and not any("\x00" in m.name for m in incoming.joined):
        return incoming
    return replace(
        incoming, text=_strip(incoming.text),
        callback=_strip(incoming.callback) if incoming.callback is not None else None,
        start_payload=_strip(incoming.start_payload) if incoming.start_payload is not None else None,
        sender=replace(incoming.sender, name=_strip(incoming.sender.name)),
        joined=tuple(replace(m, name=_strip(m.name)) for m in incoming.joined))


def context_for(incoming: Incoming, deps: ChatDeps) -> Context:
    sender = incoming.sender
    if not (sender.external_id or "").strip() and incoming.joined:
        sender = incoming.joined[0]  # a join event without a sender: the newcomer
    user = identities.resolve(incoming.platform, sender, incoming.chat_id, incoming.chat_kind)
    return Context(incoming=incoming, user=user, settings=deps.settings, redis=deps.redis,
                   withdraw_policy=deps.withdraw, ai=getattr(deps, "ai", None),
                   outbound=getattr(deps, "sender", None))


def _handle(incoming: Incoming, deps: ChatDeps) -> list[Reply]:
    if incoming.chat_kind == "group" and not (incoming.sender.external_id or "").strip() \
            and not incoming.joined:
        return []  # a service message nobody sent: nothing to answer
    ctx = context_for(incoming, deps)
    cmd = commands.parse(incoming)
    if incoming.chat_kind == "group":
        return groups.handle(ctx, cmd)
    if cmd is None and incoming.start_payload is not None:  # a WeChat subscribe: ""
        cmd = Command("start")
    if cmd is None:
        return commands.free_text(ctx)
    return commands.execute(ctx, cmd)
