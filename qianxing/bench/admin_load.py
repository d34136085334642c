"""Bulk loading for the scratch shop of `qianxing bench admin` (qianxing/bench/admin_data.py):
rows go in through `Writer` (COPY on PostgreSQL, executemany on SQLite); the secondary indexes
of the loaded tables are dropped while rows go in and built again from their own definitions
afterwards, and a PostgreSQL superuser may skip the row-by-row foreign-key triggers
(admin_checks.check proves every reference afterwards)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterable, Sequence
from typing import Any

# ---- writing rows -------------------------------------------------------------------------


class Writer:
    """Bulk rows into one table: COPY on PostgreSQL, executemany on SQLite. Values are ints,
    bools, None, datetimes or strings free of tabs, newlines and backslashes."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        self.seconds: dict[str, float] = {}  # spent writing, per table

    def begin(self, *, skip_foreign_keys: bool = False) -> None:
        """Open the transaction now (peewee's pool begins lazily; COPY bypasses it). With
        `skip_foreign_keys` (PostgreSQL superusers only) the rows of this transaction are not
        checked against their foreign keys row by row: `admin_checks.check()` proves them afterwards."""
        from models.db import execute

        if not self.postgres:
            execute("SELECT 1")
            return
        execute("SET LOCAL synchronous_commit TO OFF")
        if skip_foreign_keys:
            execute("SET LOCAL session_replication_role TO replica")

    def rows(self, table: str, columns: Sequence[str], rows: Iterable[tuple]) -> int:
        from models.db import db

        started = time.perf_counter()
        try:
            return self._rows(db, table, columns, rows)
        finally:
            self.seconds[table] = self.seconds.get(table, 0.0) + time.perf_counter() - started

    def _rows(self, db: Any, table: str, columns: Sequence[str], rows: Iterable[tuple]) -> int:
        names = ", ".join(columns)
        if not self.postgres:
            batch = list(rows)
            if batch:
                marks = ", ".join("?" * len(columns))
                db.connection().executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', batch)
            return len(batch)
        line = "\t".join(["%s"] * len(columns)) + "\n"
        out = io.StringIO()
        n = 0
        for row in rows:
            out.write(line % (row if None not in row else tuple("\\N" if v is None else v for v in row)))
            n += 1
        if n:
            out.seek(0)
            with db.connection().cursor() as cur:
                cur.copy_expert(f'COPY "{table}" ({names}) FROM STDIN', out)
        return n


# ---- loading without secondary indexes ------------------------------------------------------

LOADED = ("order", "payment", "refund", "ledger_transaction", "posting", "event")


def secondary_indexes(postgres: bool, tables: Sequence[str]) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the indexes on `tables` that back no constraint (the primary
    keys stay), as the migrations created them."""
    from models.db import execute

    marks = ", ".join(["%s"] * len(tables))
    if postgres:
        return execute(
            "SELECT c.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
            "JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
            "JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = current_schema() "
            f"WHERE t.relname IN ({marks}) AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid) ORDER BY c.relname",
            tuple(tables)).fetchall()
    return execute(f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ({marks}) "
                   "AND sql IS NOT NULL ORDER BY name", tuple(tables)).fetchall()


def drop_indexes(indexes: list[tuple[str, str]]) -> None:
    from models.db import db, execute

    with db.atomic():
        for name, _ in indexes:
            execute(f'DROP INDEX "{name}"')


def create_indexes(postgres: bool, indexes: list[tuple[str, str]]) -> None:
    """Build the dropped indexes again from their own definitions (a sorted build, far cheaper
    than maintaining them row by row; a unique one fails on a duplicate, as the load would)."""
    from models.db import db, execute

    if postgres:
        execute("SET maintenance_work_mem TO '256MB'")
    try:
        for _, ddl in indexes:
            with db.atomic():
                execute(ddl)
    finally:
        if postgres:
            execute("RESET maintenance_work_mem")


def is_superuser(postgres: bool) -> bool:
    from models.db import execute

    return postgres and bool(execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0])


