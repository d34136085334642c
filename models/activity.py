"""Activity data: short-video plays and live-room entries, from the mini-program tracking route
and from platform CSV exports. Every event has an id and is stored once (a replayed batch or a
re-imported file changes nothing); they feed star levels, traffic rewards and the funnel."""

from __future__ import annotations

from enum import StrEnum

import peewee as pw

from models.db import BaseModel, utcnow


class ActivityKind(StrEnum):
    VIDEO_PLAY = "video_play"
    LIVE_ENTRY = "live_entry"


class ActivityEvent(BaseModel):
    event_id = pw.CharField(max_length=64, unique=True)
    creator_id = pw.BigIntegerField()
    kind = pw.CharField(max_length=16)
    ref = pw.CharField(max_length=40, default="")  # video id or live session id
    count = pw.IntegerField(default=1)  # a platform export reports plays in aggregate
    occurred_at = pw.DateTimeField()
    source = pw.CharField(max_length=8)  # api, csv
    user_id = pw.BigIntegerField(null=True)  # the viewer, when the mini-program reported it
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("creator_id", "kind", "ref"), False),)


class TrafficTier(BaseModel):
    """Traffic rewards by table: a video past `min_plays` earns `reward_fen` in total (a higher
    tier pays the difference)."""

    min_plays = pw.BigIntegerField(primary_key=True)
    reward_fen = pw.BigIntegerField()


DEFAULT_TIERS = ((100_000, 10_000), (500_000, 50_000), (1_000_000, 100_000))


def seed_tiers() -> int:
    """Write the default traffic tiers where none exist; returns the rows written."""
    if TrafficTier.select().exists():
        return 0
    TrafficTier.insert_many([{"min_plays": m, "reward_fen": r} for m, r in DEFAULT_TIERS]).execute()
    return len(DEFAULT_TIERS)
