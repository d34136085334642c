"""Bulk inserts of many plain rows in one statement (settlement batches: a settlement row per
order and a commission line per beneficiary, thousands per transaction)."""

from __future__ import annotations

import io

from models.db import db, is_postgres


def insert_rows(table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Bulk insert: COPY on PostgreSQL (three times faster than INSERT ... SELECT FROM unnest of
    array parameters, which psycopg2 sends as one literal per element), executemany on SQLite.

    Values are integers, None, timestamps or fixed ASCII words (states, kinds)."""
    if not rows:
        return
    names = ", ".join(columns)
    if is_postgres():
        import psycopg2.extensions as ext

        conn = db.connection()
        # COPY bypasses peewee's lazy BEGIN: the caller's transaction must already be open
        # (settlement takes its lock first), or these rows would commit on their own.
        if conn.get_transaction_status() != ext.TRANSACTION_STATUS_INTRANS:
            raise RuntimeError("insert_rows must run inside an open transaction")
        line = "\t".join(["%s"] * len(columns)) + "\n"
        text = "".join([line % (row if None not in row else tuple(_COPY_NULL if v is None else v for v in row))
                        for row in rows])
        with conn.cursor() as cur:
            cur.copy_expert(f"COPY {table} ({names}) FROM STDIN", io.StringIO(text))
    else:
        marks = ", ".join("?" * len(columns))
        db.connection().executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)


_COPY_NULL = "\\N"
