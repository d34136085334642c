"""The audit log: every operator action as one append-only row.

Who (operator, role), what (action, object), the state before and after, the reason given, from
where (IP) and when. Rows are never updated or deleted: migration 0008 installs triggers that
refuse it on SQLite and PostgreSQL, like the ledger's. Logins, failures and logouts are rows too.

`request_key` is unique: an admin action carries a one-time token from the form that rendered
it, so a double-submitted POST (two tabs, a browser retry) finds its audit row already written
and acts once (miniapp_api/admin/actions.py).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import peewee as pw

from models.db import BaseModel, JSONText, utcnow

APPEND_ONLY_TABLES = ("audit_entry",)


class AuditEntry(BaseModel):
    operator_id = pw.BigIntegerField(null=True, index=True)  # None: a login for an unknown name
    operator_name = pw.CharField(max_length=64)
    role = pw.CharField(max_length=16, default="")
    action = pw.CharField(max_length=64, index=True)  # e.g. order.refund, auth.login_failed
    object = pw.CharField(max_length=96, default="", index=True)  # e.g. order:42, sku:RECHARGE-50
    before = JSONText(null=True)
    after = JSONText(null=True)
    reason = pw.CharField(max_length=500, default="")
    ip = pw.CharField(max_length=64, default="")
    request_key = pw.CharField(max_length=64, null=True, unique=True)
    created_at = pw.DateTimeField(default=utcnow, index=True)


def _plain(value: Any) -> Any:
    """JSON-safe copy of a before/after snapshot (dates as ISO strings)."""
    if value is None:
        return None
    return json.loads(json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, dt.date) else str(v)))


def record(*, operator_id: int | None, operator_name: str, role: str, action: str, object: str = "",  # noqa: A002
           before: Any = None, after: Any = None, reason: str = "", ip: str = "",
           request_key: str | None = None) -> AuditEntry:
    """Write one audit row inside the caller's transaction."""
    return AuditEntry.create(operator_id=operator_id, operator_name=operator_name[:64], role=role,
                             action=action, object=object[:96], before=_plain(before), after=_plain(after),
                             reason=reason[:500], ip=ip[:64], request_key=request_key)


def already_done(request_key: str) -> AuditEntry | None:
    return AuditEntry.get_or_none(AuditEntry.request_key == request_key)
