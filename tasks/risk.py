"""Risk scoring jobs (RQ, issue 15). They take no arguments and are safe to run twice or side
by side: models/risk_scoring.py scores each order once (risk_order_score's primary key, written
in the same transaction as its hits) and the creator rules once per creator and day.

- `score_orders` (every minute, and after each settlement run and before each release run):
  every settled, unscored paid order, RISK_SCORE_BATCH per transaction;
- `score_creators` (hourly; a hit is per creator and day): the creator rules (refund abuse).
Nothing is scored while RISK_ENABLED is off.
"""

from __future__ import annotations

import logging

from models import risk_scoring
from models.db import connection
from tasks.context import runtime

log = logging.getLogger(__name__)


def thresholds() -> risk_scoring.Thresholds:
    return risk_scoring.Thresholds.from_settings(runtime().settings)


def score_orders() -> dict[str, int]:
    """Score every settled, unscored paid order (hits, scores, holds, voids, case items)."""
    settings = runtime().settings
    if not settings.RISK_ENABLED:
        return {"orders": 0}
    with connection():
        result = risk_scoring.score_pending(thresholds(), batch=settings.RISK_SCORE_BATCH)
    if result.orders:
        log.info("risk: scored %d orders in %d batches: %d hits, %d held (%d for review), %d voided, "
                 "%d new cases", result.orders, result.batches, result.hits, result.held, result.reviewed,
                 result.voided, result.cases)
    return {"orders": result.orders, "hits": result.hits, "held": result.held, "reviewed": result.reviewed,
            "voided": result.voided, "cases": result.cases}


def score_creators() -> dict[str, int]:
    """The creator rules for today (refund abuse): hits, holds, case items."""
    if not runtime().settings.RISK_ENABLED:
        return {"hits": 0}
    with connection():
        result = risk_scoring.score_creators(thresholds())
    if result.hits:
        log.info("risk: %d creators hit by the creator rules, %d orders held", result.hits, result.held)
    return {"hits": result.hits, "held": result.held, "cases": result.cases}
