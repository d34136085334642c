"""Issue 16: the model call log, table ai_call (models/ai_calls.py): one row per chat or
embeddings call the provider handles (outcome, latency, tokens, cost in milli-fen; never the
prompt or the key), indexed by time and by (creator, time)."""

from __future__ import annotations

import peewee as pw

from models import ai_calls

TABLES: list[type[pw.Model]] = list(ai_calls.TABLES)


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
