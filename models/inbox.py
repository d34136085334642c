"""The inbox: incoming Telegram updates and WeChat messages, stored before they are answered.

An update is a `bot_update` row under the unique (platform, update_key), inserted with
`ON CONFLICT DO NOTHING`, so a resent update is recognised and never processed twice. Only
then is it acknowledged (Telegram's 200 or the next getUpdates offset; WeChat's answer), so a
crash loses nothing.

Processing claims rows with a compare-and-set: `attempts = attempts + 1, processed_at = now`
on rows still `queued` whose lease has run out (`processed_at` is when the current attempt
began while a row is queued, and when it finished once it is done or failed). A processor
that dies leaves its rows queued; they are claimed again after `LEASE_S`. An update that
keeps failing (or keeps killing its processor) is marked `failed` after `MAX_ATTEMPTS` and
never blocks the rows behind it. Finishing a row is fenced by its attempt number, and the
replies are named after the update (`reply_key`), so a row processed twice (a lease that ran
out under a slow processor) still sends each reply once.

WeChat messages are stored by the webhook as the core will see them and marked done once
answered; what a crash left queued is claimed like a Telegram update after `STALE_AFTER_S`
(`claim_stale_wechat`), when WeChat's own retries are over.

Connections are the caller's (a view's request, a job's `connection()`).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from models.chat import BotUpdate, Platform
from models.db import db, execute, execute_batch, for_update, utcnow

TELEGRAM = Platform.TELEGRAM.value
WECHAT = Platform.WECHAT.value

CLAIM_BATCH = 20
LEASE_S = 120  # a claimed row is not claimed again for this long (a processor died)
MAX_ATTEMPTS = 5
RETRY_DELAYS_S = (5, 30, 120, 600)  # after a failed attempt 1, 2, 3, 4
STALE_AFTER_S = 60  # a WeChat message older than WeChat's whole retry schedule (3 tries over ~15 s)


@dataclass(frozen=True)
class Claimed:
    id: int
    update_key: str
    payload: Any
    attempts: int


def reply_key(platform: str, update_key: str, i: int) -> str:
    """The idempotency key of reply `i` to an update (an outbound message's key): whichever
    path writes the replies of an update processed twice, each is sent once."""
    return f"reply:{platform}:{update_key}:{i}"


# ---- storing -----------------------------------------------------------------------------------


def _encode(payload: dict[str, Any]) -> str:
    """The payload as stored (JSONText's format). Raises ValueError for text the database
    cannot hold (lone surrogates)."""
    text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
    text.encode("utf-8")
    return text


_INSERT = ("INSERT INTO bot_update (platform, update_key, payload, state, attempts, received_at)"
           " VALUES (%s, %s, %s, 'queued', 0, %s) ON CONFLICT (platform, update_key) DO NOTHING")


def store_telegram_updates(payloads: list[dict[str, Any]]) -> list[int]:
    """Store updates (each a JSON object with an integer update_id) in one transaction; the
    ids of the rows that are new (a duplicate update_id is skipped). Raises ValueError for a
    payload that cannot be stored."""
    rows = [(str(p["update_id"]), _encode(p)) for p in payloads]
    new: list[int] = []
    now = utcnow()
    with db.atomic():
        for key, text in rows:
            row = execute(_INSERT + " RETURNING id", (TELEGRAM, key, text, now)).fetchone()
            if row is not None:
                new.append(row[0])
    return new


def store_telegram_update(payload: dict[str, Any]) -> int | None:
    """Store one update; its row id, or None if this update_id was stored before."""
    new = store_telegram_updates([payload])
    return new[0] if new else None


def store_wechat_message(key: str, payload: dict[str, Any]) -> None:
    """Keep a WeChat message about to be answered, as the core will see it (a retry that finds
    it stored keeps the one row)."""
    with db.atomic():
        execute(_INSERT, (WECHAT, key, json.dumps(payload, ensure_ascii=False, sort_keys=True), utcnow()))


def queued_exists(platform: str) -> bool:
    return BotUpdate.select().where((BotUpdate.platform == platform) & (BotUpdate.state == "queued")).exists()


# ---- claiming and finishing --------------------------------------------------------------------


def claim(limit: int = CLAIM_BATCH, *, now: dt.datetime | None = None, platform: str = TELEGRAM,
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


def claim_stale_wechat(limit: int, *, now: dt.datetime | None = None) -> list[Claimed]:
    """WeChat messages still unanswered `STALE_AFTER_S` after they arrived (the webhook that
    stored them died), claimed like Telegram updates."""
    now = now or utcnow()
    return claim(limit, now=now, platform=WECHAT, received_before=now - dt.timedelta(seconds=STALE_AFTER_S))


def finish(row: Claimed, state: str, error: str | None = None) -> bool:
    """done/failed, only if this attempt still holds the row (the fencing token)."""
    with db.atomic():
        cursor = execute(
            "UPDATE bot_update SET state = %s, processed_at = %s, last_error = %s"
            " WHERE id = %s AND state = 'queued' AND attempts = %s",
            (state, utcnow(), error, row.id, row.attempts))
        return cursor.rowcount == 1


def finish_done(rows: list[Claimed]) -> None:
    """Mark answered rows done in one transaction (one write lock on SQLite, one round trip
    on PostgreSQL), each fenced by its attempt number."""
    if not rows:
        return
    now = utcnow()
    with db.atomic():
        execute_batch([("UPDATE bot_update SET state = 'done', processed_at = %s, last_error = NULL"
                        " WHERE id = %s AND state = 'queued' AND attempts = %s", (now, r.id, r.attempts))
                       for r in rows])


def mark_wechat_done(key: str) -> None:
    """The webhook answered the message stored under `key` (whatever attempt holds it)."""
    with db.atomic():
        execute("UPDATE bot_update SET state = 'done', processed_at = %s"
                " WHERE platform = %s AND update_key = %s AND state = 'queued'",
                (utcnow(), WECHAT, key))


def retry_later(row: Claimed, error: str) -> int | None:
    """Leave the row queued, claimable again after a backoff: the backoff in seconds; or mark
    it failed after the last attempt: None."""
    if row.attempts >= MAX_ATTEMPTS:
        finish(row, "failed", error)
        return None
    delay = RETRY_DELAYS_S[min(row.attempts, len(RETRY_DELAYS_S)) - 1]
    # claimable when processed_at < now - LEASE_S, i.e. `delay` seconds from now
    lease_start = utcnow() - dt.timedelta(seconds=LEASE_S - delay)
    with db.atomic():
        execute("UPDATE bot_update SET processed_at = %s, last_error = %s"
                " WHERE id = %s AND state = 'queued' AND attempts = %s",
                (lease_start, error, row.id, row.attempts))
    return delay
