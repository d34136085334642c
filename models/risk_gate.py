"""Synchronous risk checks at the edges (issue 15): the decisions that must come before a reply,
each from precomputed Redis counters (models/risk_gate_redis.py, one round trip) and
in-process caches, no database read on the way of an honest request.

- coupon claims (`claim_coupon`, rule coupon_farming): per coupon and client IP / device, the
  accounts that claimed it inside the rule's window; the `max_accounts`-th account from one IP
  or device is refused (a family of two passes). The claim is added to the sets atomically with
  the check and taken back when the database refuses the claim (no such grant, run out, ...).
- assists (`start_assist` remembers the starter's IP / device for RISK_GATE_REMEMBER_S,
  `help_assist` refuses a helper sharing one: rule assist_farming) and group-buy teams
  (`order_placed` remembers the opener's, `check_order` refuses a joiner sharing one before the
  order is placed: rule group_farming).
- order bursts (`check_order`, only with RISK_BLOCK_ORDERS): an IP / device that placed
  burst_orders' `min_orders` orders inside its window is refused; otherwise bursts are scored
  after payment (models/risk_scoring.py).
- withdrawals never block: models/risk_withdrawal_checks.py.

A refusal raises Forbidden(<a polite sentence>, code="risk_refused") after writing a RiskHit
(subject_kind "user", the rule version, a period naming what was refused: "c<coupon>",
"a<assist>", "t<team>" in base 36, or "o<yyjjjHHMM>" for bursts, so a repeated refusal of the
same thing is one hit) and a risk_signal row; nothing else is written.

An operator may make coupon_farming, assist_farming or group_farming non-blocking: it then only
records its hits and lets the request through (burst_orders blocks by RISK_BLOCK_ORDERS alone).
Rules are read with models.risk_rules.current and cached in the process together with the
active allowlist for RISK_GATE_RULE_CACHE_S seconds: a rule edit, an allowlist entry or its
revocation applies at the edges within that time. A disabled rule, an allowlisted subject
("user:<id>"), RISK_ENABLED off, or a request with neither a usable IP nor a device id: no
check. Client IPs that are not global (loopback, private, reserved: a proxy's own address, never
a shopper's) take no part in IP checks. Redis unreachable: the checks fail open (logged once a
minute per check); the database still enforces everything else.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import time
from typing import Any

from models import assist, assist_help, coupon_issue, coupons, groupbuy, risk_rules, risk_signals
from models import risk_gate_redis as rg
from models.db import db, utcnow
from models.errors import Forbidden
from models.group_tables import GroupTeam
from models.orders import Order
from models.risk_rules import RuleView
from models.risk_tables import RiskAllow, RiskHit, SignalEvent

log = logging.getLogger(__name__)

REFUSED = "risk_refused"
# Polite sentences for the shopper (the API's error message, the chat's reply).
MESSAGES = {
    "coupon_farming": "同一设备或网络下领取这张券的账号已经太多，暂时无法领取。如有疑问请联系客服。",
    "assist_farming": "你和发起人使用的是同一设备或网络，这次助力不能计入，请换其他好友助力吧。",
    "group_farming": "你和团长使用的是同一设备或网络，暂时无法加入这个团，可以自己开一个新团哦。",
    "burst_orders": "当前网络或设备下单过于频繁，请稍后再试。",
}
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_cache: dict[str, Any] = {"at": None, "rules": {}, "allow": {}}
_warned: dict[str, float] = {}


# ---- rules and the allowlist, cached per process -------------------------------------------------

def forget_cached_rules() -> None:
    """Drop the cached rules and allowlist (tests; an edit that must apply at once)."""
    _cache.update(at=None, rules={}, allow={})


def _refresh(ttl_s: float) -> None:
    now = time.monotonic()
    if _cache["at"] is not None and now - _cache["at"] < ttl_s:
        return
    allow: dict[tuple[str, int, str], dt.datetime] = {}
    rows = RiskAllow.select(RiskAllow.subject_kind, RiskAllow.subject_id, RiskAllow.rule_code, RiskAllow.until).where(
        RiskAllow.revoked_at.is_null() & (RiskAllow.until > utcnow())).tuples()
    for kind, subject, code, until in rows:
        key = (kind, subject, code)
        allow[key] = max(until, allow.get(key, until))
    _cache.update(at=now, rules=risk_rules.current(), allow=allow)


def rule(settings: Any, code: str, *subjects: tuple[str, int]) -> RuleView | None:
    """The version in force of `code` when the engine is on, the rule enabled and none of the
    subjects (("user", id), ("creator", id)) allowlisted for it now; else None."""
    if not settings.RISK_ENABLED:
        return None
    _refresh(settings.RISK_GATE_RULE_CACHE_S)
    found = _cache["rules"].get(code)
    if found is None or not found.enabled:
        return None
    now = utcnow()
    for kind, subject in subjects:
        until = _cache["allow"].get((kind, subject, code))
        if until is not None and until > now:
            return None
    return found


# ---- what an edge saw ----------------------------------------------------------------------------

def usable_ip(ip: str | None) -> str | None:
    """The address when it can tell shoppers apart (global), else None."""
    try:
        addr = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr) if addr.is_global else None


def hashes(settings: Any, ip: str | None, device: str | None) -> tuple[str | None, str | None]:
    """(keyed hash of a usable client IP, keyed hash of the device id): None for what is missing."""
    key = settings.RISK_HMAC_KEY
    checked = usable_ip(ip)
    ip_hash = risk_signals.ip_parts(key, checked)[0] if checked else None
    return ip_hash, risk_signals.device_hash(key, device)


def signal(settings: Any, event: str, user_id: int | None, *, ip: str | None, device: str | None,
           ref: str | None = None, order_id: int | None = None) -> None:
    """One risk_signal row for an edge event; a failure is logged, never raised."""
    try:
        risk_signals.record(settings.RISK_HMAC_KEY, event, user_id=user_id, ip=ip, device=device, ref=ref,
                            order_id=order_id)
    except Exception as exc:  # the contract says record never raises; an edge must not fail on it
        log.warning("risk gate: %s signal not stored (%s)", event, type(exc).__name__)


def outage(what: str, exc: Exception) -> None:
    """A Redis failure: the check is skipped; logged once a minute per check."""
    now = time.monotonic()
    if now - _warned.get(what, -1e9) >= 60:
        _warned[what] = now
        log.warning("risk gate: %s check skipped, Redis unavailable (%s)", what, type(exc).__name__)


def period(prefix: str, number: int) -> str:
    """A hit's period naming one refused thing: prefix + the id in base 36 (10 characters at most)."""
    digits = ""
    while True:
        number, rest = divmod(number, 36)
        digits = _B36[rest] + digits
        if not number:
            return (prefix + digits)[:10]


def _which(mark: str | None) -> str:
    return "device" if (mark or "").startswith("dev:") or ":dev:" in (mark or "") else "ip"


def refuse(settings: Any, found: RuleView, *, user_id: int, period_: str, event: str, ref: str | None,
           ip: str | None, device: str | None, evidence: dict[str, Any], block: bool | None = None) -> None:
    """Record the refusal (a hit, once per user, rule version and period; a signal) and raise
    Forbidden risk_refused with the rule's polite sentence. A rule an operator made non-blocking
    (`block` None: the rule's flag) only records: the request goes on."""
    with db.atomic():
        RiskHit.insert(subject_kind="user", subject_id=user_id, rule_id=found.id, code=found.code,
                       weight=found.weight, period=period_, evidence=json.dumps(evidence, sort_keys=True),
                       created_at=utcnow()).on_conflict_ignore().execute()
    if not (found.blocking if block is None else block):
        return  # the request goes on and records its own signal
    signal(settings, event, user_id, ip=ip, device=device, ref=ref)
    log.info("risk gate: %s refused user %s (%s)", found.code, user_id, ref or period_)
    raise Forbidden(MESSAGES.get(found.code, "暂时无法完成这个操作，请稍后再试。"), code=REFUSED)


# ---- coupon claims -------------------------------------------------------------------------------

def _coupon_id(code: str) -> int | None:
    normalized = coupons.normalize_code(code)
    if not coupon_issue.CODE_MIN <= len(normalized) <= coupon_issue.CODE_MAX:
        return None
    return coupons.Coupon.select(coupons.Coupon.id).where(coupons.Coupon.code == normalized).scalar()


def claim_coupon(redis: Any, settings: Any, user_id: int, code: str, *, ip: str | None = None,
                 device: str | None = None) -> coupons.CouponGrant:
    """models.coupons.claim behind the coupon_farming check (its refusals, and 403 risk_refused).
    The chat has no IP or device: its claims are never checked, nor counted."""
    coupon_id = _coupon_id(code)
    found = rule(settings, "coupon_farming", ("user", user_id)) if coupon_id is not None else None
    keys: list[str] = []
    mask = 0
    if found is not None and coupon_id is not None:
        keys = rg.claim_keys(coupon_id, *hashes(settings, ip, device))
        try:
            refused, mask = rg.claim_take(redis, keys, user_id, now_s=time.time(),
                                          window_s=int(found.params.get("hours", 24)) * 3600,
                                          max_accounts=max(2, int(found.params.get("max_accounts", 3))))
        except Exception as exc:  # Redis away: fail open
            outage("coupon_farming", exc)
            refused, keys = None, []
        if refused is not None:
            refuse(settings, found, user_id=user_id, period_=period("c", coupon_id), event=SignalEvent.CLAIM,
                   ref=f"coupon:{coupon_id}", ip=ip, device=device,
                   evidence={"coupon": coupon_id, "shared": _which(keys[refused]), **found.params})
    try:
        grant = coupons.claim(user_id, code)
    except Exception:
        if mask:
            try:
                rg.claim_undo(redis, keys, user_id, mask)
            except Exception as exc:  # the set errs high until it expires: one account too many
                outage("coupon_farming", exc)
        raise
    signal(settings, SignalEvent.CLAIM, user_id, ip=ip, device=device, ref=f"coupon:{grant.coupon_id}")
    return grant


# ---- assists -------------------------------------------------------------------------------------

def start_assist(redis: Any, settings: Any, user_id: int, session_id: int, sku_code: str, *,
                 ip: str | None, device: str | None) -> tuple[assist.Assist, bool]:
    """models.assist.start, remembering the starter's IP / device for the helpers' check."""
    made, created = assist.start(user_id, session_id, sku_code)
    if settings.RISK_ENABLED:
        try:
            rg.remember(redis, rg.assist_key(made.token), rg.marks(*hashes(settings, ip, device)),
                        settings.RISK_GATE_REMEMBER_S)
        except Exception as exc:
            outage("assist_farming", exc)
        if created:
            signal(settings, SignalEvent.ASSIST, user_id, ip=ip, device=device, ref=f"assist:{made.id}")
    return made, created


def help_assist(redis: Any, settings: Any, helper_id: int, token: str, *, ip: str | None, device: str | None,
                policy: assist.AssistPolicy) -> assist_help.Helped:
    """models.assist_help.help_assist behind the assist_farming check (403 risk_refused: the
    helper shares the starter's IP or device; the help does not count)."""
    found = rule(settings, "assist_farming", ("user", helper_id))
    if found is not None and isinstance(token, str) and len(token) <= 32:
        try:
            shared = rg.shares(redis, rg.assist_key(token), rg.marks(*hashes(settings, ip, device)))
        except Exception as exc:
            outage("assist_farming", exc)
            shared = None
        if shared is not None:
            made = assist.Assist.get_or_none(assist.Assist.token == token)
            if made is not None and made.user_id != helper_id:  # the starter is refused as self_assist
                refuse(settings, found, user_id=helper_id, period_=period("a", made.id), event=SignalEvent.ASSIST,
                       ref=f"assist:{made.id}", ip=ip, device=device,
                       evidence={"assist": made.id, "starter": made.user_id, "shared": _which(shared)})
    done = assist_help.help_assist(helper_id, token, ip=(ip or "unknown")[:64], policy=policy)
    if settings.RISK_ENABLED:
        assist_id = assist.Assist.select(assist.Assist.id).where(assist.Assist.token == token).scalar()
        signal(settings, SignalEvent.ASSIST, helper_id, ip=ip, device=device, ref=f"assist:{assist_id}")
    return done


# ---- orders: group joins and bursts --------------------------------------------------------------

def check_order(redis: Any, settings: Any, user_id: int, group: tuple[str, int] | None, *,
                ip: str | None, device: str | None) -> None:
    """Before an order is placed: a joiner sharing the team opener's IP or device is refused
    (group_farming); with RISK_BLOCK_ORDERS, an IP / device over burst_orders too. Raises
    Forbidden risk_refused; writes nothing otherwise."""
    if not settings.RISK_ENABLED:
        return
    ip_hash, device_hash = hashes(settings, ip, device)
    if group is not None and group[0] == "join":
        found = rule(settings, "group_farming", ("user", user_id))
        if found is not None:
            try:
                shared = rg.shares(redis, rg.team_key(group[1]), rg.marks(ip_hash, device_hash))
            except Exception as exc:
                outage("group_farming", exc)
                shared = None
            leader = GroupTeam.select(GroupTeam.leader_user_id).where(
                GroupTeam.id == group[1]).scalar() if shared is not None else None
            if leader is not None and leader != user_id:  # joining one's own team is the domain's refusal
                refuse(settings, found, user_id=user_id, period_=period("t", group[1]), event=SignalEvent.GROUP_JOIN,
                       ref=f"team:{group[1]}", ip=ip, device=device,
                       evidence={"team": group[1], "leader": leader, "shared": _which(shared)})
    if settings.RISK_BLOCK_ORDERS:
        found = rule(settings, "burst_orders", ("user", user_id))
        keys = rg.order_keys(ip_hash, device_hash)
        if found is not None and keys:
            minutes, most = int(found.params.get("minutes", 10)), int(found.params.get("min_orders", 10))
            try:
                seen = rg.burst_count(redis, keys, now_s=time.time(), window_s=minutes * 60)
            except Exception as exc:
                outage("burst_orders", exc)
                seen = 0
            if seen >= most:
                refuse(settings, found, user_id=user_id, period_="o" + utcnow().strftime("%y%j%H%M"),
                       event=SignalEvent.ORDER, ref=None, ip=ip, device=device, block=True,
                       evidence={"orders": seen, "minutes": minutes, "min_orders": most})


def order_placed(redis: Any, settings: Any, order: Order, group: tuple[str, int] | None, *,
                 ip: str | None, device: str | None) -> None:
    """After an order was created: remember a new team's opener, note a join, count the order
    for bursts. Never raises for Redis."""
    if not settings.RISK_ENABLED:
        return
    ip_hash, device_hash = hashes(settings, ip, device)
    try:
        if group is not None and group[0] == "start":
            team_id = groupbuy.team_of_order(order.id)
            if team_id is not None:
                rg.remember(redis, rg.team_key(team_id), rg.marks(ip_hash, device_hash), settings.RISK_GATE_REMEMBER_S)
        if settings.RISK_BLOCK_ORDERS:
            burst = _cache["rules"].get("burst_orders")
            minutes = int(burst.params.get("minutes", 10)) if burst is not None else 10
            rg.burst_add(redis, rg.order_keys(ip_hash, device_hash), order.id, now_s=time.time(),
                         window_s=minutes * 60)
    except Exception as exc:
        outage("orders", exc)
    if group is not None and group[0] == "join":
        signal(settings, SignalEvent.GROUP_JOIN, order.user_id, ip=ip, device=device, ref=f"team:{group[1]}")
