"""One sending pass of the sender (bots/sender.py) on one asyncio event loop.

1. Claim due rows from the outbox (models.outbox.claim: compare-and-set with a lease).
2. Reserve: one Lua call reserves a send moment for the whole batch in the shared token
   buckets (bots/buckets.py: the platform's overall or paid-broadcast bucket, the chat's, the
   group's); moments more than `HORIZON_S` away are not taken and their rows go back to
   pending with `not_before` set, untried.
3. Send: `concurrency` workers on one asyncio loop (aiogram for Telegram: many sends in
   flight over keep-alive connections) each sleep until their row's moment and send it;
   messages to one chat keep their order.
4. Record (every `FLUSH_S`, in one transaction: models.outbox.plan_record / apply): one attempt
   per try, sent rows in one UPDATE, the rest per row. A 429 pauses the chat's bucket for its
   `retry_after` (429s from `bots.sender.CLUSTER_429` chats within a second are the platform's
   limit: the overall bucket is paused too); the outbox decides the row's next state (retry or
   failed).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bots.transports import Outgoing, Result, Transport
from models import outbox
from models.db import connection, db, utcnow

if TYPE_CHECKING:
    from bots.sender import Sender

log = logging.getLogger(__name__)

HORIZON_S = 1.0  # reserve send moments at most this far ahead
LOOKAHEAD_S = 0.4  # claim the next batch when the reserved moments run out this soon
FLUSH_S = 0.2  # write results at least this often


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


def _claim(platform: str, limit: int, keys: list[str] | None) -> list[_Claimed]:
    return [_Claimed(Outgoing(id=r.id, key=r.key, platform=platform, chat_id=r.chat_id, chat_kind=r.chat_kind,
                              payload=r.payload, paid=r.paid), r.attempts, r.token)
            for r in outbox.claim(platform, limit, keys)]


class Run:
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
                    rows = await self._call(_claim, self.platform, limit, self.keys)
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
                        due = await self._call(outbox.next_due, self.platform)
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
            await self._call(outbox.apply, statements)

    def _statements(self) -> list[outbox.Statement]:
        """Turn the results and deferrals so far into statements (on the loop's thread)."""
        results, self.results = self.results, []
        deferred, self.deferred = self.deferred, []
        if not results and not deferred:
            return []
        tries = [outbox.Try(row.message.id, row.token, row.attempts + 1, result.outcome, result.status,
                            result.error, result.retry_after, at) for row, result, at in results]
        statements, states = outbox.plan_record(
            tries, [(row.message.id, row.token, due) for row, due in deferred], self.sender.intervals)
        for (row, result, _), state in zip(results, states, strict=True):
            if state == "sent":
                self.stats.sent += 1
            elif state == "pending":
                self.stats.retried += 1
            else:
                self.stats.failed += 1
                log.warning("message %s to %s:%s failed for good: %s", row.message.key, self.platform,
                            row.message.chat_id, result.error)
        self.stats.deferred += len(deferred)
        return statements


def run_sync(coro: Any) -> DrainStats:
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


