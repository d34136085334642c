"""The one outbound sender: every push to a chat platform goes through here.

A message is first a row (`models.chat.OutboundMessage`) under a unique idempotency `key` (one
logical message to one recipient): `enqueue`, `broadcast` (all rows of a push to many chats in
bulk, one statement per 1,000, and ONE drain job, never one job per recipient) and
`send_replies` (the adapters' answers, keyed `reply:{platform}:{update_key}:{i}`, sent at once).
Inserting a key again does nothing, so a retried job or webhook never makes a second message.

`drain(platform)` sends what is due:

1. Claim: a compare-and-set `pending -> sending` (or `sending` whose lease ran out: a dead
   drain's rows come back after `LEASE_S`) stamped with `claimed_at`, which doubles as the
   claim's token: every later write to the row says `AND claimed_at = <token>`, so two drains
   never both send a row, and a row that is `sent` is never claimed again.
2. Reserve: one Lua call reserves a send moment for the whole batch in the shared token
   buckets (bots/buckets.py: the platform's overall or paid-broadcast bucket, the chat's, the
   group's); moments more than `HORIZON_S` away are not taken and their rows go back to
   pending with `not_before` set, untried.
3. Send: `concurrency` workers on one asyncio loop (aiogram for Telegram: many sends in
   flight over keep-alive connections) each sleep until their row's moment and send it;
   messages to one chat keep their order.
4. Record (every `FLUSH_S`, in one transaction): one `OutboundAttempt` per try, sent rows in
   one UPDATE, the rest per row: a 429 goes back to pending with `not_before = now +
   retry_after` and pauses the chat's bucket that long (429s from `CLUSTER_429` chats within a
   second are the platform's limit: the overall bucket is paused too); transient errors (5xx,
   timeouts, network, quota) go back with the `SEND_RETRY_INTERVALS` backoff until it runs
   out; permanent ones (403 blocked, 400 chat not found, WeChat 45015 outside the 48 h
   window) are `failed`.

A crash between a platform's answer and step 4 leaves the row `sending`; when its lease runs
out it is sent again: at-least-once there, exactly-once everywhere else.

Images never sit in the row: `payload_of` stores a reply's PNG under POSTER_DIR/<key>.png
(the poster cache's own naming) and keeps the key; the Telegram transport uploads a poster once
and reuses its file_id.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bots.buckets import Buckets, Limits
from bots.transports import (
    ConsoleTransport,
    Outgoing,
    Result,
    TelegramTransport,
    Transport,
    WeChatTransport,
    image_path,
    refresh_image,
)
from bots.types import Reply
from models.chat import OutboundMessage, Platform
from models.db import connection, db, execute, execute_batch, is_postgres, placeholders, utcnow

if TYPE_CHECKING:
    from redis import Redis

    from qianxing.settings import Settings

log = logging.getLogger(__name__)

LEASE_S = 60  # a claimed row unsent this long is claimable again (its drain died)
HORIZON_S = 1.0  # reserve send moments at most this far ahead
LOOKAHEAD_S = 0.4  # claim the next batch when the reserved moments run out this soon
FLUSH_S = 0.2  # write results at least this often
MAX_ATTEMPTS = 25  # tries in all (429s included) before a message is given up
CLUSTER_429 = 3  # 429s for this many chats within a second: the platform limit, pause it all
REPLY_WAIT_S = 1.0  # send_replies waits at most this for a bucket; later moments go to the job
INSERT_CHUNK = 1000
CALLBACK_DATA_MAX = 64  # bytes, Telegram's limit for a button's data

_ts = OutboundMessage.claimed_at.db_value
_parse_ts = OutboundMessage.claimed_at.python_value
_payload_db = OutboundMessage.payload.db_value


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


# ---- results ---------------------------------------------------------------------------------


@dataclass
class DrainStats:
    claimed: int = 0
    sent: int = 0
    retried: int = 0  # back to pending after a 429 or a transient error
    failed: int = 0
    deferred: int = 0  # claimed but no bucket room within the horizon: back to pending, untried
    next_due: dt.datetime | None = None  # the earliest pending row left (None: nothing left)
    late_s: list[float] = field(default_factory=list)  # how far behind its reserved moment each send went

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("next_due", "late_s")}
        out["next_due"] = self.next_due.isoformat() if self.next_due else None
        late = sorted(self.late_s)
        out["late_ms_p50"] = round(late[len(late) // 2] * 1000, 1) if late else 0.0
        out["late_ms_p99"] = round(late[int(len(late) * 0.99)] * 1000, 1) if late else 0.0
        out["late_ms_max"] = round(late[-1] * 1000, 1) if late else 0.0
        return out


@dataclass
class _Claimed:
    message: Outgoing
    attempts: int  # tries before this one
    token: Any  # claimed_at as stored: the claim's compare-and-set token
    done: asyncio.Future[None] | None = None  # set when this row is through (chat order)
    after: asyncio.Future[None] | None = None  # the previous row to the same chat


# ---- the sender ------------------------------------------------------------------------------


def _queue_drain(platform: str, at: dt.datetime | None) -> None:
    from tasks import queues

    queues.drain_outbound(platform, at=at)


class Sender:
    """Rows in, platform calls out. Build one per process (`sender()`); tests build their own
    with other limits or transports."""

    def __init__(self, redis: Redis, settings: Settings, *, limits: Limits | None = None,
                 transports: dict[str, Callable[[], Transport]] | None = None,
                 schedule: Callable[[str, dt.datetime | None], None] | None = None,
                 intervals: Sequence[int] | None = None, poster_dir: str | Path | None = None,
                 concurrency: int = 16) -> None:
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
        }
        self._factories.update(transports or {})
        self._local = threading.local()
        self.schedule = schedule or _queue_drain

    def _telegram(self) -> Transport:
        """This thread's Telegram transport (its Bot is built once; each pass opens and closes
        its connections on its own event loop)."""
        found = getattr(self._local, "telegram", None)
        if found is None:
            s = self.settings
            found = self._local.telegram = TelegramTransport(
                s.TELEGRAM_BOT_TOKEN or "", s.TELEGRAM_API_BASE_URL, redis=self.redis, poster_dir=self.poster_dir,
                connections=self.concurrency)
        return found

    def _wechat(self) -> Transport:
        from qianxing.wiring import runtime

        return WeChatTransport(runtime().oa, redis=self.redis, poster_dir=self.poster_dir)

    # -- writing rows ----------------------------------------------------------------------
    def enqueue(self, key: str, platform: str, chat_id: str, payload: Reply | dict[str, Any], *,
                chat_kind: str = "private", paid_broadcast: bool = False, broadcast_id: str | None = None,
                schedule: bool = True) -> bool:
        """Write one message (once per `key`: a second enqueue with the key does nothing) and
        make sure a drain job will send it. True when the row is new."""
        body = self._check(platform, chat_id, chat_kind, payload_of(payload, self.poster_dir))
        inserted = self._insert([(key, platform, str(chat_id), chat_kind, _payload_db(body), paid_broadcast,
                                  broadcast_id)])
        if schedule:
            self.schedule(platform, None)
        return inserted == 1

    def broadcast(self, broadcast_id: str, chat_ids: Iterable[str | int], payload: Reply | dict[str, Any], *,
                  paid: bool = False, platform: str = Platform.TELEGRAM.value, chat_kind: str = "private") -> int:
        """One message to many chats: rows `bc:{broadcast_id}:{chat}` written in bulk (one
        statement per 1,000) and ONE drain job queued. Returns the rows written (a repeated
        call writes none)."""
        if not broadcast_id or len(broadcast_id) > 64:
            raise ValueError("broadcast_id must be 1-64 characters")
        body = _payload_db(self._check(platform, "0", chat_kind, payload_of(payload, self.poster_dir)))
        chats = list(dict.fromkeys(str(c) for c in chat_ids))
        for chat in chats:
            if not chat or len(chat) > 64:
                raise ValueError(f"bad chat id {chat!r}")
        rows = [(f"bc:{broadcast_id}:{chat}", platform, chat, chat_kind, body, paid, broadcast_id)
                for chat in chats]
        inserted = self._insert(rows)
        self.schedule(platform, None)
        return inserted

    def _check(self, platform: str, chat_id: str, chat_kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        if platform not in self._factories:
            raise ValueError(f"unknown platform {platform!r}")
        if chat_kind not in ("private", "group"):
            raise ValueError(f"unknown chat kind {chat_kind!r}")
        if not str(chat_id) or len(str(chat_id)) > 64:
            raise ValueError(f"bad chat id {chat_id!r}")
        if payload.get("private") and chat_kind != "private":
            raise ValueError("a private message (a voucher) may only go to a private chat")
        return payload

    def _insert(self, rows: list[tuple]) -> int:
        for row in rows:
            if not row[0] or len(row[0]) > 128:
                raise ValueError(f"bad idempotency key {row[0]!r}")
        now = _ts(utcnow())
        inserted = 0
        with db.atomic():
            for start in range(0, len(rows), INSERT_CHUNK):
                chunk = rows[start:start + INSERT_CHUNK]
                cursor = execute(
                    "INSERT INTO outbound_message (key, platform, chat_id, chat_kind, payload, paid_broadcast, "
                    "broadcast_id, state, attempts, not_before, created_at) VALUES "
                    + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, 'pending', 0, %s, %s)"] * len(chunk))
                    + " ON CONFLICT (key) DO NOTHING",
                    [v for row in chunk for v in (*row, now, now)])
                inserted += max(cursor.rowcount, 0)
        return inserted

    # -- sending ---------------------------------------------------------------------------
    def drain(self, platform: str, *, deadline_s: float = 30.0, batch: int = 500) -> DrainStats:
        """Send the platform's due messages until none is due within the deadline (or the
        deadline passes). Safe beside other drains: rows are claimed."""
        return _run_sync(self._run(platform, deadline_s=deadline_s, batch=batch, keys=None,
                                   max_wait=HORIZON_S))

    def send_now(self, platform: str, keys: Sequence[str], *, max_wait: float = REPLY_WAIT_S,
                 deadline_s: float = 15.0) -> DrainStats:
        """Send these messages now if the buckets allow within `max_wait` (the low-latency
        path); whatever is left (no room yet, a retry) is left to a drain job."""
        stats = _run_sync(self._run(platform, deadline_s=deadline_s, batch=len(keys), keys=list(keys),
                                    max_wait=max_wait))
        if stats.deferred or stats.retried:
            self.schedule(platform, stats.next_due)
        return stats

    def send_replies(self, incoming_key: str, platform: str, chat_id: str, replies: Sequence[Reply], *,
                     chat_kind: str | None = None) -> dict[str, str]:
        """The adapters' answers to one update: one row per reply (`reply:{platform}:
        {update_key}:{i}`, so a redelivered update never answers twice), sent at once in
        order. Returns each key's state (sent, pending, failed)."""
        if not replies:
            return {}
        chat_id = str(chat_id)
        kind = chat_kind or ("group" if platform == Platform.TELEGRAM.value and chat_id.startswith("-") else "private")
        rows = []
        for i, reply in enumerate(replies):
            body = self._check(platform, chat_id, kind, payload_of(reply, self.poster_dir))
            rows.append((f"reply:{platform}:{incoming_key}:{i}", platform, chat_id, kind, _payload_db(body),
                         False, None))
        self._insert(rows)
        keys = [r[0] for r in rows]
        self.send_now(platform, keys)
        return self.states(keys)

    def states(self, keys: Sequence[str]) -> dict[str, str]:
        found = execute(f"SELECT key, state FROM outbound_message WHERE key IN ({placeholders(keys)})",
                        list(keys)).fetchall()
        return dict(found)

    def next_due(self, platform: str) -> dt.datetime | None:
        """When the platform's earliest pending row (or expired claim) is due."""
        pending, claimed = execute(
            "SELECT (SELECT MIN(not_before) FROM outbound_message WHERE platform = %s AND state = 'pending'), "
            "(SELECT MIN(claimed_at) FROM outbound_message WHERE platform = %s AND state = 'sending')",
            (platform, platform)).fetchone()
        times = [t for t in (_parse_ts(pending),
                             _parse_ts(claimed) + dt.timedelta(seconds=LEASE_S) if claimed else None) if t]
        return min(times) if times else None

    def due_platforms(self) -> list[str]:
        """Platforms with a row due now (the periodic safety net)."""
        now = utcnow()
        rows = execute(
            "SELECT DISTINCT platform FROM outbound_message WHERE (state = 'pending' AND not_before <= %s) "
            "OR (state = 'sending' AND claimed_at < %s)",
            (_ts(now), _ts(now - dt.timedelta(seconds=LEASE_S)))).fetchall()
        return sorted(r[0] for r in rows)

    async def _run(self, platform: str, *, deadline_s: float, batch: int, keys: list[str] | None,
                   max_wait: float) -> DrainStats:
        if platform not in self._factories:
            raise ValueError(f"unknown platform {platform!r}")
        async with self._factories[platform]() as transport:
            run = _Run(self, platform, transport, batch=max(1, batch), keys=keys, max_wait=max_wait,
                       offload=keys is None)
            await run.go(deadline_s)
        if keys is None or run.stats.deferred or run.stats.retried:
            run.stats.next_due = self.next_due(platform)
        return run.stats

    def claim(self, platform: str, limit: int, keys: list[str] | None = None) -> list[_Claimed]:
        now = utcnow()
        token, expired = _ts(now), _ts(now - dt.timedelta(seconds=LEASE_S))
        only = f" AND key IN ({placeholders(keys)})" if keys else ""
        lock = " FOR UPDATE SKIP LOCKED" if is_postgres() else ""
        rows = execute(
            "UPDATE outbound_message SET state = 'sending', claimed_at = %s WHERE id IN ("
            "SELECT id FROM outbound_message WHERE platform = %s AND ((state = 'pending' AND not_before <= %s) "
            f"OR (state = 'sending' AND claimed_at < %s)){only} ORDER BY not_before, id LIMIT %s{lock}) "
            "AND (state = 'pending' OR (state = 'sending' AND claimed_at < %s)) "
            "RETURNING id, key, chat_id, chat_kind, payload, paid_broadcast, attempts",
            [token, platform, token, expired, *(keys or []), limit, expired]).fetchall()
        return [_Claimed(Outgoing(id=r[0], key=r[1], platform=platform, chat_id=r[2], chat_kind=r[3],
                                  payload=json.loads(r[4]), paid=bool(r[5])), r[6], token)
                for r in sorted(rows)]

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


class _Run:
    """One drain (or send_now) pass on one event loop.

    With `offload` (drains) the database and bucket calls run on one I/O thread of their own,
    so the loop keeps releasing sends on time while a batch is claimed or recorded; a
    `send_now` pass (a few replies, maybe inside the caller's transaction) stays on the
    caller's thread and connection.
    """

    def __init__(self, sender: Sender, platform: str, transport: Transport, *, batch: int,
                 keys: list[str] | None, max_wait: float, offload: bool) -> None:
        self.sender, self.platform, self.transport = sender, platform, transport
        self.batch, self.keys, self.max_wait = batch, keys, max_wait
        self.stats = DrainStats()
        self.queue: asyncio.PriorityQueue[tuple[float, int, _Claimed]] = asyncio.PriorityQueue()
        self.inflight = 0
        self.seq = 0
        self.results: list[tuple[_Claimed, Result, dt.datetime]] = []
        self.deferred: list[tuple[_Claimed, dt.datetime]] = []  # back to pending untried, due then
        self.paused_until = 0.0  # loop time: the platform paused after a cluster of 429s
        self.chat_paused: dict[str, float] = {}
        self.chat_tail: dict[str, asyncio.Future[None]] = {}
        self.pace: dict[str, float] = {}  # shared bucket key -> its local theoretical arrival time
        self.io = ThreadPoolExecutor(1, thread_name_prefix="sender-io") if offload else None

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.io is None:
            return fn(*args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.io, lambda: fn(*args, **kwargs))

    async def go(self, deadline_s: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        workers = [asyncio.create_task(self._worker()) for _ in range(self.sender.concurrency)]
        reserved_until, limit, last_flush, claimed_once = 0.0, self.batch, loop.time(), False
        try:
            while True:
                now = loop.time()
                if now - last_flush >= FLUSH_S:
                    await self._flush()
                    last_flush = now
                if now >= end:
                    break
                if self.keys is not None and claimed_once:
                    break  # send_now: one claim of its own rows, sent below
                if self.inflight == 0 or reserved_until - now < LOOKAHEAD_S:
                    rows = await self._call(self.sender.claim, self.platform, limit, self.keys)
                    claimed_once = True
                    if rows:
                        self.stats.claimed += len(rows)
                        reserved, last, soonest = await self._reserve(rows)
                        reserved_until = max(reserved_until, loop.time() + last)
                        limit = min(self.batch, limit * 2) if reserved == len(rows) else max(1, reserved)
                        if reserved == 0:  # every bucket is full: wait for room, do not spin
                            await self._flush()
                            await asyncio.sleep(min(max(soonest, 0.01), 1.0, max(end - loop.time(), 0)))
                        continue
                    if self.keys is None and self.inflight == 0:
                        await self._flush()  # our own retries count for the next due moment
                        due = await self._call(self.sender.next_due, self.platform)
                        if due is None:
                            break
                        delay = (due - utcnow()).total_seconds()
                        if loop.time() + delay >= end:
                            break
                        await asyncio.sleep(min(max(delay, 0.005), 1.0))
                        continue
                await asyncio.sleep(0.005)
            await self.queue.join()  # what was reserved goes out (at most HORIZON_S more)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            try:
                await self._flush()
            finally:
                if self.io is not None:
                    await self._call(db.close)
                    self.io.shutdown(wait=True)

    async def _reserve(self, rows: list[_Claimed]) -> tuple[int, float, float]:
        """Reserve bucket room for each row; queue the ones with room within max_wait, defer
        the rest. Returns (reserved, latest reserved wait, soonest deferred wait)."""
        limits = self.sender.limits
        requests = [limits.for_message(self.platform, r.message.chat_id, r.message.chat_kind, paid=r.message.paid)
                    for r in rows]
        if any(requests):
            taken = await self._call(self.sender.buckets.take_many, requests, max_wait=self.max_wait)
        else:
            taken = [(True, 0.0)] * len(rows)
        loop = asyncio.get_running_loop()
        now = loop.time()
        reserved, last, soonest = 0, 0.0, float("inf")
        for row, (ok, wait) in zip(rows, taken, strict=True):
            if not ok:
                self.deferred.append((row, utcnow() + dt.timedelta(seconds=wait)))
                soonest = min(soonest, wait)
                continue
            reserved += 1
            last = max(last, wait)
            chat = row.message.chat_id
            row.after = self.chat_tail.get(chat)
            row.done = self.chat_tail[chat] = loop.create_future()
            self.seq += 1
            self.inflight += 1
            self.queue.put_nowait((now + wait, self.seq, row))
        return reserved, last, soonest

    def _paced(self, message: Outgoing, now: float) -> float:
        """Seconds to hold a send so this process never goes above the shared bucket's rate
        even when sends fell behind their reserved moments (a catch-up burst would trip the
        platform's flood control). Takes the local slot."""
        bucket = self.sender.limits.overall(self.platform, paid=message.paid)
        if bucket is None:
            return 0.0
        interval, tau = bucket.interval_us / 1e6, bucket.tau_us / 1e6
        tat = max(self.pace.get(bucket.key, now), now)
        at = max(now, tat - tau)
        self.pace[bucket.key] = max(tat, at) + interval
        return at - now

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            at, _, row = await self.queue.get()
            try:
                delay = at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if row.after is not None and not row.after.done():
                    await row.after  # the chat's previous message first: replies keep their order
                chat = row.message.chat_id
                hold = max(self.paused_until, self.chat_paused.get(chat, 0.0)) - loop.time()
                if hold > 0:  # a 429 paused the chat or the platform after this was reserved
                    self.deferred.append((row, utcnow() + dt.timedelta(seconds=hold)))
                    continue
                held = self._paced(row.message, loop.time())
                if held > 0:
                    await asyncio.sleep(held)
                self.stats.late_s.append(loop.time() - at)
                try:
                    result = await self.transport.send(row.message)
                except Exception as exc:  # noqa: BLE001 - a transport bug must not lose the row
                    log.exception("transport %s failed on message %s", self.platform, row.message.id)
                    result = Result("transient", "error", f"{type(exc).__name__}: {exc}"[:200])
                self.results.append((row, result, utcnow()))
                if result.outcome == "retry_after":
                    self._paused(row.message, result.retry_after or 1.0)
            finally:
                if row.done is not None and not row.done.done():
                    row.done.set_result(None)
                self.inflight -= 1
                self.queue.task_done()

    def _paused(self, message: Outgoing, seconds: float) -> None:
        limits, buckets = self.sender.limits, self.sender.buckets
        until = asyncio.get_running_loop().time() + seconds
        self.chat_paused[message.chat_id] = until
        chat = limits.chat(self.platform, message.chat_id)
        if chat is not None:
            buckets.pause(chat, seconds)
        if self.sender.note_429(self.platform, message.chat_id):
            overall = limits.overall(self.platform, paid=message.paid)
            if overall is not None:
                buckets.pause(overall, seconds)
            self.paused_until = max(self.paused_until, until)

    async def _flush(self) -> None:
        statements = self._statements()
        if statements:
            await self._call(_write, statements)

    def _statements(self) -> list[tuple[str, tuple | list]]:
        """Turn the results and deferrals so far into statements (on the loop's thread)."""
        results, self.results = self.results, []
        deferred, self.deferred = self.deferred, []
        if not results and not deferred:
            return []
        statements: list[tuple[str, tuple | list]] = []
        attempts: list[tuple] = []
        sent: dict[Any, list[int]] = {}
        intervals = self.sender.intervals
        for row, result, at in results:
            number = row.attempts + 1
            attempts.append((row.message.id, number, result.ok, result.status[:32], result.error,
                             result.retry_after, _ts(at)))
            if result.ok:
                sent.setdefault(row.token, []).append(row.message.id)
                self.stats.sent += 1
                continue
            if result.outcome == "retry_after" and number < MAX_ATTEMPTS:
                state, after = "pending", result.retry_after or 1.0
            elif result.outcome == "transient" and number <= len(intervals) and number < MAX_ATTEMPTS:
                state, after = "pending", float(intervals[number - 1])
            else:
                state, after = "failed", 0.0
            if state == "pending":
                self.stats.retried += 1
            else:
                self.stats.failed += 1
                log.warning("message %s to %s:%s failed for good: %s", row.message.key, self.platform,
                            row.message.chat_id, result.error)
            statements.append((
                "UPDATE outbound_message SET state = %s, attempts = %s, not_before = %s, last_error = %s, "
                "claimed_at = NULL WHERE id = %s AND state = 'sending' AND claimed_at = %s",
                (state, number, _ts(at + dt.timedelta(seconds=after)), (result.error or result.status)[:200],
                 row.message.id, row.token)))
        for token, ids in sent.items():
            for start in range(0, len(ids), INSERT_CHUNK):
                chunk = ids[start:start + INSERT_CHUNK]
                statements.append((
                    "UPDATE outbound_message SET state = 'sent', sent_at = %s, attempts = attempts + 1, "
                    f"last_error = NULL WHERE id IN ({placeholders(chunk)}) AND state = 'sending' AND claimed_at = %s",
                    (_ts(utcnow()), *chunk, token)))
        groups: dict[Any, list[tuple[int, dt.datetime]]] = {}
        for row, due in deferred:
            groups.setdefault(row.token, []).append((row.message.id, due))
        self.stats.deferred += len(deferred)
        for token, items in groups.items():
            ids = [i for i, _ in items]
            statements.append((  # the soonest moment of the group: a chat's rows keep their order
                "UPDATE outbound_message SET state = 'pending', claimed_at = NULL, not_before = %s "
                f"WHERE id IN ({placeholders(ids)}) AND state = 'sending' AND claimed_at = %s",
                (_ts(min(d for _, d in items)), *ids, token)))
        for start in range(0, len(attempts), 500):
            chunk = attempts[start:start + 500]
            statements.insert(0, (
                "INSERT INTO outbound_attempt (message_id, number, ok, status, error, retry_after_s, created_at) "
                "VALUES " + ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(chunk)),
                [v for a in chunk for v in a]))
        return statements


def _write(statements: list[tuple[str, tuple | list]]) -> None:
    with db.atomic():
        execute_batch(statements)


def _run_sync(coro: Any) -> DrainStats:
    """Run a sending pass from sync code; from inside a running event loop (an aiogram
    handler) it runs on a thread of its own, with its own database connection."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            with connection():
                box["result"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="sender", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


# ---- the process's sender and module-level helpers -------------------------------------------


def sender() -> Sender:
    """This process's sender (built on first use from the runtime)."""
    from qianxing.wiring import runtime

    rt = runtime()
    found = rt.extras.get("sender")
    if found is None:
        found = rt.extras["sender"] = Sender(rt.redis, rt.settings)
    return found


def enqueue(key: str, platform: str, chat_id: str, payload: Reply | dict[str, Any], *,
            chat_kind: str = "private", paid_broadcast: bool = False, broadcast_id: str | None = None) -> bool:
    return sender().enqueue(key, platform, chat_id, payload, chat_kind=chat_kind,
                            paid_broadcast=paid_broadcast, broadcast_id=broadcast_id)


def broadcast(broadcast_id: str, chat_ids: Iterable[str | int], payload: Reply | dict[str, Any], *,
              paid: bool = False, platform: str = Platform.TELEGRAM.value) -> int:
    return sender().broadcast(broadcast_id, chat_ids, payload, paid=paid, platform=platform)


def drain(platform: str, *, deadline_s: float = 30.0, batch: int = 500) -> DrainStats:
    return sender().drain(platform, deadline_s=deadline_s, batch=batch)


def send_replies(incoming_key: str, platform: str, chat_id: str, replies: list[Reply], *,
                 chat_kind: str | None = None) -> dict[str, str]:
    """For the adapters: see `Sender.send_replies`."""
    return sender().send_replies(incoming_key, platform, chat_id, replies, chat_kind=chat_kind)


__all__ = ["DrainStats", "Sender", "broadcast", "drain", "enqueue", "payload_of", "send_replies", "sender",
           "store_image"]
