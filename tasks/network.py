"""Creator-network jobs: star-level evaluation (after settlements and nightly) and traffic
rewards. Both are idempotent: evaluation promotes by compare-and-set and the thousand-star
bonus has a unique ledger key; each traffic payment has a unique ledger key."""

from __future__ import annotations

import logging

from models import activity, level_evaluation
from models.db import connection
from tasks.context import runtime

log = logging.getLogger(__name__)


def evaluate_levels() -> int:
    """Re-evaluate every creator's star level with the settings and notifiers of this process;
    returns the number of promotions."""
    rt = runtime()
    s = rt.settings
    with connection():
        changes = level_evaluation.evaluate_levels(entry_videos=s.ENTRY_VIDEOS, entry_invites=s.ENTRY_INVITES,
                                                   bonus_fen=s.THOUSAND_STAR_BONUS_FEN, notifiers=rt.notifiers)
    if changes:
        log.info("levels: %d promotions", len(changes))
    return len(changes)


def award_traffic_rewards() -> int:
    """Pay the traffic rewards earned since the last run; returns the payments posted."""
    with connection():
        paid = activity.award_traffic_rewards()
    if paid:
        log.info("traffic rewards: %d payments", paid)
    return paid
