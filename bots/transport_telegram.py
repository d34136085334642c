"""The Telegram transport of the outbound sender (the shared base is bots/transports.py).

`TelegramTransport`: the real aiogram `Bot` (`AiohttpSession(api=TelegramAPIServer.from_base(
TELEGRAM_API_BASE_URL))`, keep-alive connections), sendMessage / sendPhoto with an inline
keyboard, `allow_paid_broadcast` for paid broadcasts. A poster is uploaded once: the returned
file_id is cached in Redis per image key and sent instead of the bytes afterwards. A poster
with a text too long for its caption is two calls; the first is recorded (`Parts`) so a retry
does not repeat it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup

from bots.transports import SENT, MissingImage, Outgoing, Parts, Result, image_path, short_error, text_of

if TYPE_CHECKING:
    from redis import Redis

TG_TEXT_LIMIT = 4096
TG_CAPTION_LIMIT = 1024
TG_FILE_ID = "qianxing:tg:file:{}"  # image key -> Telegram file_id (no expiry: file ids last)


def _chat(chat_id: str) -> int | str:
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id


def inline_keyboard(buttons: Iterable[Iterable[dict[str, Any]]]) -> InlineKeyboardMarkup | None:
    rows = []
    for row in buttons:
        made = []
        for b in row:
            if b.get("url"):
                made.append(InlineKeyboardButton(text=b["text"], url=b["url"]))
            else:
                made.append(InlineKeyboardButton(text=b["text"], callback_data=b.get("data") or b["text"]))
        if made:
            rows.append(made)
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


class _PlainSession(AiohttpSession):
    """aiogram's session without the 250 ms pause on close that lets TLS connections shut down
    (aiohttp's graceful-shutdown advice): over plain HTTP there is nothing to wait for, and a
    send pass would otherwise take at least 250 ms."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


class TelegramTransport:
    """aiogram's Bot against TELEGRAM_API_BASE_URL, `connections` keep-alive connections.

    One instance serves many passes of one thread (the sender keeps one per thread): the Bot
    and its session object (with its TLS context, ~15 ms to build) are made once; each pass
    (`async with`) opens the HTTP connections on that pass' event loop and closes them after.
    """

    platform = "telegram"

    def __init__(self, token: str, api_base_url: str, *, redis: Redis | None, poster_dir: str | Path,
                 connections: int = 16, timeout_s: int = 15) -> None:
        if not token:
            raise RuntimeError("TELEGRAM_BOT_TOKEN is not set: no Telegram bot to send with")
        self.token, self.base = token, api_base_url.rstrip("/")
        self.redis, self.poster_dir = redis, poster_dir
        self.connections, self.timeout_s = connections, timeout_s
        self._bot: Bot | None = None
        self.bot: Bot | None = None  # set inside a pass
        self._uploads: dict[str, asyncio.Lock] = {}

    async def __aenter__(self) -> TelegramTransport:
        if self._bot is None:
            plain = self.base.startswith("http://")  # a local Bot API server or the fake
            session = (_PlainSession if plain else AiohttpSession)(api=TelegramAPIServer.from_base(self.base),
                                                                   limit=self.connections)
            self._bot = Bot(self.token, session=session)
        self.bot, self._uploads = self._bot, {}
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.bot is not None:
            await self.bot.session.close()  # this loop's connections; the next pass opens its own
            self.bot = None

    async def send(self, message: Outgoing) -> Result:
        try:
            await self._send(message)
        except TelegramRetryAfter as exc:
            return Result("retry_after", "429", short_error(exc), float(exc.retry_after))
        except (TelegramForbiddenError, TelegramBadRequest, TelegramNotFound, TelegramEntityTooLarge,
                TelegramMigrateToChat) as exc:
            status = {TelegramForbiddenError: "403", TelegramNotFound: "404",
                      TelegramEntityTooLarge: "413"}.get(type(exc), "400")
            return Result("permanent", status, short_error(exc))
        except TelegramServerError as exc:
            return Result("transient", "5xx", short_error(exc))
        except TelegramNetworkError as exc:
            status = "timeout" if "timeout" in str(exc).lower() else "network"
            return Result("transient", status, short_error(exc))
        except (TimeoutError, TelegramAPIError, OSError) as exc:
            return Result("transient", "error", short_error(exc))
        except MissingImage as exc:
            return Result("permanent", "no image", str(exc))
        return SENT

    async def _send(self, message: Outgoing) -> None:
        assert self.bot is not None, "use the transport as an async context manager"
        payload, chat = message.payload, _chat(message.chat_id)
        text = text_of(payload)[:TG_TEXT_LIMIT]
        markup = inline_keyboard(payload.get("buttons") or ())
        extra: dict[str, Any] = {"request_timeout": self.timeout_s}
        if message.paid:
            extra["allow_paid_broadcast"] = True
        image_key = payload.get("image_key")
        if not image_key:
            await self.bot.send_message(chat, text or " ", reply_markup=markup, **extra)
            return
        fits = len(text) <= TG_CAPTION_LIMIT
        parts = Parts(self.redis if not fits else None, message.id)
        if "photo" not in parts.done:
            await self._send_photo(chat, image_key, caption=text if fits else None,
                                   markup=markup if fits else None, extra=extra)
            parts.mark("photo")
        if not fits:
            await self.bot.send_message(chat, text, reply_markup=markup, **extra)

    async def _send_photo(self, chat: int | str, key: str, *, caption: str | None,
                          markup: InlineKeyboardMarkup | None, extra: dict[str, Any]) -> None:
        assert self.bot is not None
        cache_key = TG_FILE_ID.format(key)
        lock = self._uploads.setdefault(key, asyncio.Lock())
        async with lock:  # the first send of a poster uploads it; the others wait for its file_id
            file_id = self.redis.get(cache_key) if self.redis is not None else None
            if file_id:
                file_id = file_id.decode() if isinstance(file_id, bytes) else file_id
            else:
                path = image_path(self.poster_dir, key)
                if not path.exists():
                    raise MissingImage(f"image {key} is not under POSTER_DIR")
                sent = await self.bot.send_photo(chat, BufferedInputFile(path.read_bytes(), f"{key}.png"),
                                                 caption=caption, reply_markup=markup, **extra)
                if sent.photo and self.redis is not None:
                    self.redis.set(cache_key, sent.photo[-1].file_id)
                return
        try:
            await self.bot.send_photo(chat, file_id, caption=caption, reply_markup=markup, **extra)
        except TelegramBadRequest as exc:
            if "file" in str(exc).lower() and self.redis is not None:
                self.redis.delete(cache_key)  # a stale file_id: upload again on the retry
                raise TelegramServerError(method=exc.method, message=f"stale file_id: {exc.message}") from exc
            raise
