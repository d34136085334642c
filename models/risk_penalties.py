"""Risk penalties on creators (issue 15): what a confirmed case may add, and lifting them.

Kinds (`risk_penalty.kind`, one row each, written by models/risk_cases.py `confirm`):
- `clawback`: the record of the commission taken back from the case's orders (detail: orders,
  fen). The money itself moved through models/reversals.py; nothing to lift.
- `downgrade`: the star level lowered through models/level_evaluation.py `penalize` (detail:
  from, to, cap). The rank cap holds until lifted; lifting one of several downgrades keeps the
  lowest cap of those still in force.
- `suspend_withdrawals`: no withdrawal requests until `until` (models/withdrawals.py asks
  `withdrawals_suspended` right after locking the creator row); lifting ends it now.
Every lift is an event (`risk.penalty_lifted`, actor = the operator) and a chat notice to the
creator (models/risk_notices.py).
"""

from __future__ import annotations

import datetime as dt
import json

from models import events, level_evaluation, risk_notices
from models.db import db, lock_rows, utcnow
from models.errors import Conflict, InvalidInput, NotFound
from models.network import Creator
from models.risk_tables import PenaltyKind, RiskPenalty

LIFTABLE = (PenaltyKind.DOWNGRADE.value, PenaltyKind.SUSPEND_WITHDRAWALS.value)


def withdrawals_suspended(creator_id: int, now: dt.datetime | None = None) -> RiskPenalty | None:
    """The creator's active withdrawal suspension (not lifted, `until` in the future or None):
    the one ending last."""
    now = now or utcnow()
    found = list(RiskPenalty.select().where(
        (RiskPenalty.creator_id == creator_id) & (RiskPenalty.kind == PenaltyKind.SUSPEND_WITHDRAWALS.value)
        & RiskPenalty.lifted_at.is_null() & (RiskPenalty.until.is_null() | (RiskPenalty.until > now))))
    if not found:
        return None
    return max(found, key=lambda p: (p.until is None, p.until or now, p.id))


def active(creator_id: int | None = None, *, limit: int = 200) -> list[RiskPenalty]:
    """Penalties not lifted (of one creator, or all), newest first: downgrades, and suspensions
    that have not ended. Clawbacks are records, not states: see `history`."""
    now = utcnow()
    query = RiskPenalty.select().where(
        RiskPenalty.lifted_at.is_null()
        & ((RiskPenalty.kind == PenaltyKind.DOWNGRADE.value)
           | ((RiskPenalty.kind == PenaltyKind.SUSPEND_WITHDRAWALS.value)
              & (RiskPenalty.until.is_null() | (RiskPenalty.until > now)))))
    if creator_id is not None:
        query = query.where(RiskPenalty.creator_id == creator_id)
    return list(query.order_by(RiskPenalty.id.desc()).limit(max(1, min(limit, 1000))))


def history(creator_id: int, *, limit: int = 200) -> list[RiskPenalty]:
    """Every penalty of a creator (lifted, ended and clawbacks included), newest first."""
    return list(RiskPenalty.select().where(RiskPenalty.creator_id == creator_id)
                .order_by(RiskPenalty.id.desc()).limit(max(1, min(limit, 1000))))


def detail(penalty: RiskPenalty) -> dict:
    return json.loads(penalty.detail or "{}")


def lift(penalty_id: int, *, actor: str, reason: str) -> RiskPenalty:
    """Lift a penalty (a downgrade's rank cap through level_evaluation.lift_penalty; a
    suspension ends now). Raises NotFound penalty_not_found, Conflict penalty_lifted (lifted,
    or a suspension that already ended) / penalty_not_liftable (a clawback), InvalidInput
    reason_required. Tells the creator in chat."""
    reason = (reason or "").strip() if isinstance(reason, str) else ""
    if not reason:
        raise InvalidInput("say why the penalty is lifted", code="reason_required")
    reason = reason[:200]
    now = utcnow()
    with db.atomic():
        penalty = lock_rows(RiskPenalty.select().where(RiskPenalty.id == penalty_id)).first()
        if penalty is None:
            raise NotFound(f"penalty {penalty_id} not found", code="penalty_not_found")
        if penalty.kind not in LIFTABLE:
            raise Conflict("a clawback is a record of money taken back; it cannot be lifted",
                           code="penalty_not_liftable")
        ended = penalty.until is not None and penalty.until <= now
        if penalty.lifted_at is not None or ended:
            raise Conflict(f"penalty {penalty_id} is no longer in force", code="penalty_lifted")
        changes: dict = {"lifted_by": actor[:64], "lifted_at": now}
        if penalty.kind == PenaltyKind.SUSPEND_WITHDRAWALS.value:
            changes["until"] = now
        RiskPenalty.update(**changes).where(RiskPenalty.id == penalty.id).execute()
        if penalty.kind == PenaltyKind.DOWNGRADE.value:
            _restore_cap(penalty.creator_id, actor, reason)
        events.record("risk.penalty_lifted", f"creator:{penalty.creator_id}", actor, penalty_id=penalty.id,
                      kind=penalty.kind, reason=reason)
        risk_notices.tell_creator(penalty.creator_id, risk_notices.lifted_key(penalty.id),
                                  risk_notices.lifted_text(penalty.kind), now=now)
    return RiskPenalty.get_by_id(penalty_id)


def _restore_cap(creator_id: int, actor: str, reason: str) -> None:
    """After a downgrade is lifted: no cap when no other downgrade is in force, else the lowest
    cap of those still in force."""
    creator = Creator.get_by_id(creator_id)
    caps = [detail(p).get("cap") for p in RiskPenalty.select().where(
        (RiskPenalty.creator_id == creator_id) & (RiskPenalty.kind == PenaltyKind.DOWNGRADE.value)
        & RiskPenalty.lifted_at.is_null())]
    caps = [c for c in caps if isinstance(c, int)]
    if not caps:
        level_evaluation.lift_penalty(creator, actor, reason)
    elif creator.rank_cap is None or creator.rank_cap != min(caps):
        level_evaluation.penalize(creator, min(caps), actor=actor, reason=f"remaining penalty: {reason}")
