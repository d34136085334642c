"""Database handle shared by every model, and the few dialect differences we rely on."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import peewee as pw
from playhouse.db_url import connect
from playhouse.pool import PooledPostgresqlDatabase

db = pw.DatabaseProxy()


def utcnow() -> dt.datetime:
    """Naive UTC timestamps everywhere, so SQLite and PostgreSQL compare the same way."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class BaseModel(pw.Model):
    class Meta:
        database = db
        legacy_table_names = False


def open_database(url: str) -> pw.Database:
    """Create the database for a URL and bind the proxy to it.

    SQLite runs in WAL mode with a long busy timeout, and every transaction starts IMMEDIATE:
    SQLite has no SELECT ... FOR UPDATE, so taking the write lock up front is what serialises
    stock reservations between processes.
    """
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        database: pw.Database = pw.SqliteDatabase(
            str(path),
            pragmas={
                "journal_mode": "wal",
                "busy_timeout": 30000,
                "foreign_keys": 1,
                "synchronous": "normal",
            },
            timeout=30,
            lock_type="IMMEDIATE",
            check_same_thread=False,
        )
    elif url.startswith(("postgres://", "postgresql://")):
        database = _pooled_postgres(url)
    else:
        database = connect(url)
    db.initialize(database)
    return database


class FastPooledPostgres(PooledPostgresqlDatabase):
    """The pool as peewee ships it, with two round trips fewer per transaction.

    - No `SELECT 1` on every checkout: a connection that died while idle is detected by
      psycopg2's own status, and one that dies mid-request fails that request cleanly.
    - A lazy BEGIN: it travels with the transaction's first statement, and a transaction that
      ran nothing neither begins nor commits.
    """

    def begin(self, isolation_level: Any = None) -> None:
        if isolation_level or self._isolation_level:
            super().begin(isolation_level)
        else:
            self.connection()  # check a connection out now, as the eager BEGIN would have
            self._state.pending_begin = True

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        if getattr(self._state, "pending_begin", False):
            self._state.pending_begin = False
            if self.in_transaction():  # never open a transaction nobody will commit
                sql = "BEGIN; " + sql
        return super().execute_sql(sql, params)

    def commit(self) -> None:
        if getattr(self._state, "pending_begin", False):
            self._state.pending_begin = False
            return
        super().commit()

    def rollback(self) -> None:
        if getattr(self._state, "pending_begin", False):
            self._state.pending_begin = False
            return
        super().rollback()

    def _is_closed(self, conn: Any) -> bool:
        if conn.closed:
            return True
        status = self._adapter.txn_status(conn)
        if status == self._adapter.txn_unknown:
            return True
        if status != self._adapter.txn_idle:
            conn.rollback()
        return False


def _pooled_postgres(url: str) -> pw.Database:
    from urllib.parse import unquote, urlparse

    parsed = urlparse(url)
    return FastPooledPostgres(
        parsed.path.lstrip("/"), user=unquote(parsed.username or "") or None,
        password=unquote(parsed.password or "") or None, host=parsed.hostname,
        port=parsed.port, max_connections=64, stale_timeout=300,
    )


def execute(sql: str, params: tuple | list = ()) -> Any:
    """Raw SQL for the few hot paths (order placement, payment confirmation), written with %s
    placeholders; peewee's query builder costs more CPU than the database round trip there."""
    if not is_postgres():
        sql = sql.replace("%s", "?")
    return db.execute_sql(sql, params)


def execute_batch(statements: list[tuple[str, tuple | list]]) -> Any:
    """Run statements in order and return the cursor of the last one. On PostgreSQL they go
    to the server as one string, one round trip (psycopg2 interpolates parameters on the
    client, so this is exactly what separate calls would send); on SQLite one by one."""
    if not is_postgres():
        cursor = None
        for sql, params in statements:
            cursor = execute(sql, params)
        return cursor
    cursor = db.cursor()
    joined = b"; ".join(cursor.mogrify(sql, params) for sql, params in statements)
    # The joined text is final: escape % so the driver's (empty) formatting pass keeps it.
    return db.execute_sql(joined.decode().replace("%", "%%"), ())


def placeholders(values: list | tuple) -> str:
    """`%s, %s, ...` for an IN list of raw SQL."""
    return ", ".join(["%s"] * len(values))


def for_update(clause: str = "FOR UPDATE") -> str:
    """A row-locking clause for raw SQL on PostgreSQL; nothing on SQLite (IMMEDIATE)."""
    return f" {clause}" if is_postgres() else ""


def is_postgres() -> bool:
    return isinstance(db.obj, pw.PostgresqlDatabase)


def lock_rows(query: pw.ModelSelect) -> pw.ModelSelect:
    """SELECT ... FOR UPDATE on PostgreSQL; SQLite already holds the write lock (IMMEDIATE)."""
    return query.for_update() if is_postgres() else query


@contextmanager
def connection() -> Iterator[None]:
    """Open (or reuse) this thread's connection and give it back afterwards."""
    with db.connection_context():
        yield


class JSONText(pw.TextField):
    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)

    def python_value(self, value: Any) -> Any:
        return None if value is None else json.loads(value)
