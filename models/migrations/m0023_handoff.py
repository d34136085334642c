"""Issue 16: hand-off cases (models/handoff.py).

New table handoff_case, and the partial unique index that keeps one open case per chat.
"""

from __future__ import annotations

import peewee as pw

from models import handoff

TABLES: list[type[pw.Model]] = list(handoff.TABLES)


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
    db.execute_sql(handoff.OPEN_INDEX)
