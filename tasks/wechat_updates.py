"""WeChat official-account messages a crash left unanswered: the recovery job.

WeChat retries a message only within ~15 seconds, and the webhook answers retries of a message it
has claimed with "success". A process that died after the claim and before answering would
therefore lose the message. The webhook keeps each message it is about to answer in the inbox
(models.inbox.store_wechat_message) and marks it done once the replies are handed over (the
passive reply, and the rest to the sender). `recover_stale` (a periodic job) answers what is
still queued a minute later through the customer-service API, each row claimed with a lease and
an attempt count like stored Telegram updates.
"""

from __future__ import annotations

import datetime as dt
import logging

from bots.types import Incoming
from models import inbox
from models.db import connection
from tasks.context import runtime

log = logging.getLogger(__name__)


def recover_stale(*, now: dt.datetime | None = None, limit: int = 100) -> int:
    """Answer stored messages that were never answered; returns how many were answered. Rows
    are claimed like stored Telegram updates (models.inbox.claim: lease, attempt count, given
    up after MAX_ATTEMPTS)."""
    from bots import core

    rt = runtime()
    answered = 0
    with connection():
        for row in inbox.claim_stale_wechat(limit, now=now):
            incoming = Incoming.from_payload(row.payload)
            replies = core.handle(incoming, rt)
            rt.sender.send_replies(row.update_key, inbox.WECHAT, incoming.chat_id, list(replies))
            answered += inbox.finish(row, "done")
        if answered:
            log.info("wechat: answered %d stored messages the webhook never answered", answered)
    return answered
