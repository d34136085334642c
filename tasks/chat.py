"""The outbound sender's jobs: drain a platform's due messages, and the periodic safety net.

`drain_outbound(platform)` is queued once per burst of writes (tasks.queues.drain_outbound: a
short lease, dropped here when the run starts; a failed run is retried), sends for at most
`DRAIN_DEADLINE_S` and then either queues its own continuation (more is due), wakes up when
the next retry is due, or stops.
Update processing (the inbound side) lives in tasks/chat_updates.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from pathlib import Path
from typing import Any

from models import outbox
from models.db import connection, utcnow
from tasks import queues
from tasks.context import runtime

log = logging.getLogger(__name__)

DRAIN_DEADLINE_S = 30.0  # then the job yields the worker to other jobs and queues the rest
DRAIN_BATCH = 500


def drain_outbound(platform: str) -> dict[str, Any]:
    """Send the platform's due outbound messages (bots.sender.Sender.drain)."""
    rt = runtime()
    rt.redis.delete(queues.OUTBOUND_FLAG.format(platform))  # a write from now on queues a next run
    with connection():
        stats = rt.sender.drain(platform, deadline_s=DRAIN_DEADLINE_S, batch=DRAIN_BATCH)
    if stats.next_due is not None:
        queues.drain_outbound(platform, at=stats.next_due if stats.next_due > utcnow() else None)
    result = stats.as_dict()
    log.info("outbound drain %s: %s", platform, result)
    return result


def drain_all() -> list[str]:
    """Every minute: queue a drain for each platform with a due row (a message whose job was
    lost with Redis, or whose drain died holding it: its lease has run out)."""
    with connection():
        due = outbox.due_platforms()
    sendable = runtime().sender.platforms  # chats, and mini-program subscribe messages
    for platform in due:
        if platform in sendable:
            queues.drain_outbound(platform)
    return due


TMP_MAX_AGE_S = 3600  # a .tmp file this old is what an interrupted write left behind


def prune_posters() -> dict[str, int]:
    """Daily: delete the images under POSTER_DIR (rendered posters and message images, a cache
    by content) that nobody used for POSTER_MAX_AGE_DAYS, and the leftovers of interrupted
    writes. An image is in use while its modification time is recent (every cache hit and every
    message that stores it refreshes it: bots.transports.refresh_image) or while a message not
    yet sent refers to it. A deleted poster is simply rendered again when it is next needed."""
    rt = runtime()
    folder = Path(rt.settings.POSTER_DIR)
    now = time.time()
    cutoff = now - dt.timedelta(days=rt.settings.POSTER_MAX_AGE_DAYS).total_seconds()
    old: list[Path] = []
    leftovers = 0
    if not folder.is_dir():  # nothing stored yet
        return {"deleted": 0, "kept_for_messages": 0, "leftovers": 0}
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.is_file(follow_symlinks=False):
                continue
            mtime = entry.stat(follow_symlinks=False).st_mtime
            if entry.name.endswith(".tmp") and mtime < now - TMP_MAX_AGE_S:
                leftovers += _unlink(Path(entry.path))
            elif entry.name.endswith(".png") and mtime < cutoff:
                old.append(Path(entry.path))
    waiting = _images_waiting() if old else set()
    deleted = 0
    for path in old:
        # Looked at again just before: a message may have stored (refreshed) it meanwhile.
        if path.stem not in waiting and _mtime(path) < cutoff:
            deleted += _unlink(path)
    result = {"deleted": deleted, "kept_for_messages": sum(p.stem in waiting for p in old),
              "leftovers": leftovers}
    if deleted or leftovers:
        log.info("posters pruned: %s", result)
    return result


def _images_waiting() -> set[str]:
    """Image keys of the outbound messages not sent yet (pending, or being sent)."""
    with connection():
        return outbox.unsent_image_keys()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


def _unlink(path: Path) -> int:
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    return 1
