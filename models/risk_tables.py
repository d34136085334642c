"""The risk engine's tables (issue 15). Rules and services are in models/risk_*.py.

- `RiskSignal`: what an edge saw, one row per event (an order placed, a payment, a coupon claim,
  an assist help, a group join, a withdrawal request, a phone authorization). IPs, device ids,
  phone numbers and payer identities are keyed hashes (HMAC-SHA256 under RISK_HMAC_KEY, 32 hex
  characters); only the coarse parts a rule needs are kept in the clear (the IP's /24 as
  "a.b.c", the phone's three-digit number segment). At most one row per order (`order_id` is
  unique; NULLs are distinct): the payment fills `payer_hash` into the order's row. Rows older
  than RISK_RETENTION_DAYS are pruned by a job.
- `RiskUser`: the stable identity facts of a user (the phone they authorized).
- `RiskRule`: a rule as data. A change inserts a new version (unique code + version); the
  highest version of a code is the one in force; decisions name the version they used.
- `RiskHit`: one rule version firing on one subject, append-only; unique per (subject, rule
  version, period) so a re-run never scores twice. `period` is '' for orders, withdrawals and
  edge checks, and the evaluation day for periodic creator rules.
- `RiskOrderScore`: an order has been scored (primary key = order id): its summed score and
  outcome. Release of commission requires this row (when RISK_ENABLED).
- `RiskCase`: a review case for a subject, at most one open per subject (partial unique index).
  `RiskCaseHit` links the hits that opened or joined it.
- `RiskAllow`: an operator's allowlist entry: a subject skips a rule code until a date.
- `RiskPenalty`: a penalty on a creator (clawback, downgrade, withdrawal suspension), lifted by
  an operator.
"""

from __future__ import annotations

from enum import StrEnum

import peewee as pw

from models.db import BaseModel, utcnow


class Scope(StrEnum):
    ORDER = "order"
    CREATOR = "creator"
    WITHDRAWAL = "withdrawal"
    COUPON_CLAIM = "coupon_claim"
    ASSIST = "assist"
    GROUP_JOIN = "group_join"


class Outcome(StrEnum):
    ALLOW = "allow"
    HOLD = "hold"  # commission stays pending; nothing reversed
    REVIEW = "review"  # a case in the queue; money waits
    BLOCK = "block"  # refused at the edge (blocking rules of edge scopes only)


class SignalEvent(StrEnum):
    ORDER = "order"
    PAYMENT = "payment"
    CLAIM = "claim"
    ASSIST = "assist"
    GROUP_JOIN = "group_join"
    WITHDRAWAL = "withdrawal"
    PHONE = "phone"


class CaseState(StrEnum):
    OPEN = "open"
    CLEARED = "cleared"
    CONFIRMED = "confirmed"
    ALLOWLISTED = "allowlisted"


class PenaltyKind(StrEnum):
    CLAWBACK = "clawback"
    DOWNGRADE = "downgrade"
    SUSPEND_WITHDRAWALS = "suspend_withdrawals"


class RiskSignal(BaseModel):
    at = pw.DateTimeField(default=utcnow, index=True)
    event = pw.CharField(max_length=12)
    user_id = pw.BigIntegerField(null=True)
    order_id = pw.BigIntegerField(null=True, unique=True)
    ref = pw.CharField(max_length=64, null=True)  # coupon:<id>, assist:<id>, team:<id>, withdrawal:<id>
    ip_hash = pw.CharField(max_length=32, null=True)
    ip_net = pw.CharField(max_length=24, null=True)  # the /24 ("a.b.c") or an IPv6 /48
    device_hash = pw.CharField(max_length=32, null=True)
    payer_hash = pw.CharField(max_length=32, null=True)

    class Meta:
        table_name = "risk_signal"
        # (hash, at) windows for the rules; user_id and order_id ride along so the scorer's
        # reads of who used a key, and when, are index-only (models/risk_order_rules.py)
        indexes = ((("ip_hash", "at", "user_id", "order_id"), False),
                   (("device_hash", "at", "user_id", "order_id"), False),
                   (("user_id", "at"), False), (("payer_hash", "at", "user_id", "order_id"), False))


class RiskUser(BaseModel):
    user_id = pw.BigIntegerField(primary_key=True)
    phone_hash = pw.CharField(max_length=32, null=True, index=True)
    phone_seg = pw.CharField(max_length=4, null=True)
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "risk_user"


class RiskRule(BaseModel):
    code = pw.CharField(max_length=32)
    version = pw.IntegerField()
    scope = pw.CharField(max_length=16)
    params = pw.TextField(default="{}")  # a JSON object, validated by models/risk_rules.py
    weight = pw.IntegerField()
    blocking = pw.BooleanField(default=False)
    enabled = pw.BooleanField(default=True)
    created_at = pw.DateTimeField(default=utcnow)
    created_by = pw.CharField(max_length=64)
    note = pw.CharField(max_length=200, default="")

    class Meta:
        table_name = "risk_rule"
        indexes = ((("code", "version"), True),)


class RiskHit(BaseModel):
    subject_kind = pw.CharField(max_length=12)  # order | creator | withdrawal | user
    subject_id = pw.BigIntegerField()
    rule_id = pw.BigIntegerField()  # the RiskRule row (one version)
    code = pw.CharField(max_length=32)
    weight = pw.IntegerField()
    period = pw.CharField(max_length=10, default="")
    creator_id = pw.BigIntegerField(null=True)  # the creator concerned (a beneficiary, a subject)
    evidence = pw.TextField(default="{}")  # JSON: linked orders, users, hashed identities
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "risk_hit"
        indexes = ((("subject_kind", "subject_id", "rule_id", "period"), True),
                   (("created_at",), False))


class RiskOrderScore(BaseModel):
    order_id = pw.BigIntegerField(primary_key=True)
    score = pw.IntegerField()
    outcome = pw.CharField(max_length=8)
    scored_at = pw.DateTimeField()

    class Meta:
        table_name = "risk_order_score"


class RiskCase(BaseModel):
    subject_kind = pw.CharField(max_length=12)
    subject_id = pw.BigIntegerField()
    creator_id = pw.BigIntegerField(null=True, index=True)
    state = pw.CharField(max_length=12, default=CaseState.OPEN.value)
    outcome = pw.CharField(max_length=8, default="hold")  # the gravest item's: hold | review
    score = pw.IntegerField(default=0)
    held_fen = pw.BigIntegerField(default=0)  # commission waiting on this case when opened
    assignee = pw.CharField(max_length=64, null=True)
    opened_at = pw.DateTimeField(default=utcnow, index=True)
    updated_at = pw.DateTimeField(default=utcnow)
    decided_by = pw.CharField(max_length=64, null=True)
    decided_at = pw.DateTimeField(null=True)
    decision_note = pw.CharField(max_length=500, default="")

    class Meta:
        table_name = "risk_case"
        indexes = ((("state", "opened_at"), False),)


class RiskCaseHit(BaseModel):
    case_id = pw.BigIntegerField()
    hit_id = pw.BigIntegerField()

    class Meta:
        table_name = "risk_case_hit"
        primary_key = pw.CompositeKey("case_id", "hit_id")


class RiskAllow(BaseModel):
    subject_kind = pw.CharField(max_length=12)
    subject_id = pw.BigIntegerField()
    rule_code = pw.CharField(max_length=32)
    until = pw.DateTimeField()
    reason = pw.CharField(max_length=200)
    created_by = pw.CharField(max_length=64)
    created_at = pw.DateTimeField(default=utcnow)
    revoked_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "risk_allow"
        indexes = ((("subject_kind", "subject_id", "rule_code"), False),)


class RiskPenalty(BaseModel):
    creator_id = pw.BigIntegerField(index=True)
    kind = pw.CharField(max_length=24)
    case_id = pw.BigIntegerField(null=True)
    detail = pw.TextField(default="{}")  # JSON: levels / floor rank, clawed orders and fen
    until = pw.DateTimeField(null=True)  # suspensions end here (None: until lifted)
    reason = pw.CharField(max_length=200)
    created_by = pw.CharField(max_length=64)
    created_at = pw.DateTimeField(default=utcnow)
    lifted_by = pw.CharField(max_length=64, null=True)
    lifted_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "risk_penalty"


TABLES: list[type[pw.Model]] = [RiskSignal, RiskUser, RiskRule, RiskHit, RiskOrderScore, RiskCase,
                                RiskCaseHit, RiskAllow, RiskPenalty]

# One open case per subject (PostgreSQL and SQLite both take a partial unique index).
OPEN_CASE_INDEX = ("CREATE UNIQUE INDEX IF NOT EXISTS risk_case_open_subject ON risk_case "
                   "(subject_kind, subject_id) WHERE state = 'open'")
