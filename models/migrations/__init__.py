"""Versioned schema migrations, the same on SQLite and PostgreSQL.

Each migration is a module `mNNNN_name.py` with `def up(db) -> None`. Applied versions are
recorded in `schema_migration`; `migrate()` applies the missing ones in order, each in its own
transaction, under an advisory lock on PostgreSQL so concurrent deploys do not race.

Migration 1 creates the tables from the model classes as they stood then; later migrations
change the schema with `playhouse.migrate` and must check what exists (db.get_columns), since a
fresh database gets every table from migration 1's model classes as they are now.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

import peewee as pw

from models.db import BaseModel, db, is_postgres, utcnow

_LOCK_ID = 742011  # arbitrary constant for pg_advisory_lock


class SchemaMigration(BaseModel):
    version = pw.IntegerField(primary_key=True)
    name = pw.CharField(max_length=100)
    applied_at = pw.DateTimeField(default=utcnow)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    module: str


def available() -> list[Migration]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("m") and info.name[1:5].isdigit():
            found.append(Migration(int(info.name[1:5]), info.name[6:], f"{__name__}.{info.name}"))
    return sorted(found, key=lambda m: m.version)


def applied() -> set[int]:
    if not db.table_exists(SchemaMigration._meta.table_name):
        return set()
    return {m.version for m in SchemaMigration.select(SchemaMigration.version)}


def migrate() -> list[str]:
    """Apply pending migrations; returns the names applied."""
    done: list[str] = []
    with db.connection_context():
        if is_postgres():
            db.execute_sql("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            db.create_tables([SchemaMigration], safe=True)
            have = applied()
            for m in available():
                if m.version in have:
                    continue
                module = importlib.import_module(m.module)
                with db.atomic():
                    module.up(db)
                    SchemaMigration.create(version=m.version, name=m.name)
                done.append(f"{m.version:04d}_{m.name}")
        finally:
            if is_postgres():
                db.execute_sql("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return done


def pending() -> list[Migration]:
    have = applied()
    return [m for m in available() if m.version not in have]
