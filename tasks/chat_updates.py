"""Inbound Telegram updates: the drain job that answers what the inbox holds.

The webhook view and the polling process store updates first (models.inbox: a `bot_update`
row under the unique update_id, claimed with a lease and an attempt count, finished fenced by
that attempt); this module holds the jobs that process them.

Per update: aiogram parses it and our handlers make an `Incoming` (bots.telegram), the
conversation core answers (`bots.core.handle`) and its replies go to the sender's outbox under
`models.inbox.reply_key`; then ONE sender pass sends the replies of the whole batch (a pass
opens a Bot session, ~0.3 s, so per-update sends capped a drain at ~3 updates a second).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from redis.exceptions import RedisError

from bots.telegram import PLATFORM, BadUpdate, TelegramSession
from bots.types import Incoming
from models import inbox
from models.db import connection
from models.inbox import CLAIM_BATCH, Claimed
from tasks import queues
from tasks.context import runtime

log = logging.getLogger(__name__)

MAX_RUN_S = 60  # a drain job hands over to a fresh one after this long (RQ's job timeout)
JOIN_TTL_S = 600  # a join reported twice (service message + chat_member) welcomes once


def _retry_later(row: Claimed, error: str, *, schedule: bool) -> str:
    """Leave the row queued for a retry after its backoff (and schedule a drain then), or
    failed after the last attempt."""
    delay = inbox.retry_later(row, error)
    if delay is None:
        return "failed"
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


def _answer(session: TelegramSession, row: Claimed, *, schedule_retry: bool) -> list[str] | str:
    """Convert and answer one claimed update, its replies written to the sender's outbox (not
    sent yet). The reply keys (the row is finished after the batch's send), or the outcome
    when the row is settled already: 'ignored', 'retry' or 'failed'."""
    from bots.core import handle

    rt = runtime()
    try:
        incoming = session.to_incoming(row.payload)
    except BadUpdate as exc:
        log.warning("telegram update %s is unreadable: %s", row.update_key, exc)
        inbox.finish(row, "failed", str(exc)[:200])
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
        inbox.finish(row, "done")
        return "ignored"
    try:
        keys = []
        for i, reply in enumerate(handle(incoming, rt)):
            key = inbox.reply_key(PLATFORM, row.update_key, i)
            rt.sender.enqueue(key, PLATFORM, incoming.chat_id, reply, chat_kind=incoming.chat_kind, schedule=False)
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
    sender = runtime().sender
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
            sender.send_now(PLATFORM, keys)
        except Exception:  # noqa: BLE001 - the replies are stored: the sender's drain sends them
            log.exception("sending the replies of %d updates failed; left to the sender's drain", len(answered))
            try:
                sender.schedule(PLATFORM, None)
            except Exception:  # noqa: BLE001
                log.exception("could not schedule the sender's drain")
    inbox.finish_done(answered)
    outcomes["done"] = len(answered)
    return outcomes


def process_batch(session: TelegramSession, limit: int = CLAIM_BATCH, *, schedule_retry: bool = True) -> int:
    """Claim one batch and process it; how many rows were claimed."""
    with connection():
        rows = inbox.claim(limit)
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
    updates in batches until none is claimable, holding the drain's lease (tasks.queues:
    renewed each batch, dropped at the end and when the run fails, so a killed or failed run
    blocks the next one for DRAIN_LEASE_S at most; a failed run is retried, DRAIN_RETRY).
    One TelegramSession (event loop, Bot) per run, opened only if there is work, closed at
    the end."""
    rt = runtime()
    redis = rt.redis
    if not rt.settings.TELEGRAM_BOT_TOKEN:
        redis.delete(queues.CHAT_UPDATES_FLAG)
        with connection():
            waiting = inbox.queued_exists(PLATFORM)
        if waiting:  # the periodic run finds nothing to say on a deployment without Telegram
            log.warning("telegram updates queued but TELEGRAM_BOT_TOKEN is not set; left queued")
        return 0
    session: TelegramSession | None = None
    done, started = 0, time.monotonic()
    try:
        while True:
            pipe = redis.pipeline(transaction=False)
            queues.hold(queues.CHAT_UPDATES_FLAG, pipe)
            pipe.delete(queues.CHAT_UPDATES_LIST)  # the rows themselves are the queue
            pipe.execute()
            with connection():
                rows = inbox.claim()
                if rows:
                    if session is None:
                        session = TelegramSession(rt.settings)
                    process_rows(session, rows)
            done += len(rows)
            if not rows:
                # Drop the lease, then look once more: an update stored in between either saw
                # no lease and scheduled a new run, or is picked up here.
                if queues.release(queues.CHAT_UPDATES_FLAG, queues.CHAT_UPDATES_LIST):
                    continue
                return done
            if time.monotonic() - started > MAX_RUN_S:
                queues.hold(queues.CHAT_UPDATES_FLAG)
                queues.drain_chat_updates()  # a fresh job carries on
                return done
    except BaseException:
        queues.drop(queues.CHAT_UPDATES_FLAG)
        raise
    finally:
        if session is not None:
            session.close()
