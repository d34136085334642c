"""Platform transports of the outbound sender: the shared base (what a transport is, the
message and result types) and the console transport.

The sender (bots/sender.py) owns the rows, the buckets, retries and idempotency; a transport
only turns one stored payload into platform calls and says how it went:

- `sent`; `retry_after` (a 429: wait `retry_after` seconds); `transient` (5xx, timeouts,
  network, quota: retried with backoff); `permanent` (blocked, chat not found, outside
  WeChat's 48-hour window: never retried).

Payload (what `bots.sender.payload_of` stores per message): `text`, `image_key` (a PNG under
POSTER_DIR/<key>.png: images never sit in the database row), `buttons` (rows of
{"text", "data"|"url"}), `link`, `private`.

Transports:
- `TelegramTransport` (bots/transport_telegram.py): the Telegram Bot API through aiogram.
- `WeChatTransport` (bots/transport_wechat.py): the official account's customer-service API
  through wechatpy, with the numbered button menu (`menu_choice`).
- `ConsoleTransport` (here): prints and collects (the console chat, tests).

A message made of two platform calls (a poster and a text too long for its caption) records
the calls already made in Redis (`Parts`), so a retry after a failure between them does not
repeat the first one.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from redis import Redis

Outcome = Literal["sent", "retry_after", "transient", "permanent"]

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


def short_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


class Parts:
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


class MissingImage(Exception):
    """The message names an image that is not under POSTER_DIR."""


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
