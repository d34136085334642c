"""Risk rules as data (issue 15): the default rule set, validation, versioned edits.

A rule is (code, scope, params, weight, blocking, enabled); the code names the check that
models/risk_scoring.py (order and creator scopes) or models/risk_gate.py (edge scopes) runs,
the params are its thresholds. Scores add up per subject; the outcome of a subject's score:
>= RISK_REVIEW_SCORE review, >= RISK_HOLD_SCORE hold, else allow; a blocking rule of an edge
scope (coupon claim, assist, group join) refuses at the edge whatever its weight.

Every change inserts a new version; the highest version of a code is in force, and hits name
the version that fired, so a rule change never rewrites past decisions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import peewee as pw

from models import events
from models.db import db, utcnow
from models.errors import Conflict, InvalidInput
from models.risk_tables import RiskRule, Scope

SYSTEM = "system:risk"


@dataclass(frozen=True)
class RuleSpec:
    code: str
    scope: Scope
    weight: int
    params: dict[str, Any] = field(default_factory=dict)
    blocking: bool = False
    summary: str = ""  # one line for the admin and the README


# The default rules (seed 001-003). Thresholds are parameters; weights against the default
# RISK_HOLD_SCORE 50 / RISK_REVIEW_SCORE 80.
DEFAULTS: tuple[RuleSpec, ...] = (
    RuleSpec("self_purchase", Scope.ORDER, 0, {"levels": 2},
             summary="买家是卖家或其两级上级（同一用户、unionid、手机号或设备）：该受益人本单无佣金，订单照常"),
    RuleSpec("circular_buying", Scope.ORDER, 50, {"min_orders": 3, "days": 7},
             summary="同一达人两级团队内 7 天 3 笔以上已付订单共用设备、手机号或 IP：佣金冻结"),
    RuleSpec("burst_orders", Scope.ORDER, 50, {"min_orders": 10, "minutes": 10},
             summary="同一 IP 或设备 10 分钟内 10 笔以上订单：冻结"),
    RuleSpec("burst_new_accounts", Scope.ORDER, 50, {"min_accounts": 5, "minutes": 10, "new_hours": 24},
             summary="同一 IP 或设备 10 分钟内 5 个以上新账号下单：冻结"),
    RuleSpec("shared_payer", Scope.ORDER, 50, {"min_accounts": 3, "hours": 24},
             summary="同一付款身份 24 小时内为 3 个以上账号付款：冻结"),
    RuleSpec("new_account_big", Scope.ORDER, 80, {"hours": 24, "min_amount_fen": 50_000},
             summary="注册 24 小时内的新账号单笔 ≥ ¥500：人工审核"),
    RuleSpec("virtual_segment", Scope.ORDER, 20, {"segments": ["170", "171", "162", "165", "167"]},
             summary="虚拟运营商号段：加分，单独不拦截"),
    RuleSpec("refund_abuse", Scope.CREATOR, 50, {"days": 30, "min_orders": 5, "max_refund_rate_bp": 2000},
             summary="达人 30 天内至少 5 单且退款率超过 20%：冻结其佣金"),
    RuleSpec("withdrawal_first", Scope.WITHDRAWAL, 80, {},
             summary="达人首次提现：人工审核"),
    RuleSpec("withdrawal_spike", Scope.WITHDRAWAL, 80, {"multiple": 3, "days": 30},
             summary="提现金额超过其 30 天平均的 3 倍：人工审核"),
    RuleSpec("withdrawal_shared_account", Scope.WITHDRAWAL, 80, {},
             summary="收款账户（unionid 或手机号）与另一位达人相同：人工审核"),
    RuleSpec("coupon_farming", Scope.COUPON_CLAIM, 100, {"max_accounts": 3, "hours": 24}, blocking=True,
             summary="同一设备或 IP 24 小时内 3 个以上账号领取同一张券：拒绝领取"),
    RuleSpec("assist_farming", Scope.ASSIST, 100, {}, blocking=True,
             summary="助力者与发起人共用设备或 IP：不计入"),
    RuleSpec("group_farming", Scope.GROUP_JOIN, 100, {}, blocking=True,
             summary="参团者与团长共用设备或 IP：不计入（拒绝参团）"),
)
BY_CODE: dict[str, RuleSpec] = {spec.code: spec for spec in DEFAULTS}


def seed_defaults(actor: str = SYSTEM) -> int:
    """Insert version 1 of every default rule whose code has no version yet. Returns how many
    were inserted (0 on a database that has them all)."""
    have = {code for (code,) in RiskRule.select(RiskRule.code).distinct().tuples()}
    made = 0
    now = utcnow()
    with db.atomic():
        for spec in DEFAULTS:
            if spec.code in have:
                continue
            RiskRule.insert(code=spec.code, version=1, scope=spec.scope.value,
                            params=json.dumps(spec.params, sort_keys=True), weight=spec.weight,
                            blocking=spec.blocking, enabled=True, created_at=now, created_by=actor,
                            note="default").on_conflict_ignore().execute()
            made += 1
    return made


@dataclass(frozen=True)
class RuleView:
    id: int
    code: str
    version: int
    scope: str
    params: dict[str, Any]
    weight: int
    blocking: bool
    enabled: bool
    created_at: Any = None
    created_by: str = ""
    note: str = ""


def _view(row: RiskRule) -> RuleView:
    return RuleView(id=row.id, code=row.code, version=row.version, scope=row.scope,
                    params=json.loads(row.params or "{}"), weight=row.weight, blocking=row.blocking,
                    enabled=row.enabled, created_at=row.created_at, created_by=row.created_by, note=row.note)


def current(scope: Scope | str | None = None) -> dict[str, RuleView]:
    """code -> the version in force (the highest) of every rule, enabled or not; of one scope
    when given. Callers skip `enabled=False` rules themselves."""
    rows = RiskRule.raw("SELECT r.* FROM risk_rule r WHERE r.version = "
                        "(SELECT MAX(r2.version) FROM risk_rule r2 WHERE r2.code = r.code)")
    found = {row.code: _view(row) for row in rows}
    if scope is not None:
        want = Scope(scope).value
        found = {code: view for code, view in found.items() if view.scope == want}
    return found


# Parameter kinds: allowed integer ranges (inclusive), or the segment list.
_RANGES: dict[str, tuple[int, int]] = {
    "count": (1, 10_000), "minutes": (1, 1440), "hours": (1, 720), "days": (1, 90),
    "amount": (0, 1_000_000_000), "bp": (1, 10_000), "multiple": (1, 100), "levels": (0, 2),
}
_KIND_OF: dict[str, str] = {
    "min_orders": "count", "min_accounts": "count", "max_accounts": "count", "levels": "levels",
    "minutes": "minutes", "hours": "hours", "new_hours": "hours", "days": "days",
    "min_amount_fen": "amount", "max_refund_rate_bp": "bp", "multiple": "multiple", "segments": "segments",
}
EDGE_SCOPES = frozenset({Scope.COUPON_CLAIM.value, Scope.ASSIST.value, Scope.GROUP_JOIN.value})
MAX_WEIGHT = 1000


def validate_params(code: str, params: dict[str, Any]) -> dict[str, Any]:
    """The params of rule `code` checked against its schema (the keys of its default params,
    each of a known kind and range). Returns them normalised; raises InvalidInput
    unknown_rule / invalid_params."""
    spec = BY_CODE.get(code)
    if spec is None:
        raise InvalidInput(f"unknown rule {code!r}", code="unknown_rule")
    if not isinstance(params, dict):
        raise InvalidInput("rule parameters must be an object", code="invalid_params")
    want = set(spec.params)
    if set(params) != want:
        unknown, missing = sorted(set(params) - want), sorted(want - set(params))
        raise InvalidInput(f"rule {code}: unknown parameters {unknown}, missing {missing}", code="invalid_params")
    out: dict[str, Any] = {}
    for key, value in params.items():
        kind = _KIND_OF[key]
        if kind == "segments":
            if (not isinstance(value, list) or not 1 <= len(value) <= 20
                    or any(not isinstance(v, str) or len(v) != 3 or not v.isascii() or not v.isdigit()
                           for v in value)):
                raise InvalidInput(f"rule {code}: segments must be 1 to 20 three-digit number segments",
                                   code="invalid_params")
            out[key] = sorted(set(value))
            continue
        low, high = _RANGES[kind]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidInput(f"rule {code}: {key} must be a whole number from {low} to {high}",
                               code="invalid_params")
        out[key] = value
    return out


def update_rule(code: str, *, actor: str, note: str = "", params: dict[str, Any] | None = None,
                weight: int | None = None, enabled: bool | None = None,
                blocking: bool | None = None) -> RuleView:
    """Insert the next version of `code` with the given fields changed (the rest as in force;
    `params` given are merged over the params in force). Raises InvalidInput: unknown_rule,
    invalid_params (unknown key, negative or absurd value), invalid_weight, not_blockable;
    nothing is written then. Leaves a `risk.rule_changed` event with the versions' fields.
    A change that changes nothing writes nothing and returns the version in force. Raises
    Conflict rule_conflict when another edit of the same rule committed meanwhile."""
    if code not in BY_CODE:
        raise InvalidInput(f"unknown rule {code!r}", code="unknown_rule")
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int)
                               or not 0 <= weight <= MAX_WEIGHT):
        raise InvalidInput(f"weight must be a whole number from 0 to {MAX_WEIGHT}", code="invalid_weight")
    with db.atomic():
        now_in_force = current().get(code)
        if now_in_force is None:
            raise InvalidInput(f"rule {code!r} is not seeded", code="unknown_rule")
        merged = validate_params(code, {**now_in_force.params, **(params or {})})
        new_blocking = now_in_force.blocking if blocking is None else bool(blocking)
        if new_blocking and now_in_force.scope not in EDGE_SCOPES:
            raise InvalidInput(f"rule {code} ({now_in_force.scope}) cannot block: only coupon claims, "
                               "assists and group joins are refused at the edge", code="not_blockable")
        fields = {"params": merged, "weight": now_in_force.weight if weight is None else weight,
                  "enabled": now_in_force.enabled if enabled is None else bool(enabled),
                  "blocking": new_blocking}
        before = {"version": now_in_force.version, "params": now_in_force.params, "weight": now_in_force.weight,
                  "enabled": now_in_force.enabled, "blocking": now_in_force.blocking}
        if all(before[k] == v for k, v in fields.items()):
            return now_in_force
        version = now_in_force.version + 1
        try:
            with db.atomic():
                RiskRule.insert(code=code, version=version, scope=now_in_force.scope,
                                params=json.dumps(merged, sort_keys=True), weight=fields["weight"],
                                blocking=fields["blocking"], enabled=fields["enabled"], created_at=utcnow(),
                                created_by=actor[:64], note=note[:200]).execute()
        except pw.IntegrityError as exc:
            raise Conflict(f"rule {code} was changed meanwhile; reload and try again",
                           code="rule_conflict") from exc
        events.record("risk.rule_changed", f"risk_rule:{code}", actor[:64], note=note[:200],
                      **{"from": before, "to": {"version": version, **fields}})
        return current()[code]


def history(code: str) -> list[RuleView]:
    """Every version of `code`, newest first. Raises InvalidInput unknown_rule."""
    if code not in BY_CODE:
        raise InvalidInput(f"unknown rule {code!r}", code="unknown_rule")
    return [_view(row) for row in RiskRule.select().where(RiskRule.code == code).order_by(RiskRule.version.desc())]
