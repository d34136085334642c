"""Database handle shared by every model, and the few dialect differences we rely on."""

from __future__ import annotations

import datetime as dt
import heapq
import json
import logging
import select
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import peewee as pw
import psycopg2
from playhouse.db_url import connect, parse
from playhouse.pool import PoolConnection, PooledDatabase, PooledPostgresqlDatabase
from psycopg2.extensions import TRANSACTION_STATUS_UNKNOWN

log = logging.getLogger(__name__)
db = pw.DatabaseProxy()
T = TypeVar("T")


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
    stock reservations between processes. Its pragmas are fixed, so a SQLite URL takes no query
    parameters (ValueError). A PostgreSQL URL's query parameters (sslmode, connect_timeout,
    application_name, ...) go to psycopg2 as they are.
    """
    if url.startswith("sqlite:///"):
        params = parse(url)
        extra = sorted(set(params) - {"database"})
        if extra:
            raise ValueError(f"a SQLite DATABASE_URL takes no query parameters (got {', '.join(extra)}): "
                             "its pragmas are fixed (WAL, busy_timeout 30 s, foreign keys)")
        path = Path(params["database"])
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
    """The pool as peewee ships it, with two round trips fewer per transaction, and dead
    connections replaced transparently.

    - No `SELECT 1` on every checkout: a connection that died while idle is detected without a
      round trip (see below).
    - A lazy BEGIN: it travels with the transaction's first statement, and a transaction that
      ran nothing neither begins nor commits.

    Dead connections (the server restarted, `pg_terminate_backend`, a proxy dropped them):
    - An idle connection whose server went away has something to read (the server's FATAL
      message, or end-of-file); a healthy idle one has nothing. Before a statement that opens a
      transaction (or runs on its own) the socket is polled, a local system call of about a
      microsecond, and a dead connection is replaced before anything is sent.
    - The poll can race the server's goodbye. So when the first statement on a connection
      just taken from the pool fails because the connection is gone, and that statement
      opened its transaction (or ran outside any), nothing ran on the server: the connection
      is discarded, a fresh one opened, and the statement runs once more. Idle pooled
      connections that are dead too are dropped at the same moment, so a server restart costs
      one reconnect per connection and never an error.
    - A connection that dies inside an open transaction fails that transaction (the server
      rolled it back; our ROLLBACK is skipped so the original error surfaces, and the dead
      connection never goes back to the pool). `is_connection_lost(exc)` tells such an error
      apart: idempotent work reruns once through `once_more_if_lost` (payment confirmation,
      the login's user lookup), the web app answers anything else 503 with Retry-After.
    """

    def begin(self, isolation_level: Any = None) -> None:
        if isolation_level or self._isolation_level:
            super().begin(isolation_level)
        else:
            self.connection()  # check a connection out now, as the eager BEGIN would have
            self._state.pending_begin = True

    def connect(self, reuse_if_open: bool = False) -> bool:
        opened = super().connect(reuse_if_open)
        if opened:
            self._state.untried = self._state.conn  # nothing has run on it since checkout
        return opened

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        state = self._state
        opens = False
        if getattr(state, "pending_begin", False):
            state.pending_begin = False
            if self.in_transaction():  # never open a transaction nobody will commit
                sql = "BEGIN; " + sql
                opens = True
        # Nothing uncommitted on the server: this statement opens its transaction or runs alone.
        outside = opens or not self.in_transaction()
        conn = self.connection()
        if outside and _gone(conn):
            log.warning("database connection found closed by the server; replacing it")
            conn = self._replace_connection()
        first = outside and getattr(state, "untried", None) is conn
        try:
            cursor = super().execute_sql(sql, params)
        except (pw.OperationalError, pw.InterfaceError):
            if not (first and _dead(conn)):
                raise
            log.warning("database connection closed by the server before its first statement; "
                        "running it again on a new connection")
            self._replace_connection()
            cursor = super().execute_sql(sql, params)
        state.untried = None
        return cursor

    def commit(self) -> None:
        if getattr(self._state, "pending_begin", False):
            self._state.pending_begin = False
            return
        super().commit()

    def rollback(self) -> None:
        if getattr(self._state, "pending_begin", False):
            self._state.pending_begin = False
            return
        conn = self._state.conn
        if conn is not None and _dead(conn):
            return  # the server rolled back when the connection died; keep the original error
        super().rollback()

    def _is_closed(self, conn: Any) -> bool:
        if conn.closed:
            return True
        status = self._adapter.txn_status(conn)
        if status == self._adapter.txn_unknown:
            return True
        if status != self._adapter.txn_idle:
            conn.rollback()
        if _readable(conn):  # the server said goodbye (or hung up) while it sat in the pool
            self._close_raw(conn)
            return True
        return False

    def _replace_connection(self) -> Any:
        """Swap this thread's connection for a brand-new one (never another pooled one, which
        may be dead too), keeping peewee's transaction bookkeeping; drop dead idle ones."""
        dead = self._state.conn
        with self._pool_lock:
            self._in_use.pop(self.conn_key(dead), None)
            idle, self._connections = self._connections, []
            for entry in idle:
                if _gone(entry[2]):
                    self._close_raw(entry[2])
                else:
                    self._connections.append(entry)
            heapq.heapify(self._connections)
        self._close_raw(dead)
        conn = super(PooledDatabase, self)._connect()  # the driver's connect, not the pool's
        now = time.time()
        with self._pool_lock:
            self._in_use[self.conn_key(conn)] = PoolConnection(now, conn, now)
        self._initialize_connection(conn)
        self._state.conn = conn
        self._state.untried = None
        return conn


def _dead(conn: Any) -> bool:
    """psycopg2 marks a connection it lost: closed, or transaction status unknown."""
    try:
        return bool(conn.closed) or conn.get_transaction_status() == TRANSACTION_STATUS_UNKNOWN
    except Exception:  # noqa: BLE001 - a connection that cannot even say is dead
        return True


def _readable(conn: Any) -> bool:
    """An idle connection has nothing to read; the server's goodbye (or EOF) is readable."""
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    except (OSError, ValueError, pw.InterfaceError, psycopg2.InterfaceError):
        return True


def _gone(conn: Any) -> bool:
    return _dead(conn) or _readable(conn)


_LOST_WORDS = ("server closed the connection", "connection already closed",
               "terminating connection", "could not connect", "connection refused",
               "connection to server", "ssl syscall error", "eof detected",
               "no connection to the server", "cannot connect now", "the database system is")


def is_connection_lost(exc: BaseException) -> bool:
    """Whether an error means the database connection was lost or could not be made (as
    opposed to an error in the statement): the caller may answer "try again" instead of 500."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, pw.OperationalError | pw.InterfaceError | psycopg2.OperationalError
                      | psycopg2.InterfaceError):
            text = str(exc).lower()
            if any(word in text for word in _LOST_WORDS):
                return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def _pooled_postgres(url: str) -> pw.Database:
    """The pool for a postgres:// URL: user and password unquoted, the query parameters passed
    to psycopg2.connect (the pool's own max_connections and stale_timeout may be given too)."""
    params = parse(url, unquote_password=True, unquote_user=True)
    return FastPooledPostgres(**{"max_connections": 64, "stale_timeout": 300, **params})


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


def once_more_if_lost(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run fn, and once more (on a fresh connection) if the database connection was lost
    under it, e.g. mid-transaction. Only for idempotent work: the first attempt's transaction
    may, in the rarest case (a reply lost after COMMIT), have been committed."""
    try:
        return fn(*args, **kwargs)
    except (pw.OperationalError, pw.InterfaceError) as exc:
        if not is_connection_lost(exc):
            raise
        log.warning("database connection lost in %s; running it once more",
                    getattr(fn, "__qualname__", fn))
        return fn(*args, **kwargs)


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
