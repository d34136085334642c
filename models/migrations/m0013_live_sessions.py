"""Scheduled live sessions (issue 13): the live_session columns for scheduling (planned start,
expected length, cover, cancellation, plan version), started_at nullable (a scheduled session
has not started), and the pinned products of a session (live_pin).

A fresh database already has the columns (migration 4 builds live_session from today's model
class), so columns are only added where missing.
"""

from __future__ import annotations

import peewee as pw
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, migrate

from models.live import LivePin, LiveSession

TABLES: list[type[pw.Model]] = [LivePin]

NEW_COLUMNS = ("scheduled_at", "expected_minutes", "cover_url", "cancelled_at", "plan_version", "updated_at")


def _postgres(db: pw.Database) -> bool:
    return isinstance(db.obj if isinstance(db, pw.DatabaseProxy) else db, pw.PostgresqlDatabase)


def up(db: pw.Database) -> None:
    postgres = _postgres(db)
    migrator = PostgresqlMigrator(db) if postgres else SqliteMigrator(db)
    table = LiveSession._meta.table_name
    columns = {c.name: c for c in db.get_columns(table)}
    operations = [migrator.add_column(table, name, LiveSession._meta.fields[name])
                  for name in NEW_COLUMNS if name not in columns]
    if not columns["started_at"].null:
        operations.append(migrator.drop_not_null(table, "started_at"))
    migrate(*operations)
    if postgres:  # 'cancelled' needs 10 characters (SQLite ignores lengths)
        db.execute_sql(f"ALTER TABLE {table} ALTER COLUMN state TYPE varchar(10)")
    db.execute_sql(f"CREATE INDEX IF NOT EXISTS livesession_state_scheduled_at ON {table} (state, scheduled_at)")
    db.create_tables(TABLES, safe=True)
