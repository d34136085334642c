"""Inbound Telegram updates: stored first, then processed in batches by one drain job.

The webhook view and the polling process call `store_telegram_update(s)`: a `bot_update` row
under the unique (platform, update_key = update_id), `ON CONFLICT DO NOTHING`, so a resent
update is recognised and never processed twice. Only then is the update acknowledged (the 200,
or the next getUpdates offset), so a crash loses nothing.

Processing claims rows with a compare-and-set: `attempts = attempts + 1, processed_at = now`
on rows still `queued` whose lease has run out (`processed_at` is when the current attempt
began while a row is queued, and when it finished once it is done or failed). A processor
that dies leaves its rows queued; they are claimed again after `LEASE_S`. An update that
keeps failing (or keeps killing its processor) is marked `failed` after `MAX_ATTEMPTS` and
never blocks the rows behind it. Marking a row done is fenced by its attempt number, and the
sender's idempotency keys are named after the update, so a row processed twice (a lease that
ran out under a slow processor) still sends each reply once.

Per update: aiogram parses it and our handlers make an `Incoming` (bots.telegram), the
conversation core answers (`bots.core.handle`) and its replies go to the sender's outbox under
`send_replies`' keys; then ONE sender pass sends the replies of the whole batch (a pass opens a
Bot session, ~0.3 s, so per-update sends capped a drain at ~3 updates a second).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from redis.exceptions import RedisError

from bots.telegram import PLATFORM, BadUpdate, TelegramSession
from bots.types import Incoming
from models.chat import BotUpdate
from models.db import connection, db, execute, execute_batch, for_update, utcnow
from qianxing.wiring import runtime
from tasks import queues

log = logging.getLogger(__name__)

CLAIM_BATCH = 20
LEASE_S = 120  # a claimed row is not claimed again for this long (a processor died)
MAX_ATTEMPTS = 5
RETRY_DELAYS_S = (5, 30, 120, 600)  # after a failed attempt 1, 2, 3, 4
MAX_RUN_S = 60  # a drain job hands over to a fresh one after this long (RQ's job timeout)
JOIN_TTL_S = 600  # a join reported twice (service message + chat_member) welcomes once


@dataclass(frozen=True)
class Claimed:
    id: int
    update_key: str
    payload: Any
    attempts: int


# ---- storing -----------------------------------------------------------------------------------


def _encode(payload: dict[str, Any]) -> str:
    """The payload as stored (JSONText's format). Raises ValueError for text the database
    cannot hold (lone surrogates)."""
    text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
    text.encode("utf-8")
    return text


def store_telegram_updates(payloads: list[dict[str, Any]]) -> list[int]:
    """Store updates (each a JSON object with an integer update_id) in one transaction; the
    ids of the rows that are new (a duplicate update_id is skipped). Raises ValueError for a
    payload that cannot be stored."""
    rows = [(str(p["update_id"]), _encode(p)) for p in payloads]
    new: list[int] = []
    now = utcnow()
    with db.atomic():
        for key, text in rows:
            cursor = execute(
                "INSERT INTO bot_update (platform, update_key, payload, state, attempts, received_at)"
                " VALUES (%s, %s, %s, 'queued', 0, %s)"
                " ON CONFLICT (platform, update_key) DO NOTHING RETURNING id",
                (PLATFORM, key, text, now))
            row = cursor.fetchone()
            if row is not None:
                new.append(row[0])
    return new


def store_telegram_update(payload: dict[str, Any]) -> int | None:
    """Store one update; its row id, or None if this update_id was stored before."""
    new = store_telegram_updates([payload])
    return new[0] if new else None


# ---- claiming ----------------------------------------------------------------------------------


def claim(limit: int = CLAIM_BATCH, *, now: dt.datetime | None = None, platform: str = PLATFORM,
          received_before: dt.datetime | None = None) -> list[Claimed]:
    """Give up on rows that used their last attempt, then claim up to `limit` queued rows of a
    platform (received before `received_before`, if given) whose lease ran out
    (compare-and-set on state and lease, row locks skipped on PostgreSQL)."""
    now = now or utcnow()
    cutoff = now - dt.timedelta(seconds=LEASE_S)
    young = " AND received_at <= %s" if received_before is not None else ""
    with db.atomic():
        execute(
            "UPDATE bot_update SET state = 'failed', processed_at = %s,"
            " last_error = %s WHERE state = 'queued' AND platform = %s AND attempts >= %s"
            " AND processed_at < %s",
            (now, f"gave up after {MAX_ATTEMPTS} attempts (the processor never finished)", platform,
             MAX_ATTEMPTS, cutoff))
        cursor = execute(
            "UPDATE bot_update SET attempts = attempts + 1, processed_at = %s WHERE id IN ("
            f" SELECT id FROM bot_update WHERE state = 'queued' AND platform = %s{young}"
            " AND (processed_at IS NULL OR processed_at < %s) ORDER BY id LIMIT %s"
            f"{for_update('FOR UPDATE SKIP LOCKED')})"
            " RETURNING id, update_key, payload, attempts",
            (now, platform, *([received_before] if young else []), cutoff, limit))
        rows = cursor.fetchall()
    claimed = [Claimed(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]
    return sorted(claimed, key=lambda c: c.id)


def finish(row: Claimed, state: str, error: str | None = None) -> bool:
    """done/failed, only if this attempt still holds the row (the fencing token)."""
    with db.atomic():
        cursor = execute(
            "UPDATE bot_update SET state = %s, processed_at = %s, last_error = %s"
            " WHERE id = %s AND state = 'queued' AND attempts = %s",
            (state, utcnow(), error, row.id, row.attempts))
        return cursor.rowcount == 1


def _finish_done(rows: list[Claimed]) -> None:
    """Mark answered rows done in one transaction (one write lock on SQLite, one round trip
    on PostgreSQL), each fenced by its attempt number."""
    if not rows:
        return
    now = utcnow()
    with db.atomic():
        execute_batch([("UPDATE bot_update SET state = 'done', processed_at = %s, last_error = NULL"
                        " WHERE id = %s AND state = 'queued' AND attempts = %s", (now, r.id, r.attempts))
                       for r in rows])


def _retry_later(row: Claimed, error: str, *, schedule: bool) -> str:
    """Leave the row queued, claimable again after a backoff; or failed after the last attempt."""
    if row.attempts >= MAX_ATTEMPTS:
        finish(row, "failed", error)
        return "failed"
    delay = RETRY_DELAYS_S[min(row.attempts, len(RETRY_DELAYS_S)) - 1]
    # claimable when processed_at < now - LEASE_S, i.e. `delay` seconds from now
    lease_start = utcnow() - dt.timedelta(seconds=LEASE_S - delay)
    with db.atomic():
        execute("UPDATE bot_update SET processed_at = %s, last_error = %s"
                " WHERE id = %s AND state = 'queued' AND attempts = %s",
                (lease_start, error, row.id, row.attempts))
    if schedule:
        queues.drain_chat_updates(delay_s=delay + 1)
    return "retry"


# ---- processing --------------------------------------------------------------------------------


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


def _first_join_only(incoming: Incoming, update_key: str) -> Incoming | None:
    """Telegram reports a join twice when the bot is a group admin (a service message and a
    chat_member update): welcome each member once. A retry of the same update keeps its claim."""
    redis = runtime().redis
    kept = []
    for member in incoming.joined:
        key = f"qianxing:tg:joined:{incoming.chat_id}:{member.external_id}"
        if redis.set(key, update_key, nx=True, ex=JOIN_TTL_S) or (redis.get(key) or b"").decode() == update_key:
            kept.append(member)
    if not kept:
        return None
    return replace(incoming, joined=tuple(kept))


def reply_key(update_key: str, i: int) -> str:
    """The idempotency key of reply `i` to an update: `bots.sender.send_replies`' naming, so a
    reprocessed update never answers twice whichever path wrote its replies."""
    return f"reply:{PLATFORM}:{update_key}:{i}"


def _answer(session: TelegramSession, row: Claimed, *, schedule_retry: bool) -> list[str] | str:
    """Convert and answer one claimed update, its replies written to the sender's outbox (not
    sent yet). The reply keys (the row is finished after the batch's send), or the outcome
    when the row is settled already: 'ignored', 'retry' or 'failed'."""
    from bots.core import handle
    from bots.sender import sender

    try:
        incoming = session.to_incoming(row.payload)
    except BadUpdate as exc:
        log.warning("telegram update %s is unreadable: %s", row.update_key, exc)
        finish(row, "failed", str(exc)[:200])
        return "failed"
    except Exception as exc:  # noqa: BLE001 - e.g. getMe unreachable while checking a mention
        log.warning("telegram update %s: conversion failed (%s); will retry", row.update_key, _error_text(exc))
        return _retry_later(row, _error_text(exc), schedule=schedule_retry)
    if incoming is not None and incoming.joined:
        try:
            incoming = _first_join_only(incoming, row.update_key)
        except RedisError:
            log.warning("telegram update %s: join dedupe unavailable (Redis)", row.update_key)
    if incoming is None:
        finish(row, "done")
        return "ignored"
    try:
        keys = []
        for i, reply in enumerate(handle(incoming)):
            key = reply_key(row.update_key, i)
            sender().enqueue(key, PLATFORM, incoming.chat_id, reply, chat_kind=incoming.chat_kind, schedule=False)
            keys.append(key)
    except Exception as exc:  # noqa: BLE001 - one update's failure must not stop the others
        log.exception("telegram update %s failed (attempt %d)", row.update_key, row.attempts)
        return _retry_later(row, _error_text(exc), schedule=schedule_retry)
    return keys


def process_rows(session: TelegramSession, rows: list[Claimed], *, schedule_retry: bool = True) -> dict[str, int]:
    """Answer claimed updates, then send all their replies in one pass of the sender (one Bot
    session for the batch: a pass costs ~0.3 s however many messages it carries), then mark
    the updates done. An update is done once its replies are durably in the sender's outbox:
    what the pass could not send (rate limits, errors) the sender's own drain job retries."""
    from bots.sender import sender

    outcomes: dict[str, int] = {}
    answered: list[Claimed] = []
    keys: list[str] = []
    for row in rows:
        out = _answer(session, row, schedule_retry=schedule_retry)
        if isinstance(out, str):
            outcomes[out] = outcomes.get(out, 0) + 1
        else:
            answered.append(row)
            keys.extend(out)
    if keys:
        try:
            sender().send_now(PLATFORM, keys)
        except Exception:  # noqa: BLE001 - the replies are stored: the sender's drain sends them
            log.exception("sending the replies of %d updates failed; left to the sender's drain", len(answered))
            try:
                sender().schedule(PLATFORM, None)
            except Exception:  # noqa: BLE001
                log.exception("could not schedule the sender's drain")
    _finish_done(answered)
    outcomes["done"] = len(answered)
    return outcomes


def process_batch(session: TelegramSession, limit: int = CLAIM_BATCH, *, schedule_retry: bool = True) -> int:
    """Claim one batch and process it; how many rows were claimed."""
    with connection():
        rows = claim(limit)
        if rows:
            process_rows(session, rows, schedule_retry=schedule_retry)
    return len(rows)


def process_pending(session: TelegramSession, *, schedule_retry: bool = True,
                    max_seconds: float | None = None) -> int:
    """Process claimable rows until none are left (or `max_seconds` passed)."""
    done, started = 0, time.monotonic()
    while max_seconds is None or time.monotonic() - started < max_seconds:
        n = process_batch(session, schedule_retry=schedule_retry)
        if not n:
            break
        done += n
    return done


def process_updates() -> int:
    """The drain job (tasks.queues.chat_update schedules one at a time): process queued
    updates in batches until none is claimable. One TelegramSession (event loop, Bot) per run,
    opened only if there is work, closed at the end."""
    rt = runtime()
    redis = rt.redis
    if not rt.settings.TELEGRAM_BOT_TOKEN:
        redis.delete(queues.CHAT_UPDATES_FLAG)
        with connection():
            waiting = BotUpdate.select().where((BotUpdate.platform == "telegram")
                                               & (BotUpdate.state == "queued")).exists()
        if waiting:  # the periodic run finds nothing to say on a deployment without Telegram
            log.warning("telegram updates queued but TELEGRAM_BOT_TOKEN is not set; left queued")
        return 0
    session: TelegramSession | None = None
    done, started = 0, time.monotonic()
    try:
        while True:
            redis.delete(queues.CHAT_UPDATES_LIST)  # the rows themselves are the queue
            with connection():
                rows = claim()
                if rows:
                    if session is None:
                        session = TelegramSession(rt.settings)
                    process_rows(session, rows)
            done += len(rows)
            if not rows:
                # Clear the flag, then look once more: an update stored in between either saw
                # no flag and scheduled a new run, or is picked up here.
                redis.delete(queues.CHAT_UPDATES_FLAG)
                if redis.llen(queues.CHAT_UPDATES_LIST) and redis.set(queues.CHAT_UPDATES_FLAG, 1, nx=True, ex=60):
                    continue
                return done
            if time.monotonic() - started > MAX_RUN_S:
                redis.set(queues.CHAT_UPDATES_FLAG, 1, ex=60)
                queues.drain_chat_updates()  # a fresh job carries on
                return done
    finally:
        if session is not None:
            session.close()
