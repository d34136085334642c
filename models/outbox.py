"""The outbox: every outgoing chat message is an `outbound_message` row before it is sent.

A row is written once under a unique idempotency `key` (one logical message to one recipient:
`models.inbox.reply_key` for the answers to an update, `broadcast_key` for a push to many chats, the
caller's own key for a notice); writing the key again does nothing, so a retried job or webhook
never makes a second message. The states:

    pending --claim--> sending --record: sent----------> sent
       ^                  |  \\--record: 429 / transient --> pending (not_before later)
       |                  |   \\-record: permanent, or out of tries --> failed
       +--- deferred -----+   (claimed, no bucket room yet: back untried)
       +--- lease ran out (a dead sender's claim, after LEASE_S) --> claimable again

A claim is a compare-and-set `pending -> sending` (or `sending` whose lease ran out) stamped
with `claimed_at`, which doubles as the claim's token: every later write to the row says
`AND claimed_at = <token>`, so two senders never both send a row, and a `sent` row is never
claimed again. Each try is an `outbound_attempt` row. A crash between a platform's answer and
the record leaves the row `sending`; when its lease runs out it is sent again: at-least-once
there, exactly-once everywhere else.

No network and no Redis here: bots/sender.py does the sending and calls these for every state
change. Connections are the caller's.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from models.chat import OutboundMessage
from models.db import db, execute, execute_batch, is_postgres, placeholders, utcnow

__all__ = ["LEASE_S", "MAX_ATTEMPTS", "Claimed", "NewMessage", "Statement", "Try", "apply", "broadcast_key",
           "check", "claim", "due_platforms", "encode_payload", "failed", "next_due", "next_state", "plan_record",
           "requeue_failed", "states", "unsent_image_keys", "write"]

LEASE_S = 60  # a claimed row unsent this long is claimable again (its sender died)
MAX_ATTEMPTS = 25  # tries in all (429s included) before a message is given up
INSERT_CHUNK = 1000  # rows per INSERT (a broadcast), ids per UPDATE

Statement = tuple[str, tuple | list]

_ts = OutboundMessage.claimed_at.db_value
_parse_ts = OutboundMessage.claimed_at.python_value
encode_payload = OutboundMessage.payload.db_value  # a payload dict as stored


class NewMessage(NamedTuple):
    key: str
    platform: str
    chat_id: str
    chat_kind: str
    payload: str  # encode_payload(...)
    paid_broadcast: bool = False
    broadcast_id: str | None = None


@dataclass(frozen=True)
class Claimed:
    id: int
    key: str
    chat_id: str
    chat_kind: str
    payload: dict[str, Any]
    paid: bool
    attempts: int  # tries before this claim
    token: Any  # claimed_at as stored: the claim's compare-and-set token


@dataclass(frozen=True)
class Try:
    """One send of a claimed row, as the transport classified it."""

    message_id: int
    token: Any
    number: int  # this try's number (1 for the first)
    outcome: str  # sent, retry_after, transient, permanent
    status: str
    error: str | None
    retry_after: float | None
    at: dt.datetime


def broadcast_key(broadcast_id: str, chat_id: str) -> str:
    return f"bc:{broadcast_id}:{chat_id}"


# ---- writing -----------------------------------------------------------------------------------


def check(chat_id: str, chat_kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload, if a message with it may go to this chat; else ValueError."""
    if chat_kind not in ("private", "group"):
        raise ValueError(f"unknown chat kind {chat_kind!r}")
    if not str(chat_id) or len(str(chat_id)) > 64:
        raise ValueError(f"bad chat id {chat_id!r}")
    if payload.get("private") and chat_kind != "private":
        raise ValueError("a private message (a voucher) may only go to a private chat")
    return payload


def write(rows: Sequence[NewMessage]) -> int:
    """Insert messages `pending` and due now, in one transaction (a statement per 1,000); a key
    written before is skipped. Returns how many rows are new."""
    for row in rows:
        if not row.key or len(row.key) > 128:
            raise ValueError(f"bad idempotency key {row.key!r}")
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


# ---- claiming ----------------------------------------------------------------------------------


def claim(platform: str, limit: int, keys: Sequence[str] | None = None) -> list[Claimed]:
    """Claim up to `limit` due rows of a platform (only `keys`, if given), oldest due first:
    pending rows whose `not_before` has come and `sending` rows whose lease ran out."""
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
    return [Claimed(r[0], r[1], r[2], r[3], json.loads(r[4]), bool(r[5]), r[6], token) for r in sorted(rows)]


# ---- recording ---------------------------------------------------------------------------------


def next_state(outcome: str, number: int, retry_after: float | None, intervals: Sequence[int]) -> tuple[str, float]:
    """A failed try's next state and the seconds until the row is due again: a 429 waits its
    `retry_after`, a transient error the backoff `intervals` until they run out; permanent
    errors, and any row out of its MAX_ATTEMPTS, are `failed`."""
    if outcome == "retry_after" and number < MAX_ATTEMPTS:
        return "pending", retry_after or 1.0
    if outcome == "transient" and number <= len(intervals) and number < MAX_ATTEMPTS:
        return "pending", float(intervals[number - 1])
    return "failed", 0.0


def plan_record(tries: Sequence[Try], deferred: Sequence[tuple[int, Any, dt.datetime]],
                intervals: Sequence[int]) -> tuple[list[Statement], list[str]]:
    """The statements that record tries (an attempt row each; sent rows in one UPDATE per
    claim, the rest per row) and deferrals ((id, token, due): back to pending untried, a
    claim's rows at their soonest moment so a chat's rows keep their order), each write fenced
    by the claim's token; and each try's new state (sent, pending, failed). `apply` runs them."""
    statements: list[Statement] = []
    attempts: list[tuple] = []
    new_states: list[str] = []
    sent: dict[Any, list[int]] = {}
    for t in tries:
        attempts.append((t.message_id, t.number, t.outcome == "sent", t.status[:32], t.error, t.retry_after,
                         _ts(t.at)))
        if t.outcome == "sent":
            sent.setdefault(t.token, []).append(t.message_id)
            new_states.append("sent")
            continue
        state, after = next_state(t.outcome, t.number, t.retry_after, intervals)
        new_states.append(state)
        statements.append((
            "UPDATE outbound_message SET state = %s, attempts = %s, not_before = %s, last_error = %s, "
            "claimed_at = NULL WHERE id = %s AND state = 'sending' AND claimed_at = %s",
            (state, t.number, _ts(t.at + dt.timedelta(seconds=after)), (t.error or t.status)[:200],
             t.message_id, t.token)))
    for token, ids in sent.items():
        for start in range(0, len(ids), INSERT_CHUNK):
            chunk = ids[start:start + INSERT_CHUNK]
            statements.append((
                "UPDATE outbound_message SET state = 'sent', sent_at = %s, attempts = attempts + 1, "
                f"last_error = NULL WHERE id IN ({placeholders(chunk)}) AND state = 'sending' AND claimed_at = %s",
                (_ts(utcnow()), *chunk, token)))
    groups: dict[Any, list[tuple[int, dt.datetime]]] = {}
    for message_id, token, due in deferred:
        groups.setdefault(token, []).append((message_id, due))
    for token, items in groups.items():
        ids = [i for i, _ in items]
        statements.append((
            "UPDATE outbound_message SET state = 'pending', claimed_at = NULL, not_before = %s "
            f"WHERE id IN ({placeholders(ids)}) AND state = 'sending' AND claimed_at = %s",
            (_ts(min(d for _, d in items)), *ids, token)))
    for start in range(0, len(attempts), 500):
        chunk = attempts[start:start + 500]
        statements.insert(0, (
            "INSERT INTO outbound_attempt (message_id, number, ok, status, error, retry_after_s, created_at) "
            "VALUES " + ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(chunk)),
            [v for a in chunk for v in a]))
    return statements, new_states


def apply(statements: Sequence[Statement]) -> None:
    """Run `plan_record`'s statements in one transaction."""
    with db.atomic():
        execute_batch(list(statements))


# ---- reading -----------------------------------------------------------------------------------


def states(keys: Sequence[str]) -> dict[str, str]:
    """Each key's state (pending, sending, sent, failed); keys never written are absent."""
    found = execute(f"SELECT key, state FROM outbound_message WHERE key IN ({placeholders(keys)})",
                    list(keys)).fetchall()
    return dict(found)


def next_due(platform: str) -> dt.datetime | None:
    """When the platform's earliest pending row (or expired claim) is due."""
    pending, claimed = execute(
        "SELECT (SELECT MIN(not_before) FROM outbound_message WHERE platform = %s AND state = 'pending'), "
        "(SELECT MIN(claimed_at) FROM outbound_message WHERE platform = %s AND state = 'sending')",
        (platform, platform)).fetchone()
    times = [t for t in (_parse_ts(pending),
                         _parse_ts(claimed) + dt.timedelta(seconds=LEASE_S) if claimed else None) if t]
    return min(times) if times else None


def due_platforms() -> list[str]:
    """Platforms with a row due now (the periodic safety net)."""
    now = utcnow()
    rows = execute(
        "SELECT DISTINCT platform FROM outbound_message WHERE (state = 'pending' AND not_before <= %s) "
        "OR (state = 'sending' AND claimed_at < %s)",
        (_ts(now), _ts(now - dt.timedelta(seconds=LEASE_S)))).fetchall()
    return sorted(r[0] for r in rows)


def unsent_image_keys() -> set[str]:
    """Image keys of the messages not sent yet (pending, or being sent)."""
    rows = (OutboundMessage.select(OutboundMessage.payload)
            .where(OutboundMessage.state.in_(["pending", "sending"])
                   & OutboundMessage.payload.contains("image_key")).tuples())
    return {str(key) for (payload,) in rows.iterator()
            if isinstance(payload, dict) and (key := payload.get("image_key"))}


# ---- operator retries (the admin's failed pushes) ---------------------------------------------


def failed(limit: int = 50, before_id: int | None = None) -> list[OutboundMessage]:
    """Failed messages, newest first (read through the (state, not_before) index)."""
    query = OutboundMessage.select().where(OutboundMessage.state == "failed")
    if before_id is not None:
        query = query.where(OutboundMessage.id < before_id)
    return list(query.order_by(OutboundMessage.id.desc()).limit(limit))


def requeue_failed(ids: Sequence[int]) -> list[tuple[int, str]]:
    """An operator's retry: these failed rows back to `pending`, due now, for the next drain
    (their attempts are kept, so the retry is one more try numbered on; a row that fails
    again is `failed` again). Rows in any other state are left alone. Returns (id, platform)
    of each row requeued, for the caller to schedule the drains after commit."""
    ids = sorted({int(i) for i in ids})
    if not ids:
        return []
    rows = execute(
        "UPDATE outbound_message SET state = 'pending', not_before = %s, claimed_at = NULL "
        f"WHERE id IN ({placeholders(ids)}) AND state = 'failed' RETURNING id, platform",
        [_ts(utcnow()), *ids]).fetchall()
    return sorted((int(r[0]), str(r[1])) for r in rows)
