"""WeChat official-account messages kept until answered, so a crash loses nothing.

WeChat retries a message only within ~15 seconds, and the webhook answers retries of a message it
has claimed with "success". A process that died after the claim and before answering would
therefore lose the message. The webhook stores each message it is about to answer (as the
`Incoming` the core will see) in `bot_update` under its dedupe key, and marks it done once the
replies are handed over (the passive reply, and the rest to the sender). `recover_stale` (a
periodic job) answers what is still queued a minute later through the customer-service API,
each row claimed with a lease and an attempt count like stored Telegram updates.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict
from typing import Any

from bots.types import Incoming, Member
from models.db import connection, db, execute, utcnow

log = logging.getLogger(__name__)

PLATFORM = "wechat"
STALE_AFTER_S = 60  # older than WeChat's whole retry schedule (3 tries over ~15 s)


def _encode(incoming: Incoming) -> str:
    return json.dumps(asdict(incoming), ensure_ascii=False, sort_keys=True)


def _decode(data: dict[str, Any]) -> Incoming:
    return Incoming(
        platform=data["platform"], chat_id=data["chat_id"], chat_kind=data["chat_kind"],
        sender=Member(**data["sender"]), text=data.get("text", ""), callback=data.get("callback"),
        start_payload=data.get("start_payload"),
        joined=tuple(Member(**m) for m in data.get("joined", ())))


def store(key: str, incoming: Incoming) -> None:
    """Keep a message about to be answered (a retry that finds it stored keeps the one row)."""
    with connection(), db.atomic():
        execute("INSERT INTO bot_update (platform, update_key, payload, state, attempts, received_at)"
                " VALUES (%s, %s, %s, 'queued', 0, %s) ON CONFLICT (platform, update_key) DO NOTHING",
                (PLATFORM, key, _encode(incoming), utcnow()))


def mark_done(key: str) -> None:
    with connection(), db.atomic():
        execute("UPDATE bot_update SET state = 'done', processed_at = %s"
                " WHERE platform = %s AND update_key = %s AND state = 'queued'",
                (utcnow(), PLATFORM, key))


def recover_stale(*, now: dt.datetime | None = None, limit: int = 100) -> int:
    """Answer stored messages that were never answered; returns how many were answered. Rows
    are claimed like stored Telegram updates (tasks.chat_updates.claim: lease, attempt count,
    given up after MAX_ATTEMPTS)."""
    from bots import core, sender
    from tasks.chat_updates import claim, finish

    now = now or utcnow()
    answered = 0
    with connection():
        rows = claim(limit, now=now, platform=PLATFORM,
                     received_before=now - dt.timedelta(seconds=STALE_AFTER_S))
        for row in rows:
            incoming = _decode(row.payload)
            replies = core.handle(incoming)
            sender.send_replies(row.update_key, PLATFORM, incoming.chat_id, list(replies))
            answered += finish(row, "done")
        if answered:
            log.info("wechat: answered %d stored messages the webhook never answered", answered)
    return answered
