"""Operators of the admin and the append-only audit log of what they do."""

from __future__ import annotations

import peewee as pw

from models.audit import APPEND_ONLY_TABLES, AuditEntry
from models.operators import Operator

TABLES = [Operator, AuditEntry]


def _postgres(db: pw.Database) -> bool:
    return isinstance(db.obj if isinstance(db, pw.DatabaseProxy) else db, pw.PostgresqlDatabase)


def install_audit_triggers(db: pw.Database) -> None:
    """Refuse UPDATE and DELETE on the audit log, as on the ledger."""
    if _postgres(db):
        db.execute_sql("CREATE OR REPLACE FUNCTION qx_audit_append_only() RETURNS trigger AS $$ BEGIN "
                       "RAISE EXCEPTION 'audit rows are append-only'; END; $$ LANGUAGE plpgsql")
    for table in APPEND_ONLY_TABLES:
        if _postgres(db):
            db.execute_sql(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            db.execute_sql(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                           "FOR EACH ROW EXECUTE FUNCTION qx_audit_append_only()")
        else:
            for op in ("UPDATE", "DELETE"):
                db.execute_sql(f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} "
                               f"ON {table} BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END")


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
    install_audit_triggers(db)
