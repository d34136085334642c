"""The risk signals' retention job (issue 15): `prune_signals`, daily (tasks/periodic.py PERIODIC).

Deletes the risk_signal rows older than RISK_RETENTION_DAYS and blanks the raw client IPs that
orders and assist helps kept past that age (models/risk_signals.py `prune`), RISK_PRUNE_BATCH
rows per transaction. Running it twice, or in two workers at once, changes nothing more.
"""

from __future__ import annotations

import datetime as dt
import logging

from models import risk_signals
from models.db import connection
from tasks.context import runtime

log = logging.getLogger(__name__)


def prune_signals(now: dt.datetime | None = None) -> int:
    settings = runtime().settings
    with connection():
        touched = risk_signals.prune(settings.RISK_RETENTION_DAYS, now=now, batch=settings.RISK_PRUNE_BATCH)
    if touched:
        log.info("risk signals: %d rows past %d days pruned or blanked", touched, settings.RISK_RETENTION_DAYS)
    return touched
