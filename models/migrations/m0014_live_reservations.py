"""Issue 13: reservations of live sessions (models/reservations.py) and the reminder planner's
progress per session, plan and reminder (models/reminders.py)."""

from __future__ import annotations

import peewee as pw

from models.reminders import ReminderRun
from models.reservations import Reservation

TABLES: list[type[pw.Model]] = [Reservation, ReminderRun]


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
