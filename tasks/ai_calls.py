"""The model call log's retention job (issue 16): `prune_calls`, daily (tasks/periodic.py PERIODIC).

Deletes the ai_call rows older than AI_CALL_KEEP_DAYS (models/ai_calls.py `prune`),
AI_CALL_PRUNE_BATCH rows per transaction. Running it twice, or in two workers at once, deletes
nothing more.
"""

from __future__ import annotations

import datetime as dt
import logging

from models import ai_calls
from models.db import connection
from tasks.context import runtime

log = logging.getLogger(__name__)


def prune_calls(now: dt.datetime | None = None) -> int:
    settings = runtime().settings
    with connection():
        deleted = ai_calls.prune(settings.AI_CALL_KEEP_DAYS, now=now, batch=settings.AI_CALL_PRUNE_BATCH)
    if deleted:
        log.info("ai call log: %d rows past %d days deleted", deleted, settings.AI_CALL_KEEP_DAYS)
    return deleted
