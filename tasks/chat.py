"""The outbound sender's jobs: drain a platform's due messages, and the periodic safety net.

`drain_outbound(platform)` is queued once per burst of writes (tasks.queues.drain_outbound: a
flag, cleared here when the run starts), sends for at most `DRAIN_DEADLINE_S` and then either
queues its own continuation (more is due), wakes up when the next retry is due, or stops.
Update processing (the inbound side) lives in tasks/chat_updates.py.
"""

from __future__ import annotations

import logging
from typing import Any

from bots.sender import sender
from models.chat import Platform
from models.db import connection, utcnow
from qianxing.wiring import runtime
from tasks import queues

log = logging.getLogger(__name__)

DRAIN_DEADLINE_S = 30.0  # then the job yields the worker to other jobs and queues the rest
DRAIN_BATCH = 500


def drain_outbound(platform: str) -> dict[str, Any]:
    """Send the platform's due outbound messages (bots.sender.Sender.drain)."""
    rt = runtime()
    rt.redis.delete(queues.OUTBOUND_FLAG.format(platform))  # a write from now on queues a next run
    with connection():
        stats = sender().drain(platform, deadline_s=DRAIN_DEADLINE_S, batch=DRAIN_BATCH)
    if stats.next_due is not None:
        queues.drain_outbound(platform, at=stats.next_due if stats.next_due > utcnow() else None)
    result = stats.as_dict()
    log.info("outbound drain %s: %s", platform, result)
    return result


def drain_all() -> list[str]:
    """Every minute: queue a drain for each platform with a due row (a message whose job was
    lost with Redis, or whose drain died holding it: its lease has run out)."""
    with connection():
        due = sender().due_platforms()
    for platform in due:
        if platform in {p.value for p in Platform}:
            queues.drain_outbound(platform)
    return due
