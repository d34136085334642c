"""Issue 13: tables of models/reservations.py (filled in by that module's author)."""

from __future__ import annotations

import peewee as pw

TABLES: list[type[pw.Model]] = []


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
