"""Issue 15: the risk engine.

New tables (models/risk_tables.py): risk_signal, risk_user, risk_rule, risk_hit,
risk_order_score, risk_case, risk_case_hit, risk_allow, risk_penalty; the partial unique index
that keeps one open case per subject; the default rules (models/risk_rules.py `seed_defaults`,
version 1 of each code, inserted only where the code has no version yet); a partial index on
"user".unionid.
"""

from __future__ import annotations

import peewee as pw

from models import risk_tables

TABLES: list[type[pw.Model]] = list(risk_tables.TABLES)


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
    db.execute_sql(risk_tables.OPEN_CASE_INDEX)
    # payout identities shared between creators are found by unionid (models/risk_withdrawal_checks.py)
    db.execute_sql('CREATE INDEX IF NOT EXISTS user_unionid ON "user" (unionid) WHERE unionid IS NOT NULL')
    from models import risk_rules

    risk_rules.seed_defaults()
