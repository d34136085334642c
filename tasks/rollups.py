"""Dashboard rollups job (RQ): `refresh_rollups`, every minute (tasks/periodic.py PERIODIC),
brings the rollups of models/rollups.py up to date. Runs are idempotent, so RQ's at-least-once
delivery and overlapping runs are harmless; a lease (`SET NX EX`, renewed after every batch)
only keeps a second run from redoing the work of one still going, such as the first run after
a deploy, which recomputes the whole history."""

from __future__ import annotations

import logging
import secrets

from models import rollups
from models.db import connection
from tasks.context import runtime

log = logging.getLogger(__name__)

LEASE_KEY = "qianxing:rollups:running"
LEASE_S = 300  # a run that dies blocks the next ones this long at most

# Drops the lease only while it is still ours (a run that outlived its lease must not drop
# the lease of the run that took it over).
_DROP = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def refresh_rollups(full: bool = False) -> dict[str, int]:
    """Periodic: recompute the dashboard figures touched since the last run (`full`: all of
    them). Returns {"days": order days recomputed}, or {"skipped": 1} while another run holds
    the lease."""
    redis = runtime().redis
    token = secrets.token_hex(8)
    if not redis.set(LEASE_KEY, token, nx=True, ex=LEASE_S):
        return {"skipped": 1}
    try:
        with connection():
            days = rollups.refresh(full=full, progress=lambda: redis.expire(LEASE_KEY, LEASE_S))
    finally:
        redis.eval(_DROP, 1, LEASE_KEY, token)
    if days > 1:
        log.info("rollups: %d days recomputed", days)
    return {"days": days}
