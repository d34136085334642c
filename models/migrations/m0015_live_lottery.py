"""Issue 13: the reservation lottery (models/lottery.py): one `lottery` row per session (terms,
the sealed seed and its published hash, the draw's outcome) and its `lottery_winner` rows
(unique per lottery and reservation, and per lottery and rank: the draw's unique keys). A
partial index holds the winners still waiting for their prize order or their notice, which
is all the draw job looks at."""

from __future__ import annotations

import peewee as pw

from models.lottery import Lottery, LotteryWinner

TABLES: list[type[pw.Model]] = [Lottery, LotteryWinner]


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
    db.execute_sql("CREATE INDEX IF NOT EXISTS lottery_winner_open ON lottery_winner (id) "
                   "WHERE order_id IS NULL OR NOT notified")
