"""Live dashboard jobs (RQ, periodic: tasks/periodic.py PERIODIC).

- `reconcile_ended`: sessions ended LIVE_DASHBOARD_RECONCILE_DELAY_S ago or more (within a week)
  without final figures get them from the database, and their Redis counters are overwritten
  (models/live_reconcile.py). Idempotent: a second run of a session rewrites the same figures;
  one session that fails is logged and the others go on (it is picked up again next run).
- `sample_live`: one sample of every live session's figures for the hint rules, so they have
  history even when nobody has the dashboard open (at most one per LIVE_DASHBOARD_SAMPLE_S and
  session, whoever takes it).
"""

from __future__ import annotations

import logging

from models import live_board, live_reconcile
from models.db import connection, is_connection_lost, utcnow
from models.live_dashboard import DashboardPolicy
from tasks.context import runtime

log = logging.getLogger(__name__)


def reconcile_ended(limit: int = 50) -> dict[str, int]:
    """Periodic: final figures for recently ended sessions. Returns counts."""
    rt = runtime()
    counts = {"reconciled": 0, "failed": 0}
    with connection():
        due = live_reconcile.unreconciled(utcnow(), delay_s=rt.settings.LIVE_DASHBOARD_RECONCILE_DELAY_S,
                                          limit=limit)
        for session_id in due:
            try:
                live_reconcile.reconcile(session_id, rt.redis)
                counts["reconciled"] += 1
            except Exception as exc:
                if is_connection_lost(exc):
                    raise  # the database is gone: the whole run is retried, no session is to blame
                log.exception("live dashboard: reconciling session %s failed", session_id)
                counts["failed"] += 1
    return counts


def sample_live() -> int:
    """Periodic: a sample of each live session's figures; returns the samples taken."""
    rt = runtime()
    policy, taken, after = DashboardPolicy.of(rt.settings), 0, 0
    with connection():
        while ids := live_board.live_sessions(after):
            for session_id in ids:
                taken += bool(live_board.keep_sample(rt.redis, session_id, policy=policy))
            after = ids[-1]
    return taken
