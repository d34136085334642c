"""Issue 13, team assist (models/assist.py): the offer per pin (`assist_offer`), the assists with
their one-open-per-shopper-and-pin partial unique index (`assist`), the helpers recorded for the
risk engine (`assist_help`, unique per assist and helper) and the helps per helper and session
(`assist_quota`). New tables only: the same on a fresh and on an existing database."""

from __future__ import annotations

import peewee as pw

from models.assist import TABLES as ASSIST_TABLES

TABLES: list[type[pw.Model]] = list(ASSIST_TABLES)


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)  # with their indexes, the partial unique one included
