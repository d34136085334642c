"""Hints for the creator during a live session, from rules kept as data.

Rules are rows (`live_hint_rule`, defaults seeded where none exist; an operator edits thresholds
and texts and switches them on or off in the admin). Two kinds:
- `metric`: a figure of the dashboard snapshot compared with a threshold, holding for `for_s`
  seconds: {metric: conversion_bp, op: "<", threshold: 200, for_s: 300, min_viewers: 10,
  text: "转化率偏低，建议上架福利品"}. "Holding for 5 minutes" is read from the samples the
  dashboard keeps in Redis (one per LIVE_DASHBOARD_SAMPLE_S): every sample of the last `for_s`
  seconds, and the figure now, meet the condition, and the samples reach back that far.
- `before_slot`: `lead_s` seconds before a pinned product's planned slot (LivePin.slot_at):
  {lead_s: 300, text: "剩余{minutes}分钟上架{product}"}.

The hook: `PROVIDERS` is the list of hint providers, each a function HintContext -> list[Hint].
`rule_hints` (the rows above) is the first; the model-backed provider of the content issue is
appended to it by its wiring (`register_provider`) and gets the same context. A provider that
fails is logged and skipped: a hint never breaks the dashboard.
"""

from __future__ import annotations

import datetime as dt
import logging
import operator
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import peewee as pw

from models.db import BaseModel, utcnow
from models.errors import InvalidInput, NotFound

log = logging.getLogger(__name__)

METRICS = ("conversion_bp", "online", "unique_viewers", "orders", "gmv_fen", "buyers", "turnup_bp")
OPS: dict[str, Callable[[int, int], bool]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                              ">=": operator.ge}
KINDS = ("metric", "before_slot")
MAX_WINDOW_S = 3600  # no rule looks back further than the kept history can
TEXT_MAX = 120
SLOT_FIELDS = {"minutes", "product"}


class LiveHintRule(BaseModel):
    code = pw.CharField(max_length=40, unique=True)
    kind = pw.CharField(max_length=12)  # metric | before_slot
    metric = pw.CharField(max_length=20, default="")
    op = pw.CharField(max_length=2, default="<")
    threshold = pw.BigIntegerField(default=0)  # in the metric's unit (basis points, fen, people)
    for_s = pw.IntegerField(default=0)
    min_viewers = pw.IntegerField(default=0)  # unique viewers needed before the rule speaks
    lead_s = pw.IntegerField(default=0)
    text = pw.CharField(max_length=TEXT_MAX)
    enabled = pw.BooleanField(default=True)
    position = pw.IntegerField(default=0)
    updated_at = pw.DateTimeField(default=utcnow)


DEFAULT_RULES: tuple[dict[str, Any], ...] = (
    {"code": "low_conversion", "kind": "metric", "metric": "conversion_bp", "op": "<", "threshold": 200,
     "for_s": 300, "min_viewers": 20, "text": "转化率偏低，建议上架福利品", "position": 1},
    {"code": "slot_soon", "kind": "before_slot", "lead_s": 300, "text": "剩余{minutes}分钟上架{product}",
     "position": 2},
    {"code": "crowd_no_orders", "kind": "metric", "metric": "orders", "op": "<", "threshold": 1, "for_s": 600,
     "min_viewers": 50, "text": "已有不少观众但还没有成交，试试讲解福利款或发起投票", "position": 3},
)


def seed_defaults() -> int:
    """Write the default rules where none exist; returns the rows written."""
    if LiveHintRule.select().exists():
        return 0
    LiveHintRule.insert_many([{**r, "updated_at": utcnow()} for r in DEFAULT_RULES]).execute()
    return len(DEFAULT_RULES)


def rules(*, enabled_only: bool = True) -> list[LiveHintRule]:
    """The rules in order; the defaults are seeded where none exist (one query otherwise)."""
    found = list(LiveHintRule.select().order_by(LiveHintRule.position, LiveHintRule.id))
    if not found and seed_defaults():
        found = list(LiveHintRule.select().order_by(LiveHintRule.position, LiveHintRule.id))
    return [r for r in found if r.enabled] if enabled_only else found


def check_rule(values: dict[str, Any]) -> dict[str, Any]:
    """A rule's fields validated (the admin's form). Raises InvalidInput (invalid_hint_rule)."""
    kind = values.get("kind")
    text = " ".join(str(values.get("text") or "").split())
    if kind not in KINDS:
        raise InvalidInput("规则类型只能是 metric 或 before_slot", code="invalid_hint_rule")
    if not text or len(text) > TEXT_MAX:
        raise InvalidInput(f"提示文字需要 1-{TEXT_MAX} 个字", code="invalid_hint_rule")
    numbers = {}
    for name in ("threshold", "for_s", "min_viewers", "lead_s"):
        raw = values.get(name, 0)
        try:
            numbers[name] = int(raw or 0)
        except (TypeError, ValueError):
            raise InvalidInput(f"{name} 必须是整数", code="invalid_hint_rule") from None
        if numbers[name] < 0 or numbers[name] > 10**12:
            raise InvalidInput(f"{name} 超出范围", code="invalid_hint_rule")
    if numbers["for_s"] > MAX_WINDOW_S or numbers["lead_s"] > MAX_WINDOW_S:
        raise InvalidInput(f"持续时间和提前量最多 {MAX_WINDOW_S} 秒", code="invalid_hint_rule")
    out = {"kind": kind, "text": text, **numbers, "metric": "", "op": "<"}
    if kind == "metric":
        if values.get("metric") not in METRICS or values.get("op") not in OPS:
            raise InvalidInput("指标或比较符无效", code="invalid_hint_rule")
        out.update(metric=values["metric"], op=values["op"])
    else:
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
        if not fields <= SLOT_FIELDS or not numbers["lead_s"]:
            raise InvalidInput("上架提醒需要提前量，文字只能使用 {minutes} 和 {product}", code="invalid_hint_rule")
    return out


@dataclass(frozen=True)
class Slot:
    product: str
    slot_at: dt.datetime  # naive UTC


@dataclass(frozen=True)
class HintContext:
    """What a provider sees: the snapshot now (models.live_dashboard.snapshot), the kept samples
    (oldest first, each {"t": epoch seconds, figures...}) and the planned product slots."""

    session_id: int
    now: dt.datetime
    snapshot: dict[str, Any]
    history: list[dict[str, Any]]
    slots: list[Slot] = field(default_factory=list)


@dataclass(frozen=True)
class Hint:
    code: str
    text: str
    source: str = "rule"  # rule | model

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "text": self.text, "source": self.source}


Provider = Callable[[HintContext], list[Hint]]


def _holds(rule: LiveHintRule, ctx: HintContext) -> bool:
    """The condition is met now and by every sample since a sample at least `for_s` old."""
    compare = OPS.get(rule.op)
    if compare is None or rule.metric not in METRICS:
        return False
    if ctx.snapshot.get("unique_viewers", 0) < rule.min_viewers:
        return False
    if not compare(int(ctx.snapshot.get(rule.metric, 0)), rule.threshold):
        return False
    if rule.for_s <= 0:
        return True
    since = None  # when the condition started holding without a break
    for point in sorted(ctx.history, key=lambda p: p.get("t", 0)):
        met = compare(int(point.get(rule.metric, 0)), rule.threshold)
        since = (point.get("t", 0) if since is None else since) if met else None
    now = ctx.now.replace(tzinfo=dt.UTC).timestamp()
    return since is not None and now - since >= rule.for_s


def _slot_hints(rule: LiveHintRule, ctx: HintContext) -> list[Hint]:
    found = []
    for slot in ctx.slots:
        left = (slot.slot_at - ctx.now).total_seconds()
        if 0 < left <= rule.lead_s:
            minutes = max(1, int(left + 59) // 60)
            try:
                text = rule.text.format(minutes=minutes, product=slot.product)
            except (KeyError, IndexError, ValueError):
                text = rule.text
            found.append(Hint(f"{rule.code}:{slot.product}", text))
    return found


def rule_hints(ctx: HintContext) -> list[Hint]:
    """The enabled rule rows against the context."""
    found: list[Hint] = []
    for rule in rules():
        if rule.kind == "metric":
            if _holds(rule, ctx):
                found.append(Hint(rule.code, rule.text))
        elif rule.kind == "before_slot":
            found += _slot_hints(rule, ctx)
    return found


PROVIDERS: list[Provider] = [rule_hints]


def register_provider(provider: Provider) -> None:
    """Add a hint provider (the content issue's model-backed one), once."""
    if provider not in PROVIDERS:
        PROVIDERS.append(provider)


def hints_for(ctx: HintContext) -> list[Hint]:
    """Every provider's hints, in provider order, without repeats of a code."""
    found, seen = [], set()
    for provider in list(PROVIDERS):
        try:
            hints = provider(ctx)
        except Exception:  # noqa: BLE001 - a broken provider must not break the dashboard
            log.exception("hint provider %r failed", getattr(provider, "__name__", provider))
            continue
        for hint in hints:
            if hint.code not in seen:
                seen.add(hint.code)
                found.append(hint)
    return found


def rule_fields(rule: LiveHintRule) -> dict[str, Any]:
    return {"kind": rule.kind, "metric": rule.metric, "op": rule.op, "threshold": rule.threshold,
            "for_s": rule.for_s, "min_viewers": rule.min_viewers, "lead_s": rule.lead_s, "text": rule.text,
            "enabled": rule.enabled}


def update_rule(rule_id: int, values: dict[str, Any], *, enabled: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Change a rule (an operator's form, in the caller's transaction): the fields are
    validated first (check_rule; the kind stays), nothing is written on an error. Returns
    (before, after). Raises NotFound (hint_rule_not_found), InvalidInput (invalid_hint_rule)."""
    rule = LiveHintRule.get_or_none(LiveHintRule.id == rule_id)
    if rule is None:
        raise NotFound(f"hint rule {rule_id} not found", code="hint_rule_not_found")
    checked = check_rule({**values, "kind": rule.kind})
    before = rule_fields(rule)
    LiveHintRule.update(**checked, enabled=enabled, updated_at=utcnow()).where(LiveHintRule.id == rule_id).execute()
    return before, rule_fields(LiveHintRule.get_by_id(rule_id))
