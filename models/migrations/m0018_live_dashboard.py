"""Issue 13: the live dashboard's final figures per session (live_session_stats), the hint rules
(live_hint_rule, defaults seeded where none exist) and live votes (live_poll, live_poll_option,
live_vote), and a partial index on live_session.ended_at for the reconciliation sweep (recently
ended sessions without final figures)."""

from __future__ import annotations

import peewee as pw

from models.live_dashboard import LiveSessionStats
from models.live_hints import LiveHintRule, seed_defaults
from models.live_votes import LivePoll, LivePollOption, LiveVote

TABLES: list[type[pw.Model]] = [LiveSessionStats, LiveHintRule, LivePoll, LivePollOption, LiveVote]


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
    db.execute_sql("CREATE INDEX IF NOT EXISTS livesession_ended_at ON live_session (ended_at) "
                   "WHERE ended_at IS NOT NULL")
    seed_defaults()
