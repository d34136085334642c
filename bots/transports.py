"""Platform transports of the outbound sender: one message out, one classified result back.

The sender (bots/sender.py) owns the rows, the buckets, retries and idempotency; a transport
only turns one stored payload into platform calls and says how it went:

- `sent`; `retry_after` (a 429: wait `retry_after` seconds); `transient` (5xx, timeouts,
  network, quota: retried with backoff); `permanent` (blocked, chat not found, outside
  WeChat's 48-hour window: never retried).

Payload (what `bots.sender.payload_of` stores per message): `text`, `image_key` (a PNG under
POSTER_DIR/<key>.png: images never sit in the database row), `buttons` (rows of
{"text", "data"|"url"}), `link`, `private`.

Transports:
- `TelegramTransport`: the real aiogram `Bot` (`AiohttpSession(api=TelegramAPIServer.from_base(
  TELEGRAM_API_BASE_URL))`, keep-alive connections), sendMessage / sendPhoto with an inline
  keyboard, `allow_paid_broadcast` for paid broadcasts. A poster is uploaded once: the
  returned file_id is cached in Redis per image key and sent instead of the bytes afterwards.
- `WeChatTransport`: customer-service messages through the official-account wechatpy client
  (`message.send_text`; images through a temporary media upload, its media_id cached in
  Redis for 2.5 days, then `message.send_image`). Buttons become text links or a numbered
  menu (`menu_choice` maps a typed number back to the button's data).
- `ConsoleTransport`: prints and collects (the console chat, tests).

A message made of two platform calls (a poster and a text too long for its caption) records
the calls already made in Redis, so a retry after a failure between them does not repeat the
first one.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

import requests
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
from wechatpy.exceptions import WeChatClientException

if TYPE_CHECKING:
    from redis import Redis

Outcome = Literal["sent", "retry_after", "transient", "permanent"]

TG_TEXT_LIMIT = 4096
TG_CAPTION_LIMIT = 1024
WECHAT_TEXT_LIMIT = 2000  # bytes-ish; WeChat cuts long customer-service texts
TG_FILE_ID = "qianxing:tg:file:{}"  # image key -> Telegram file_id (no expiry: file ids last)
WX_MEDIA_ID = "qianxing:wx:media:{}"  # image key -> temporary media_id (valid 3 days)
WX_MEDIA_TTL_S = 60 * 60 * 60  # 2.5 days
WX_MENU = "qianxing:wx:menu:{}"  # openid -> the last numbered menu sent to it
PARTS_DONE = "qianxing:out:parts:{}"  # message id -> platform calls already made
PARTS_TTL_S = 3 * 86400
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True)
class Outgoing:
    """One claimed message, as the transport sees it."""

    id: int
    key: str
    platform: str
    chat_id: str
    chat_kind: str
    payload: dict[str, Any]
    paid: bool = False


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    status: str  # "200", "429", "500", "timeout", "errcode 45015" ...
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "sent"


SENT = Result("sent", "200")


class Transport(Protocol):
    platform: str

    async def __aenter__(self) -> Transport: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def send(self, message: Outgoing) -> Result:
        """Send one message; never raises for platform errors (they are classified)."""


def image_path(poster_dir: str | Path, key: str) -> Path:
    if not _KEY_RE.match(key):
        raise ValueError(f"bad image key {key!r}")
    return Path(poster_dir) / f"{key}.png"


IMAGE_REFRESH_S = 86400  # an image's mtime says when it was last used, to within a day


def refresh_image(path: Path) -> bool:
    """Mark a stored image as in use: the pruning job (tasks.chat.prune_posters) deletes images
    whose modification time is older than POSTER_MAX_AGE_DAYS. Touched at most once a day.
    False when there is no such image."""
    try:
        if time.time() - path.stat().st_mtime > IMAGE_REFRESH_S:
            os.utime(path)
    except FileNotFoundError:
        return False
    return True


def text_of(payload: dict[str, Any]) -> str:
    """The message text with its link (when the text does not already carry it)."""
    text = str(payload.get("text") or "")
    link = payload.get("link")
    if link and link not in text:
        text = f"{text}\n{link}" if text else str(link)
    return text


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


class _Parts:
    """Which platform calls of a multi-call message were made already (Redis, per message)."""

    def __init__(self, redis: Redis | None, message_id: int) -> None:
        self.redis, self.key = redis, PARTS_DONE.format(message_id)
        self.done: set[str] = set()
        if redis is not None:
            self.done = {p.decode() if isinstance(p, bytes) else p for p in redis.smembers(self.key)}

    def mark(self, part: str) -> None:
        self.done.add(part)
        if self.redis is not None:
            pipe = self.redis.pipeline(transaction=False)
            pipe.sadd(self.key, part)
            pipe.expire(self.key, PARTS_TTL_S)
            pipe.execute()


# ---- Telegram --------------------------------------------------------------------------------


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
            return Result("retry_after", "429", _short(exc), float(exc.retry_after))
        except (TelegramForbiddenError, TelegramBadRequest, TelegramNotFound, TelegramEntityTooLarge,
                TelegramMigrateToChat) as exc:
            status = {TelegramForbiddenError: "403", TelegramNotFound: "404",
                      TelegramEntityTooLarge: "413"}.get(type(exc), "400")
            return Result("permanent", status, _short(exc))
        except TelegramServerError as exc:
            return Result("transient", "5xx", _short(exc))
        except TelegramNetworkError as exc:
            status = "timeout" if "timeout" in str(exc).lower() else "network"
            return Result("transient", status, _short(exc))
        except (TimeoutError, TelegramAPIError, OSError) as exc:
            return Result("transient", "error", _short(exc))
        except _MissingImage as exc:
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
        parts = _Parts(self.redis if not fits else None, message.id)
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
                    raise _MissingImage(f"image {key} is not under POSTER_DIR")
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


class _MissingImage(Exception):
    pass


# ---- WeChat official account -----------------------------------------------------------------

_PERMANENT_WX = {45015: "outside the 48-hour window", 43004: "user unsubscribed", 40003: "invalid openid",
                 45047: "customer-service quota for this user used up", 43019: "user blocked the account"}
_TOKEN_WX = {40001, 40014, 42001}


def wechat_text(payload: dict[str, Any], *, numbered: list[str] | None = None) -> str:
    """Text, link and buttons as one customer-service text: URL buttons become `<a>` links,
    data buttons a numbered menu (the data of each number is appended to `numbered`)."""
    lines = [text_of(payload)] if text_of(payload) else []
    menu: list[str] = []
    for row in payload.get("buttons") or ():
        for b in row:
            if b.get("url"):
                lines.append(f'<a href="{b["url"]}">{b["text"]}</a>')
            else:
                menu.append(b["text"])
                if numbered is not None:
                    numbered.append(b.get("data") or b["text"])
    if menu:
        lines.append("")
        lines += [f"{i}. {label}" for i, label in enumerate(menu, 1)]
        lines.append("回复数字选择")
    return "\n".join(lines)[:WECHAT_TEXT_LIMIT]


def menu_choice(redis: Redis, openid: str, text: str) -> str | None:
    """The button data behind a number the user typed in answer to the last numbered menu we
    sent them on WeChat (None when it is not a choice)."""
    text = text.strip()
    if not text.isdigit():
        return None
    raw = redis.get(WX_MENU.format(openid))
    if not raw:
        return None
    options = json.loads(raw)
    index = int(text) - 1
    return options[index] if 0 <= index < len(options) else None


class WeChatTransport:
    """Customer-service messages through the official account's wechatpy client (sync calls
    run in threads, `concurrency` at a time)."""

    platform = "wechat"

    def __init__(self, client: Any, *, redis: Redis | None, poster_dir: str | Path, concurrency: int = 4) -> None:
        self.client, self.redis, self.poster_dir = client, redis, poster_dir
        self.concurrency = concurrency
        self._slots: asyncio.Semaphore | None = None

    async def __aenter__(self) -> WeChatTransport:
        self._slots = asyncio.Semaphore(self.concurrency)
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, message: Outgoing) -> Result:
        assert self._slots is not None, "use the transport as an async context manager"
        async with self._slots:
            return await asyncio.to_thread(self.send_sync, message)

    def send_sync(self, message: Outgoing) -> Result:
        try:
            self._with_token_refresh(lambda: self._send(message))
        except WeChatClientException as exc:
            code = exc.errcode
            if code in _PERMANENT_WX:
                return Result("permanent", f"errcode {code}", f"errcode {code}: {_PERMANENT_WX[code]}")
            return Result("transient", f"errcode {code}", f"errcode {code}: {exc.errmsg}"[:200])
        except requests.Timeout as exc:
            return Result("transient", "timeout", _short(exc))
        except requests.RequestException as exc:
            return Result("transient", "network", _short(exc))
        except _MissingImage as exc:
            return Result("permanent", "no image", str(exc))
        return SENT

    def _with_token_refresh(self, call: Any) -> Any:
        """40001/42001 (token invalid or expired): fetch a new token once and try again."""
        try:
            return call()
        except WeChatClientException as exc:
            if exc.errcode not in _TOKEN_WX:
                raise
            self.client.fetch_access_token()
            return call()

    def _send(self, message: Outgoing) -> None:
        payload, openid = message.payload, message.chat_id
        numbered: list[str] = []
        text = wechat_text(payload, numbered=numbered)
        parts = _Parts(self.redis if payload.get("image_key") and text else None, message.id)
        if payload.get("image_key") and "image" not in parts.done:
            self.client.message.send_image(openid, self._media_id(payload["image_key"]))
            parts.mark("image")
        if text:
            self.client.message.send_text(openid, text)
            if numbered and self.redis is not None:
                self.redis.set(WX_MENU.format(openid), json.dumps(numbered), ex=48 * 3600)

    def _media_id(self, key: str) -> str:
        cache_key = WX_MEDIA_ID.format(key)
        cached = self.redis.get(cache_key) if self.redis is not None else None
        if cached:
            return cached.decode() if isinstance(cached, bytes) else cached
        path = image_path(self.poster_dir, key)
        if not path.exists():
            raise _MissingImage(f"image {key} is not under POSTER_DIR")
        with path.open("rb") as fh:
            media_id = self.client.media.upload("image", fh)["media_id"]
        if self.redis is not None:
            self.redis.set(cache_key, media_id, ex=WX_MEDIA_TTL_S)
        return media_id


# ---- console ---------------------------------------------------------------------------------


@dataclass
class ConsoleTransport:
    """Prints each message (to `stream`, when given) and keeps it in `sent`."""

    stream: IO[str] | None = field(default_factory=lambda: sys.stdout)
    sent: list[Outgoing] = field(default_factory=list)
    platform: str = "console"

    async def __aenter__(self) -> ConsoleTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, message: Outgoing) -> Result:
        self.sent.append(message)
        if self.stream is not None:
            payload = message.payload
            lines = [text_of(payload)] if text_of(payload) else []
            if payload.get("image_key"):
                lines.append(f"[image {payload['image_key']}]")
            for row in payload.get("buttons") or ():
                lines.append("  ".join(f"[{b['text']}]" for b in row))
            print("\n".join(lines), file=self.stream, flush=True)
        return SENT
