"""Issue 16: grounded answers.

New table (models/faq.py): faq, the entries operators edit in the admin and the answer engine
retrieves; the default entries (`faq.seed_defaults`, only into an empty table).
"""

from __future__ import annotations

import peewee as pw

from models import faq

TABLES: list[type[pw.Model]] = list(faq.TABLES)


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
    faq.seed_defaults()
