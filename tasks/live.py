"""Live-session jobs: closing the scheduled sessions that never started (every 60 s, see
tasks/periodic.py). The rule and the writes are models.live.close_abandoned; the grace is
settings.LIVE_NEVER_STARTED_GRACE_S."""

from __future__ import annotations

import datetime as dt
import logging

from models import live
from models.db import connection, utcnow
from tasks.context import runtime

log = logging.getLogger(__name__)


def close_abandoned_sessions() -> int:
    """Cancel the scheduled sessions whose start + grace passed without going live; their
    plan_version grows, so the reservation job sends the cancellation. Safe to run twice."""
    grace = dt.timedelta(seconds=runtime().settings.LIVE_NEVER_STARTED_GRACE_S)
    with connection():
        closed = live.close_abandoned(utcnow(), grace)
    if closed:
        log.info("closed %d live sessions that never started", closed)
    return closed
