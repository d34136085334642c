"""The Telegram adapter (aiogram 3): Telegram updates in, `bots.types.Incoming` out.

Both transports run the same handlers. The webhook view and the long-polling process store
each update as it arrived (`BotUpdate`); the drain job (`tasks.chat_updates`) parses the stored
payload with aiogram's `Update` model and feeds it to a `Dispatcher` whose handlers turn
messages, commands (with /start deep-link payloads), button presses and group joins into an
`Incoming`. The handlers only convert (and answer a button press, which Telegram expects at
once); the conversation core and the sender run afterwards in plain sync code.

Replies are translated for the user's `language_code` (`Incoming.locale`; Chinese when
Telegram sends none or one we have no catalog for). `set_commands` publishes the command menu
(setMyCommands) from the command registry, per language.

aiogram is async and our jobs are sync: a `TelegramSession` owns one event loop, one `Bot` (its
aiohttp session) and one `Dispatcher` for a run of sync code (a drain job, the polling
process) and closes them at the end.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import JOIN_TRANSITION, ChatMemberUpdatedFilter, Command, CommandObject, CommandStart
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    CallbackQuery,
    Chat,
    ChatMemberUpdated,
    Message,
    Update,
    User,
)
from aiogram.types.update import UpdateTypeLookupError
from pydantic import ValidationError

from bots.commands.i18n import DEFAULT_LOCALE, LOCALES, locale_for, use_locale
from bots.commands.registry import telegram_commands
from bots.types import ChatKind, Incoming, Member
from models.chat import Platform

if TYPE_CHECKING:
    from qianxing.settings import Settings  # annotations only: the entrypoint passes its settings

log = logging.getLogger(__name__)

PLATFORM = Platform.TELEGRAM.value
# chat_member updates are only sent when asked for; the webhook and getUpdates both ask.
ALLOWED_UPDATES = ["message", "callback_query", "chat_member"]
_COMMAND = re.compile(r"[A-Za-z0-9_]{1,64}")
_T = TypeVar("_T")


class BadUpdate(Exception):
    """A stored payload that is not a Telegram update aiogram can read (never worth a retry)."""


class Interrupted(Exception):
    """A long poll cancelled by `TelegramSession.interrupt()` (SIGTERM/SIGINT)."""


def make_bot(settings: Settings) -> Bot:
    if not settings.TELEGRAM_BOT_TOKEN:
        raise RuntimeError("TELEGRAM_BOT_TOKEN is not set")
    api = TelegramAPIServer.from_base(settings.TELEGRAM_API_BASE_URL.rstrip("/"))
    return Bot(settings.TELEGRAM_BOT_TOKEN, session=AiohttpSession(api=api))


# ---- conversion -------------------------------------------------------------------------------


def _kind(chat: Chat) -> ChatKind | None:
    if chat.type == "private":
        return "private"
    if chat.type in ("group", "supergroup"):
        return "group"
    return None  # channels: not a conversation


def _member(user: User) -> Member:
    return Member(external_id=str(user.id), name=user.full_name[:64])


def _sender(message: Message) -> Member | None:
    if message.from_user is not None:
        return _member(message.from_user)
    if message.sender_chat is not None:  # an anonymous group admin or a linked channel
        return Member(external_id=str(message.sender_chat.id), name=(message.sender_chat.title or "")[:64])
    return None


def _locale(user: User | None) -> str:
    return locale_for(user.language_code if user is not None else None)


def _incoming(message: Message, **fields: Any) -> Incoming | None:
    kind, sender = _kind(message.chat), _sender(message)
    if kind is None or sender is None:
        return None
    return Incoming(platform=PLATFORM, chat_id=str(message.chat.id), chat_kind=kind, sender=sender,
                    locale=_locale(message.from_user), **fields)


async def on_start_link(message: Message, command: CommandObject) -> Incoming | None:
    """`/start <payload>`: a deep link t.me/<bot>?start=<payload> (an invite code)."""
    return _incoming(message, text="/start", start_payload=(command.args or "").strip() or None)


async def on_command(message: Message, command: CommandObject) -> Incoming | None:
    """Any other command, `@ourbot` mention removed (commands for other bots never match)."""
    text = f"/{command.command}"
    if command.args:
        text += f" {command.args.strip()}"
    return _incoming(message, text=text)


async def on_joined_message(message: Message) -> Incoming | None:
    joined = tuple(_member(u) for u in message.new_chat_members or () if not u.is_bot)
    if not joined or _kind(message.chat) != "group":
        return None
    return _incoming(message, joined=joined)


async def on_text(message: Message) -> Incoming | None:
    text = (message.text or message.caption or "").strip()
    if not text or text.startswith("/"):  # a command addressed to another bot
        return None
    return _incoming(message, text=text)


async def on_callback(query: CallbackQuery) -> Incoming | None:
    """Answer the press at once (the client shows a spinner until then), then hand the button's
    data to the core. Answering is best effort: a retried update's query may be too old."""
    try:
        await query.answer()
    except TelegramAPIError as exc:
        log.warning("telegram: answerCallbackQuery failed: %s", exc)
    if not query.data:
        return None
    chat = query.message.chat if query.message is not None else None
    if chat is None:  # an inline-mode message: answer in the user's private chat
        return Incoming(platform=PLATFORM, chat_id=str(query.from_user.id), chat_kind="private",
                        sender=_member(query.from_user), callback=query.data, locale=_locale(query.from_user))
    kind = _kind(chat)
    if kind is None:
        return None
    return Incoming(platform=PLATFORM, chat_id=str(chat.id), chat_kind=kind,
                    sender=_member(query.from_user), callback=query.data, locale=_locale(query.from_user))


async def on_member_joined(event: ChatMemberUpdated) -> Incoming | None:
    """A chat_member update (the bot is an admin) for someone who was not a member and is now."""
    user = event.new_chat_member.user
    if user.is_bot or _kind(event.chat) != "group":
        return None
    return Incoming(platform=PLATFORM, chat_id=str(event.chat.id), chat_kind="group",
                    sender=_member(event.from_user), joined=(_member(user),), locale=_locale(user))


def build_dispatcher() -> Dispatcher:
    """A Dispatcher with our handlers (a Router can belong to one Dispatcher only, so each
    session builds its own). Handlers run in this order; the first match answers."""
    router = Router(name="qianxing")
    router.message.register(on_start_link, CommandStart(deep_link=True))
    router.message.register(on_command, Command(_COMMAND))
    router.message.register(on_joined_message, F.new_chat_members)
    router.message.register(on_text, F.text | F.caption)
    router.callback_query.register(on_callback)
    router.chat_member.register(on_member_joined, ChatMemberUpdatedFilter(member_status_changed=JOIN_TRANSITION))
    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    return dispatcher


# ---- a sync session -------------------------------------------------------------------------


class TelegramSession:
    """One event loop, Bot and Dispatcher for sync code. Not thread-safe (except `interrupt`):
    use it from the thread that created it, and `close()` it (or use it as a context manager)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runner = asyncio.Runner()
        self.bot = make_bot(settings)
        self.dispatcher = build_dispatcher()
        self._poll: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._interrupted = False

    def __enter__(self) -> TelegramSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return self._runner.run(coro)

    def to_incoming(self, payload: dict[str, Any]) -> Incoming | None:
        """Run a stored update through the handlers: its Incoming, or None when it is nothing
        the core answers (an edited message, a leave, a channel post, a sticker...)."""
        try:
            update = Update.model_validate(payload, context={"bot": self.bot})
        except ValidationError as exc:
            raise BadUpdate(f"not a Telegram update: {exc.error_count()} validation errors") from None
        try:
            update.event_type  # noqa: B018 - raises for an update type this aiogram does not know
        except UpdateTypeLookupError:
            return None
        result = self.run(self.dispatcher.feed_update(self.bot, update))
        return result if isinstance(result, Incoming) else None

    def get_updates(self, offset: int | None, timeout: int) -> list[dict[str, Any]]:
        """One long poll; the updates as the JSON Telegram sent (aiogram's models keep unknown
        fields, so the dump is the payload). Raises Interrupted if `interrupt()` cancelled it."""
        if self._interrupted:
            raise Interrupted()

        async def poll() -> list[Update]:
            self._loop, self._poll = asyncio.get_running_loop(), asyncio.current_task()
            try:
                if self._interrupted:  # interrupted between the check above and here
                    raise asyncio.CancelledError()
                return await self.bot.get_updates(offset=offset, timeout=timeout, allowed_updates=ALLOWED_UPDATES,
                                                   request_timeout=int(self.bot.session.timeout or 60) + timeout)
            finally:
                self._poll = None

        try:
            updates = self.run(poll())
        except asyncio.CancelledError:
            raise Interrupted() from None
        return [u.model_dump(mode="json", exclude_unset=True, by_alias=True) for u in updates]

    def interrupt(self) -> None:
        """Cancel a long poll in progress and refuse the next one; safe from a signal handler
        or another thread."""
        self._interrupted = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._cancel_poll)

    def _cancel_poll(self) -> None:
        if self._poll is not None:
            self._poll.cancel()

    def delete_webhook(self) -> bool:
        return self.run(self.bot.delete_webhook(drop_pending_updates=False))

    def set_webhook(self, url: str, secret: str) -> bool:
        return self.run(self.bot.set_webhook(url, secret_token=secret, drop_pending_updates=False,
                                             allowed_updates=ALLOWED_UPDATES))

    def set_commands(self) -> int:
        """Publish the command menu (setMyCommands) from the registry: for private chats every
        command, for groups those answered there; in each catalog's language (language_code
        "zh", "en") and, for users whose language has no catalog, the default's. How many
        menus were set."""
        count = 0
        for language in (None, *LOCALES):
            with use_locale(language or DEFAULT_LOCALE):
                for scope, private in ((BotCommandScopeAllPrivateChats(), True),
                                       (BotCommandScopeAllGroupChats(), False)):
                    menu = [BotCommand(command=name, description=text)
                            for name, text in telegram_commands(private=private)]
                    self.run(self.bot.set_my_commands(menu, scope=scope, language_code=language))
                    count += 1
        return count

    def webhook_info(self) -> dict[str, Any]:
        info = self.run(self.bot.get_webhook_info())
        return info.model_dump(mode="json", exclude_none=True)

    def close(self) -> None:
        try:
            self.run(self.bot.session.close())
        except Exception:  # noqa: BLE001 - closing must not hide the error that got us here
            log.warning("telegram: closing the Bot session failed", exc_info=True)
        finally:
            self._runner.close()
