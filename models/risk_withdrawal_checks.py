"""Risk checks of a withdrawal request (issue 15). They never block: the rules that fire send a
wallet withdrawal to review (WithdrawalState.REVIEW, approved or rejected in the admin's
existing flow) and add an item to the creator's review case.

- withdrawal_first: the creator has no wallet withdrawal yet (any state);
- withdrawal_spike: the amount is over `multiple` x the average of the creator's wallet
  withdrawals of the last `days` (none in that time: nothing to compare, it does not fire);
- withdrawal_shared_account: the creator's payout identity (their user's WeChat unionid, and
  the phone they authorized, as keyed hashes) is also another creator's.

Facts come from Redis (models/risk_gate_redis.py: per creator the count ever and the recent
amounts; per identity the creators sharing it), each loaded from the database when missing
(cold start, flushed Redis; a marker says the creator is warm) and kept current by every new
withdrawal; identity sets expire after RISK_GATE_WD_TTL_S so creators who got an identity since
are found again. Redis unreachable: the same facts are read from the database.

Credit withdrawals (shopping credit, the money stays with us) are not checked.

`request_withdrawal` is the one call of both callers (the API's POST /creator/withdrawals and
the chat's confirm button): the checks, models.withdrawals.request_withdrawal with the codes,
then in the same transaction the hits (subject "withdrawal", the withdrawal's id) and the case
item (models.risk_cases.attach: outcome review, held_fen = the amount); after it the Redis
counters and a risk_signal row. A replay of the same request key returns the withdrawal and
records nothing again.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from typing import Any

from models import risk_cases, risk_signals, withdrawals
from models import risk_gate_redis as rg
from models.db import db, execute, utcnow
from models.network import Creator
from models.risk_gate import outage, rule, signal
from models.risk_rules import RuleView
from models.risk_tables import RiskHit, SignalEvent
from models.withdrawals import Method, Withdrawal, WithdrawPolicy

CODES = ("withdrawal_first", "withdrawal_spike", "withdrawal_shared_account")
SHARED_SHOWN = 20  # creators named in a shared-account hit's evidence


@dataclass(frozen=True)
class Review:
    """What the checks found: the rules that fired with their evidence."""

    fired: list[tuple[RuleView, dict[str, Any]]] = field(default_factory=list)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(found.code for found, _ in self.fired)

    @property
    def score(self) -> int:
        return sum(found.weight for found, _ in self.fired)


def _epoch(at: dt.datetime) -> float:
    return at.replace(tzinfo=dt.UTC).timestamp()


# ---- facts --------------------------------------------------------------------------------------

def _stats_db(creator_id: int, days: int) -> tuple[int, list[tuple[float, str, int]]]:
    n = execute("SELECT COUNT(*) FROM withdrawal WHERE creator_id = %s AND method = %s",
                (creator_id, Method.WALLET.value)).fetchone()[0]
    since = Withdrawal.requested_at.db_value(utcnow() - dt.timedelta(days=days))
    rows = execute("SELECT requested_at, no, amount_fen FROM withdrawal WHERE creator_id = %s AND method = %s "
                   "AND requested_at >= %s", (creator_id, Method.WALLET.value, since)).fetchall()
    recent = [(_epoch(Withdrawal.requested_at.python_value(at)), no, int(amount)) for at, no, amount in rows]
    return int(n), recent


def stats(redis: Any, settings: Any, creator_id: int, days: int) -> tuple[int, int, int]:
    """(wallet withdrawals ever, the sum and count of those of the last `days`)."""
    now = time.time()
    try:
        got = rg.wd_read(redis, creator_id, now_s=now, days=days)
        if got is not None:
            return got
        n, recent = _stats_db(creator_id, days)
        rg.wd_load(redis, creator_id, n, recent, days=days, ttl_s=settings.RISK_GATE_WD_TTL_S)
    except Exception as exc:
        outage("withdrawal", exc)
        n, recent = _stats_db(creator_id, days)
    return n, sum(a for _, _, a in recent), len(recent)


def payout_identities(settings: Any, creator_id: int) -> dict[str, str]:
    """identity hash -> its kind ("unionid", "phone") of the creator's payout identity."""
    row = execute('SELECT u.unionid, r.phone_hash FROM creator c JOIN "user" u ON u.id = c.user_id '
                  "LEFT JOIN risk_user r ON r.user_id = c.user_id WHERE c.id = %s", (creator_id,)).fetchone()
    if row is None:
        return {}
    unionid, phone_hash = row
    found: dict[str, str] = {}
    if unionid:
        found["u" + risk_signals.hmac_hex(settings.RISK_HMAC_KEY, "unionid:" + unionid)] = "unionid"
    if phone_hash:
        found["p" + phone_hash] = "phone"
    return found


def shared_with(redis: Any, settings: Any, creator_id: int) -> dict[str, set[int]]:
    """kind -> the other creators sharing that payout identity (only kinds with some)."""
    ids = payout_identities(settings, creator_id)
    if not ids:
        return {}
    keys = list(ids)
    try:
        known = rg.identities(redis, creator_id, keys, ttl_s=settings.RISK_GATE_WD_TTL_S)
    except Exception as exc:
        outage("withdrawal", exc)
        known = [None] * len(keys)
        redis = None
    out: dict[str, set[int]] = {}
    for identity, members in zip(keys, known, strict=True):
        if members is None:
            members = _creators_with(creator_id, identity, ids[identity]) | {creator_id}
            if redis is not None:
                try:
                    rg.identity_load(redis, identity, sorted(members), ttl_s=settings.RISK_GATE_WD_TTL_S)
                except Exception as exc:
                    outage("withdrawal", exc)
        others = members - {creator_id}
        if others:
            out.setdefault(ids[identity], set()).update(others)
    return out


def _creators_with(creator_id: int, identity: str, kind: str) -> set[int]:
    """The creators whose payout identity is `identity`, from the database."""
    if kind == "phone":
        sql = "SELECT c.id FROM creator c JOIN risk_user r ON r.user_id = c.user_id WHERE r.phone_hash = %s"
        return {int(r[0]) for r in execute(sql, (identity[1:],)).fetchall()}
    unionid = execute('SELECT u.unionid FROM creator c JOIN "user" u ON u.id = c.user_id WHERE c.id = %s',
                      (creator_id,)).fetchone()[0]
    sql = 'SELECT c.id FROM creator c JOIN "user" u ON u.id = c.user_id WHERE u.unionid = %s'
    return {int(r[0]) for r in execute(sql, (unionid,)).fetchall()}


# ---- the check and the request -------------------------------------------------------------------

def check(redis: Any, settings: Any, creator_id: int, amount_fen: int) -> Review:
    """The withdrawal rules that fire on this request (nothing written to the database)."""
    subject = ("creator", creator_id)
    first, spike = rule(settings, "withdrawal_first", subject), rule(settings, "withdrawal_spike", subject)
    shared = rule(settings, "withdrawal_shared_account", subject)
    fired: list[tuple[RuleView, dict[str, Any]]] = []
    if first is not None or spike is not None:
        days = int(spike.params.get("days", 30)) if spike is not None else 30
        n, total, count = stats(redis, settings, creator_id, days)
        if first is not None and n == 0:
            fired.append((first, {"amount_fen": amount_fen, "previous": 0}))
        if spike is not None and count:
            multiple = float(spike.params.get("multiple", 3))
            if amount_fen * count > multiple * total:
                fired.append((spike, {"amount_fen": amount_fen, "average_fen": total // count, "count": count,
                                      "days": days, "multiple": spike.params.get("multiple", 3)}))
    if shared is not None:
        found = shared_with(redis, settings, creator_id)
        if found:
            others = sorted(set().union(*found.values()))
            fired.append((shared, {"amount_fen": amount_fen, "identity": sorted(found),
                                   "creators": others[:SHARED_SHOWN], "more": max(0, len(others) - SHARED_SHOWN)}))
    return Review(fired)


def _record(w: Withdrawal, creator_id: int, review: Review) -> list[int]:
    """The hits of a new withdrawal under review; the ids of those written now."""
    now = utcnow()
    rows = [dict(subject_kind="withdrawal", subject_id=w.id, rule_id=found.id, code=found.code, weight=found.weight,
                 period="", creator_id=creator_id, evidence=json.dumps({**evidence, "no": w.no}, sort_keys=True),
                 created_at=now) for found, evidence in review.fired]
    before = {r for (r,) in RiskHit.select(RiskHit.id).where(
        (RiskHit.subject_kind == "withdrawal") & (RiskHit.subject_id == w.id)).tuples()}
    RiskHit.insert_many(rows).on_conflict_ignore().execute()
    return [r for (r,) in RiskHit.select(RiskHit.id).where(
        (RiskHit.subject_kind == "withdrawal") & (RiskHit.subject_id == w.id)).order_by(RiskHit.id).tuples()
        if r not in before]


def request_withdrawal(redis: Any, settings: Any, creator: Creator | int, amount_fen: int, method: Method | str, *,
                       policy: WithdrawPolicy, request_key: str | None = None, actor: str | None = None,
                       ip: str | None = None, device: str | None = None) -> Withdrawal:
    """models.withdrawals.request_withdrawal behind the withdrawal checks (its refusals
    unchanged): a wallet withdrawal some rule fires on goes to review, with its hits and an item
    on the creator's case, in one transaction."""
    creator_id = creator if isinstance(creator, int) else creator.id
    replay = request_key is not None and Withdrawal.select(Withdrawal.id).where(
        (Withdrawal.creator == creator_id) & (Withdrawal.request_key == request_key)).exists()
    wallet = method == Method.WALLET.value and isinstance(amount_fen, int) and not isinstance(amount_fen, bool)
    review = check(redis, settings, creator_id, amount_fen) if wallet and not replay else Review()
    with db.atomic():
        w = withdrawals.request_withdrawal(creator, amount_fen, method, policy=policy, request_key=request_key,
                                           actor=actor, review_codes=review.codes)
        hit_ids = _record(w, creator_id, review) if review.fired else []
        if hit_ids:
            risk_cases.attach([risk_cases.CaseItem(creator_id, "review", review.score, hit_ids,
                                                   held_fen=w.amount_fen)])
    if replay:
        return w
    if wallet:
        try:
            rg.wd_add(redis, creator_id, w.no, w.amount_fen, now_s=_epoch(w.requested_at))
        except Exception as exc:
            outage("withdrawal", exc)
    user_id = Creator.select(Creator.user).where(Creator.id == creator_id).scalar() if isinstance(creator, int) \
        else creator.user_id
    signal(settings, SignalEvent.WITHDRAWAL, user_id, ip=ip, device=device, ref=f"withdrawal:{w.id}")
    return w
