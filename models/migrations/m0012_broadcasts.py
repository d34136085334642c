"""Admin broadcasts (models/broadcasts.py) and the indexes their audience queries use.

- `broadcast`: one message to an audience, written when an operator sends it; its outbox rows
  carry `broadcast_id = admin-<id>` (outbound_message (broadcast_id) exists since 0005).
- `chat_identity_platform_id` (platform, id): a platform's chat users counted (index only) and
  streamed in keyset order, a chunk per statement, for a broadcast to all of them.
- `creator_rank` (rank, user_id): creators at or above a star level, counted and joined to
  their chat accounts without reading every creator.
Failed notices are read through `notification_failed` (0009), failed chat messages through
outbound_message (state, not_before) (0005).
"""

from __future__ import annotations

import peewee as pw

from models.broadcasts import Broadcast

TABLES: list[type[pw.Model]] = [Broadcast]

INDEXES = (
    "CREATE INDEX IF NOT EXISTS chat_identity_platform_id ON chat_identity (platform, id)",
    "CREATE INDEX IF NOT EXISTS creator_rank ON creator (rank, user_id)",
)


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
    for statement in INDEXES:
        db.execute_sql(statement)
