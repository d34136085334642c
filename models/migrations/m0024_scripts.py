"""Issue 16: creators' short-video scripts and their review (models/scripts.py): content_script
(the validated variants as JSON, source, state draft -> submitted -> approved | rejected, the AI
check's decision id, reviewer and note) and content_style (a creator's remembered style)."""

from __future__ import annotations

import peewee as pw

from models import scripts

TABLES: list[type[pw.Model]] = list(scripts.TABLES)


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
