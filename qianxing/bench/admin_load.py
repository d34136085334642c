"""Bulk loading for the scratch shop of `qianxing bench admin` (qianxing/bench/admin_data.py):
the secondary indexes of the loaded tables are dropped while rows go in and built again from
their own definitions afterwards, and a PostgreSQL superuser may skip the row-by-row foreign-key
triggers (admin_checks.check proves every reference afterwards)."""

from __future__ import annotations

from collections.abc import Sequence

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


