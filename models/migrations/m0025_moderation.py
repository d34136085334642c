"""Issue 16: moderation.

New tables (models/moderation.py): moderation_word (the word lists: sensitive terms, the
Advertising Law's absolute claims, allowed exceptions; unique (kind, word)) and
moderation_decision (the decision log). Seeds the starter lists (models/moderation_defaults.py),
inserting only the words that are missing.
"""

from __future__ import annotations

import peewee as pw

from models import moderation

TABLES: list[type[pw.Model]] = list(moderation.TABLES)


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
    moderation.seed_defaults()
