"""Reading the risk pages' forms into the services' arguments (the assignee, a confirmation's
penalty, an allowlist's end date and rule codes, a rule's new parameters and weight), the
operator-language sentence of every refusal, and the short texts the pages show for evidence.
Nothing here decides a rule: models/risk_cases.py, models/risk_penalties.py and
models/risk_rules.py validate and refuse."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

from flask import request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from models.activity import EXPORT_TIMEZONE
from models.errors import DomainError, InvalidInput
from models.operators import Operator
from models.risk_cases import PenaltySpec

PARAMS_MAX = 4000  # characters of a rule's params JSON
NOTE_MAX = 500
CATEGORY = _l("风控")  # the admin menu of every risk page
DECIDE = "risk.decide"  # assign, clear, confirm, allowlist, lift, revoke

# The services' refusals in the operator's language, by error code.
MESSAGES = {
    "case_not_found": _l("风控案件不存在"),
    "case_decided": _l("这个案件已经处理过了，不能重复处理"),
    "note_required": _l("请填写处理说明"),
    "reason_required": _l("请填写原因（至少 2 个字）"),
    "invalid_penalty": _l("处罚设置无效：降级层数、降到的星级和暂停提现天数都必须是合理的正整数"),
    "until_required": _l("请填写白名单的截止日期（必须晚于今天）"),
    "invalid_until": _l("截止日期格式无效，请用 年-月-日"),
    "unknown_rule": _l("没有这条风控规则"),
    "codes_required": _l("请至少选择一条规则"),
    "until_too_far": _l("白名单最长一年"),
    "note_too_long": _l("处理说明最多 500 字"),
    "allow_not_found": _l("白名单记录不存在"),
    "allow_revoked": _l("这条白名单已经撤销"),
    "penalty_not_found": _l("处罚记录不存在"),
    "penalty_lifted": _l("这项处罚已经解除或已到期"),
    "penalty_not_liftable": _l("追回佣金是已完成的资金记录，不能解除"),
    "rule_conflict": _l("这条规则刚被其他人修改过，请刷新后重试"),
    "unknown_operator": _l("没有这位在职的操作员"),
    "invalid_json": _l("参数必须是一个 JSON 对象，例如 {\"min_orders\": 3}"),
    "invalid_params": _l("参数无效：参数名必须与默认一致，数值不能为负，时间窗口必须在合理范围内"),
    "invalid_weight": _l("权重必须是 0 到 1000 之间的整数"),
    "not_blockable": _l("只有领券、助力、参团规则可以设为拦截"),
    "missing_action_token": _l("表单缺少一次性令牌，请刷新页面后重试"),
}
OUTCOME_LABELS = {"allow": _l("放行"), "hold": _l("冻结"), "review": _l("人工审核"), "block": _l("拦截")}
STATE_LABELS = {"open": _l("待处理"), "cleared": _l("已放行"), "confirmed": _l("已确认违规"),
                "allowlisted": _l("已加白名单")}
SCOPE_LABELS = {"order": _l("订单"), "creator": _l("达人"), "withdrawal": _l("提现"), "coupon_claim": _l("领券"),
                "assist": _l("助力"), "group_join": _l("参团")}
PENALTY_LABELS = {"clawback": _l("追回佣金"), "downgrade": _l("降级"), "suspend_withdrawals": _l("暂停提现")}
IDENTITY_LABELS = {"ip_net": _l("IP 段 /24"), "ip": _l("IP（/24 段）"), "device": _l("设备"), "phone": _l("手机号"),
                   "payer": _l("付款身份"), "account": _l("收款账户")}
NODE_LABELS = {"creator": _l("达人"), "buyer": _l("买家"), "user": _l("用户"), "order": _l("订单"),
               "ip_net": _l("IP 段"), "ip": _l("IP"), "device": _l("设备"), "phone": _l("手机号"),
               "payer": _l("付款身份"), "withdrawal": _l("提现")}
WITHDRAWAL_LABELS = {"review": _l("待审核"), "approved": _l("已批准待打款"), "paying": _l("打款中"),
                     "paid": _l("已打款"), "failed": _l("打款失败"), "rejected": _l("已驳回")}
BLOCKABLE_SCOPES = frozenset({"coupon_claim", "assist", "group_join"})


class FormError(InvalidInput):
    """A typed value that cannot be read (its sentence is in MESSAGES under `code`)."""


def message_of(exc: DomainError) -> str:
    """A refusal as a sentence in the operator's language (the service's own text when unknown)."""
    known = MESSAGES.get(exc.code)
    return str(known) if known is not None else exc.message


def status_of(exc: DomainError) -> int:
    return exc.status if exc.status in (403, 404, 409) else 400


def text(name: str, limit: int = NOTE_MAX) -> str:
    return " ".join((request.form.get(name) or "").split())[:limit]


def assignee(me: str) -> str | None:
    """The assign form: `to` = me | none | name (then `name`, an active operator)."""
    to = request.form.get("to") or "me"
    if to == "me":
        return me
    if to == "none":
        return None
    name = text("name", 64)
    if not name or Operator.get_or_none((Operator.name == name) & (Operator.active == True)) is None:  # noqa: E712
        raise FormError(f"no active operator {name!r}", code="unknown_operator")
    return name


def _count(name: str) -> int | None:
    raw = (request.form.get(name) or "").strip()
    if not raw:
        return None
    if not raw.lstrip("-").isdigit() or len(raw) > 6:
        raise FormError(f"{name}: not a whole number", code="invalid_penalty")
    return int(raw)


def penalty() -> PenaltySpec | None:
    """The confirm form's optional penalty; None when every field is empty."""
    spec = PenaltySpec(downgrade_levels=_count("downgrade_levels"), downgrade_floor=_count("downgrade_floor"),
                       suspend_days=_count("suspend_days"))
    return None if spec == PenaltySpec() else spec


def until(tz: str = EXPORT_TIMEZONE) -> dt.datetime | None:
    """The allowlist's last day (a date in the admin's time zone, inclusive) as the naive UTC
    moment it ends: the next local midnight. None when empty (the service refuses it)."""
    raw = (request.form.get("until") or "").strip()
    if not raw:
        return None
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        raise FormError("until: not a date", code="invalid_until") from None
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=ZoneInfo(tz))
    return end.astimezone(dt.UTC).replace(tzinfo=None)


def codes() -> list[str] | None:
    """The rule codes ticked on the allowlist form (None: none ticked, the service takes the
    rules that fired)."""
    picked = [c.strip() for c in request.form.getlist("codes") if c.strip()]
    return list(dict.fromkeys(picked)) or None


def rule_params() -> dict[str, Any]:
    raw = (request.form.get("params") or "").strip() or "{}"
    if len(raw) > PARAMS_MAX:
        raise FormError("params too long", code="invalid_json")
    try:
        value = json.loads(raw)
    except ValueError:
        raise FormError("params: not JSON", code="invalid_json") from None
    if not isinstance(value, dict):
        raise FormError("params: not an object", code="invalid_json")
    return value


def rule_weight() -> int:
    raw = (request.form.get("weight") or "").strip()
    if not raw.lstrip("-").isdigit() or len(raw) > 6:
        raise FormError("weight: not a whole number", code="invalid_weight")
    return int(raw)


def summary(evidence: Any, *, items: int = 5, width: int = 40) -> str:
    """A hit's evidence as one short line: `key: value; ...`, lists cut to `items`."""
    if not isinstance(evidence, dict):
        return str(evidence)[:width * 4]
    parts = []
    for key, value in evidence.items():
        if isinstance(value, list | tuple):
            shown = ", ".join(str(v)[:width] for v in value[:items])
            value = f"[{shown}{', …' if len(value) > items else ''}] ({len(value)})"
        elif isinstance(value, dict):
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)[:width * 2]
        else:
            value = str(value)[:width]
        parts.append(f"{key}: {value}")
    return "; ".join(parts)


def when(moment: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored UTC time as the admin shows it (raw SQL gives SQLite's times as text)."""
    from miniapp_api.admin import local_time

    if isinstance(moment, str):
        try:
            moment = dt.datetime.fromisoformat(moment)
        except ValueError:
            return moment[:19]
    return local_time(moment, fmt)


def penalty_detail(detail: str | None) -> str:
    """A penalty's stored detail (JSON) as one short line."""
    try:
        value = json.loads(detail or "{}")
    except ValueError:
        return (detail or "")[:120]
    return summary(value) if value else "—"


def graph_data(graph: dict[str, Any]) -> dict[str, Any]:
    """What static/qx/risk_graph.js draws: the nodes and links of `risk_cases.evidence().graph`
    and the categories' names in the operator's language."""
    nodes = list(graph.get("nodes") or [])
    cats = sorted({str(n.get("category") or "") for n in nodes})
    return {"nodes": nodes, "links": list(graph.get("links") or []),
            "categories": [{"key": c, "name": str(NODE_LABELS.get(c, c))} for c in cats],
            "labels": {"empty": _("没有可以画出的关联")}}
