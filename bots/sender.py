"""The one outbound sender: every push to a chat platform goes through here.

A message is first a row in the outbox (models.outbox) under a unique idempotency key (one
logical message to one recipient): `enqueue`, `broadcast` (all rows of a push to many chats in
bulk, one statement per 1,000, and ONE drain job, never one job per recipient) and
`send_replies` (the adapters' answers, keyed `models.inbox.reply_key`, sent at once). Writing a
key again does nothing, so a retried job or webhook never makes a second message.

`drain(platform)` and `send_now(platform, keys)` run a sending pass (bots/send_loop.py): rows
claimed from the outbox with a lease, send moments reserved in Redis token buckets, sends on
one event loop, every try recorded in the outbox, which decides retries (429 `retry_after`,
the `SEND_RETRY_INTERVALS` backoff for transient errors) and failures (403 blocked, 400 chat
not found, WeChat 45015 outside the 48 h window).

Images never sit in the row: `payload_of` stores a reply's PNG under POSTER_DIR/<key>.png
(the poster cache's own naming) and keeps the key; the Telegram transport uploads a poster once
and reuses its file_id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bots.buckets import Buckets, Limits
from bots.send_loop import HORIZON_S, DrainStats, Run, run_sync
from bots.transports import ConsoleTransport, Transport, image_path, refresh_image
from bots.types import Reply
from models import outbox
from models.chat import OutboundMessage, Platform
from models.db import db, execute, placeholders
from models.inbox import reply_key
from models.outbox import NewMessage, encode_payload
from models.reminders import WXA

if TYPE_CHECKING:
    from redis import Redis

    from qianxing.settings import Settings

log = logging.getLogger(__name__)

CLUSTER_429 = 3  # 429s for this many chats within a second: the platform limit, pause it all
REPLY_WAIT_S = 1.0  # send_replies waits at most this for a bucket; later moments go to the job
CALLBACK_DATA_MAX = 64  # bytes, Telegram's limit for a button's data


# ---- payloads --------------------------------------------------------------------------------


def store_image(poster_dir: str | Path, key: str, png: bytes) -> Path:
    """Write an image under POSTER_DIR/<key>.png once (atomically; the content decides the key)."""
    path = image_path(poster_dir, key)
    if refresh_image(path):  # stored before: now marked as in use
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(png)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def payload_of(reply: Reply | dict[str, Any], poster_dir: str | Path) -> dict[str, Any]:
    """The stored form of one message: text, image key (the PNG goes to POSTER_DIR), buttons
    (rows of {"text", "data"|"url"}), link, private."""
    if isinstance(reply, dict):
        payload = dict(reply)
        if payload.get("image_key"):
            image_path(poster_dir, payload["image_key"])  # validates the key
    else:
        payload = {"text": reply.text}
        if reply.image is not None:
            key = reply.image_key or hashlib.sha256(reply.image).hexdigest()[:40]
            store_image(poster_dir, key, reply.image)
            payload["image_key"] = key
        elif reply.image_key:
            image_path(poster_dir, reply.image_key)
            payload["image_key"] = reply.image_key
        if reply.buttons:
            payload["buttons"] = [[{"text": b.text, "url": b.url} if b.url
                                    else {"text": b.text, "data": b.data or b.text} for b in row]
                                   for row in reply.buttons]
        if reply.link:
            payload["link"] = reply.link
        if reply.private:
            payload["private"] = True
    if not (payload.get("text") or payload.get("image_key") or payload.get("link")):
        raise ValueError("a message needs text, an image or a link")
    for row in payload.get("buttons") or ():
        for button in row:
            if len(str(button.get("data") or "").encode()) > CALLBACK_DATA_MAX:
                raise ValueError(f"button data over {CALLBACK_DATA_MAX} bytes: {button.get('data')!r}")
    return payload


# ---- the sender ------------------------------------------------------------------------------


def _no_drain(platform: str, at: dt.datetime | None) -> None:
    """No drain jobs (a sender whose owner drains it itself, as the fan-out benchmark does)."""


class Sender:
    """Rows in, platform calls out. `qianxing.wiring.bootstrap` builds the process's sender
    (`Runtime.sender`) and hands it to what uses it; tests build their own with other limits or
    transports.

    `schedule(platform, at)` makes sure a drain job will send the platform's due rows (at `at`,
    or soon): the worker's enqueue function (`tasks.queues.drain_outbound`), given by whoever
    builds the sender, so nothing here imports the job layer. `wechat` is the official account's
    client for the WeChat transport."""

    def __init__(self, redis: Redis, settings: Settings, *, limits: Limits | None = None,
                 transports: dict[str, Callable[[], Transport]] | None = None,
                 schedule: Callable[[str, dt.datetime | None], None] | None = None,
                 intervals: Sequence[int] | None = None, poster_dir: str | Path | None = None,
                 concurrency: int = 16, wechat: Any = None, wxa: Any = None) -> None:
        self.redis, self.settings = redis, settings
        self.limits = limits or Limits.from_settings(settings)
        self.buckets = Buckets(redis)
        self.poster_dir = poster_dir or settings.POSTER_DIR
        self.intervals = list(intervals if intervals is not None else settings.intervals("SEND_RETRY_INTERVALS"))
        self.concurrency = concurrency
        self.console = ConsoleTransport()
        self._factories: dict[str, Callable[[], Transport]] = {
            Platform.TELEGRAM.value: self._telegram,
            Platform.WECHAT.value: self._wechat,
            Platform.CONSOLE.value: lambda: self.console,
            WXA: self._wxa,
        }
        self._factories.update(transports or {})
        self._local = threading.local()
        self.schedule = schedule or _no_drain
        self.wechat, self.wxa = wechat, wxa

    @property
    def platforms(self) -> frozenset[str]:
        """The platforms this sender has a transport for (what a drain can be queued for)."""
        return frozenset(self._factories)

    def _telegram(self) -> Transport:
        """This thread's Telegram transport (its Bot is built once; each pass opens and closes
        its connections on its own event loop)."""
        found = getattr(self._local, "telegram", None)
        if found is None:
            # Imported here: aiogram costs seconds of CPU to import, and every process builds a
            # sender at bootstrap (a restarted worker must deliver orders before it is loaded).
            from bots.transport_telegram import TelegramTransport

            s = self.settings
            found = self._local.telegram = TelegramTransport(
                s.TELEGRAM_BOT_TOKEN or "", s.TELEGRAM_API_BASE_URL, redis=self.redis, poster_dir=self.poster_dir,
                connections=self.concurrency)
        return found

    def _wechat(self) -> Transport:
        if self.wechat is None:
            raise RuntimeError("this sender was built without the official account's client")
        from bots.transport_wechat import WeChatTransport

        return WeChatTransport(self.wechat, redis=self.redis, poster_dir=self.poster_dir,
                               concurrency=self.concurrency)

    def _wxa(self) -> Transport:
        if self.wxa is None:
            raise RuntimeError("this sender was built without the mini-program's client")
        from bots.transport_wxa import WxaTransport

        return WxaTransport(self.wxa, concurrency=self.concurrency)

    # -- writing rows ----------------------------------------------------------------------
    def enqueue(self, key: str, platform: str, chat_id: str, payload: Reply | dict[str, Any], *,
                chat_kind: str = "private", paid_broadcast: bool = False, broadcast_id: str | None = None,
                schedule: bool = True) -> bool:
        """Write one message (once per `key`: a second enqueue with the key does nothing) and
        make sure a drain job will send it. True when the row is new."""
        body = self._check(platform, chat_id, chat_kind, payload_of(payload, self.poster_dir))
        inserted = outbox.write([NewMessage(key, platform, str(chat_id), chat_kind, encode_payload(body),
                                            paid_broadcast, broadcast_id)])
        if schedule:
            self.schedule(platform, None)
        return inserted == 1

    def write(self, messages: Sequence[tuple[str, str, str, dict[str, Any]]], *,
              broadcast_id: str | None = None, not_before: dt.datetime | None = None) -> int:
        """Many private messages under keys of the caller's own ((key, platform, chat_id,
        payload) each: a reminder per reservation), checked, then written in bulk in one
        transaction (a statement per 1,000; a savepoint inside the caller's); keys written
        before are skipped. With `not_before` (naive UTC) the new rows wait until then (a
        reminder written ahead of its moment). No drain is scheduled: the caller calls
        `schedule` after its commit. Returns the rows written."""
        encoded: dict[int, str] = {}
        rows = []
        for key, platform, chat_id, payload in messages:
            body = encoded.get(id(payload))
            if body is None:
                body = encoded[id(payload)] = encode_payload(
                    self._check(platform, "0", "private", payload_of(payload, self.poster_dir)))
            rows.append(NewMessage(key, platform, str(chat_id), "private", body, False, broadcast_id))
        for row in rows:
            outbox.check(row.chat_id, "private", {})
        with db.atomic():
            written = outbox.write(rows)
            if not_before is not None and written:
                when = OutboundMessage.not_before.db_value(not_before)
                for start in range(0, len(rows), outbox.INSERT_CHUNK):
                    keys = [r.key for r in rows[start:start + outbox.INSERT_CHUNK]]
                    execute(f"UPDATE outbound_message SET not_before = %s WHERE key IN ({placeholders(keys)}) "
                            "AND state = 'pending' AND attempts = 0 AND not_before < %s", [when, *keys, when])
        return written

    def broadcast(self, broadcast_id: str, chat_ids: Iterable[str | int], payload: Reply | dict[str, Any], *,
                  paid: bool = False, platform: str = Platform.TELEGRAM.value, chat_kind: str = "private") -> int:
        """One message to many chats: rows `outbox.broadcast_key`s written in bulk (one
        statement per 1,000) and ONE drain job queued. Returns the rows written (a repeated
        call writes none)."""
        if not broadcast_id or len(broadcast_id) > 64:
            raise ValueError("broadcast_id must be 1-64 characters")
        body = encode_payload(self._check(platform, "0", chat_kind, payload_of(payload, self.poster_dir)))
        chats = list(dict.fromkeys(str(c) for c in chat_ids))
        for chat in chats:
            if not chat or len(chat) > 64:
                raise ValueError(f"bad chat id {chat!r}")
        inserted = outbox.write([NewMessage(outbox.broadcast_key(broadcast_id, chat), platform, chat, chat_kind,
                                            body, paid, broadcast_id) for chat in chats])
        self.schedule(platform, None)
        return inserted

    def _check(self, platform: str, chat_id: str, chat_kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        if platform not in self._factories:
            raise ValueError(f"unknown platform {platform!r}")
        return outbox.check(chat_id, chat_kind, payload)

    # -- sending ---------------------------------------------------------------------------
    def drain(self, platform: str, *, deadline_s: float = 30.0, batch: int = 500) -> DrainStats:
        """Send the platform's due messages until none is due within the deadline (or the
        deadline passes). Safe beside other drains: rows are claimed."""
        return run_sync(self._run(platform, deadline_s=deadline_s, batch=batch, keys=None,
                                   max_wait=HORIZON_S))

    def send_now(self, platform: str, keys: Sequence[str], *, max_wait: float = REPLY_WAIT_S,
                 deadline_s: float = 15.0) -> DrainStats:
        """Send these messages now if the buckets allow within `max_wait` (the low-latency
        path); whatever is left (no room yet, a retry) is left to a drain job."""
        stats = run_sync(self._run(platform, deadline_s=deadline_s, batch=len(keys), keys=list(keys),
                                    max_wait=max_wait))
        if stats.deferred or stats.retried:
            self.schedule(platform, stats.next_due)
        return stats

    def send_replies(self, incoming_key: str, platform: str, chat_id: str, replies: Sequence[Reply], *,
                     chat_kind: str | None = None) -> dict[str, str]:
        """The adapters' answers to one update: one row per reply (`models.inbox.reply_key`,
        so a redelivered update never answers twice), sent at once in order. Returns each
        key's state (sent, pending, failed)."""
        if not replies:
            return {}
        chat_id = str(chat_id)
        kind = chat_kind or ("group" if platform == Platform.TELEGRAM.value and chat_id.startswith("-") else "private")
        rows = []
        for i, reply in enumerate(replies):
            body = self._check(platform, chat_id, kind, payload_of(reply, self.poster_dir))
            rows.append(NewMessage(reply_key(platform, incoming_key, i), platform, chat_id, kind,
                                   encode_payload(body)))
        outbox.write(rows)
        keys = [r.key for r in rows]
        self.send_now(platform, keys)
        return self.states(keys)

    def states(self, keys: Sequence[str]) -> dict[str, str]:
        return outbox.states(keys)

    async def _run(self, platform: str, *, deadline_s: float, batch: int, keys: list[str] | None,
                   max_wait: float) -> DrainStats:
        if platform not in self._factories:
            raise ValueError(f"unknown platform {platform!r}")
        async with self._factories[platform]() as transport:
            run = Run(self, platform, transport, batch=max(1, batch), keys=keys, max_wait=max_wait,
                      offload=keys is None)
            await run.go(deadline_s)
        if keys is None or run.stats.deferred or run.stats.retried:
            run.stats.next_due = outbox.next_due(platform)
        return run.stats

    def note_429(self, platform: str, chat_id: str) -> bool:
        """Count a 429 for a chat; True when CLUSTER_429 chats had one within the last second
        (the platform's own limit, not one chat's)."""
        key = f"{self.limits.prefix}:{platform}:recent429"
        now = self.redis.time()
        t = now[0] + now[1] / 1e6
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(key, {chat_id: t})
        pipe.zremrangebyscore(key, "-inf", t - 1.0)
        pipe.zcard(key)
        pipe.expire(key, 10)
        return pipe.execute()[2] >= CLUSTER_429


__all__ = ["DrainStats", "Sender", "payload_of", "store_image"]
