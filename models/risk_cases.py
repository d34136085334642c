"""Risk review cases (issue 15): one open case per creator collects what the scorer and the
withdrawal checks found, and an operator decides it.

- `attach` (models/risk_attach.py, re-exported here with `CaseItem`; called by the batch
  scorer and the withdrawal check inside their transaction): a creator with no open case gets
  one, otherwise the items join the open one (hits linked, score and held money added, the
  graver outcome); a re-run never counts twice. New cases leave a `risk.case_opened` event.
- Decisions, each once (a second one raises Conflict case_decided and writes nothing), each an
  event with the operator as actor (the admin adds its audit row):
  - `clear`: the holds on the case's orders are lifted, and release makes their commission
    available. An order keeps its hold when another open case still names it (with cases per
    creator only a creator-scope hit can name another creator's order, so this is the rare
    case of a hit whose evidence lists orders sold by someone else) or when an operator put the
    hold on by hand (its last hold event is an `order.risk_hold` by an `operator:` actor).
  - `confirm`: the commission of the case's orders is reversed (pending) or clawed back
    (available; the balance may go negative and later releases net it) through
    models/reversals.py, withdrawals of the case still under review are rejected (the money
    goes back to available, where the clawback nets it), and the optional penalties are
    applied (models/risk_penalties.py describes them). The creator is told in chat.
  - `allowlist`: like `clear`, and the creator skips the rules that fired (or the codes given)
    until a date (required, in the future, at most a year ahead): `risk_allow` rows.
The evidence shown for a case is assembled in models/risk_graph.py.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from models import events, level_evaluation, payouts, reversals, risk_graph, risk_notices
from models.db import db, execute, lock_rows, placeholders, utcnow
from models.errors import Conflict, InvalidInput, NotFound
from models.network import Creator
from models.risk_attach import CREATOR, CaseItem, attach
from models.risk_rules import BY_CODE
from models.risk_tables import CaseState, PenaltyKind, RiskAllow, RiskCase, RiskPenalty

__all__ = ["CaseItem", "Evidence", "PenaltySpec", "allowlist", "allows", "assign", "attach", "clear", "codes_of",
           "confirm", "evidence", "find_cases", "get_case", "revoke_allow", "summary"]

NOTE_MAX = 500
ALLOW_MAX = dt.timedelta(days=366)
MAX_LEVELS = 20
MAX_SUSPEND_DAYS = 365


@dataclass(frozen=True)
class PenaltySpec:
    """Penalties an operator adds when confirming a case (all optional)."""

    downgrade_levels: int | None = None  # drop this many star levels ...
    downgrade_floor: int | None = None  # ... or to this rank (the lower of the two wins when both)
    suspend_days: int | None = None  # no withdrawals for this many days


@dataclass(frozen=True)
class Evidence:
    case: RiskCase
    hits: list[dict[str, Any]]  # code, version, weight, subject, created_at, evidence (dict)
    orders: list[dict[str, Any]]  # id, no, amount_fen, status, buyer, seller, risk_hold, settlement, commission_fen
    identities: list[dict[str, Any]]  # kind (ip_net / ip / device / phone / payer), short label, users sharing it
    graph: dict[str, list[dict[str, Any]]]  # {"nodes": [{id, name, category}], "links": [{source, target, label}]}
    held_fen: int  # commission still waiting on the case's held orders
    withdrawals: list[dict[str, Any]] = field(default_factory=list)  # id, no, amount_fen, state, requested_at
    creator: dict[str, Any] | None = None  # id, code, name, user_id, rank, rank_cap


# ---- reading -----------------------------------------------------------------------------------


def find_cases(*, state: str | None = "open", assignee: str | None = None, creator_id: int | None = None,
               before_id: int | None = None, limit: int = 50) -> list[RiskCase]:
    """Cases newest first (keyset on id), filtered."""
    query = RiskCase.select()
    if state is not None:
        query = query.where(RiskCase.state == CaseState(state).value)
    if assignee is not None:
        query = query.where(RiskCase.assignee == assignee)
    if creator_id is not None:
        query = query.where(RiskCase.creator_id == creator_id)
    if before_id is not None:
        query = query.where(RiskCase.id < before_id)
    return list(query.order_by(RiskCase.id.desc()).limit(max(1, min(limit, 500))))


def get_case(case_id: int) -> RiskCase:
    """Raises NotFound case_not_found."""
    found = RiskCase.get_or_none(RiskCase.id == case_id)
    if found is None:
        raise NotFound(f"risk case {case_id} not found", code="case_not_found")
    return found


def codes_of(case_ids: list[int]) -> dict[int, list[str]]:
    """case -> the distinct rule codes of its hits (for a list of cases)."""
    if not case_ids:
        return {}
    found: dict[int, list[str]] = {c: [] for c in case_ids}
    for case_id, code in execute(
            "SELECT DISTINCT ch.case_id, h.code FROM risk_case_hit ch JOIN risk_hit h ON h.id = ch.hit_id "
            f"WHERE ch.case_id IN ({placeholders(case_ids)}) ORDER BY ch.case_id, h.code", case_ids).fetchall():
        found[int(case_id)].append(code)
    return found


def evidence(case_id: int) -> Evidence:
    case = get_case(case_id)
    hits = risk_graph.hits_of(case.id)
    creator = risk_graph.creator_of(case.creator_id)
    order_rows = risk_graph.orders(risk_graph.order_ids_of(hits), case.creator_id)
    idents = risk_graph.identities(order_rows)
    return Evidence(case=case, hits=hits, orders=order_rows, identities=idents,
                    graph=risk_graph.graph(creator, order_rows, idents),
                    held_fen=risk_graph.held_fen([o["id"] for o in order_rows]),
                    withdrawals=risk_graph.withdrawals(risk_graph.withdrawal_ids_of(hits)), creator=creator)


def summary(now: dt.datetime | None = None) -> dict[str, int]:
    """The queue's figures: open cases, cases opened in the last 24 hours, orders held (pending
    commission under a hold) and the commission they keep waiting, in fen."""
    now = now or utcnow()
    since = RiskCase.opened_at.db_value(now - dt.timedelta(hours=24))
    open_cases = int(execute("SELECT COUNT(*) FROM risk_case WHERE state = %s",
                             (CaseState.OPEN.value,)).fetchone()[0])
    new_cases = int(execute("SELECT COUNT(*) FROM risk_case WHERE opened_at >= %s", (since,)).fetchone()[0])
    held, fen = execute('SELECT COUNT(*), COALESCE(SUM(st.payout_fen), 0) FROM settlement st JOIN "order" o '
                        "ON o.id = st.order_id WHERE st.state = 'pending' AND o.risk_hold").fetchone()
    return {"open_cases": open_cases, "new_cases": new_cases, "held_orders": int(held), "held_fen": int(fen)}


# ---- decisions ---------------------------------------------------------------------------------


def _note(note: str | None) -> str:
    note = note.strip() if isinstance(note, str) else ""
    if not note:
        raise InvalidInput("a decision needs a note", code="note_required")
    if len(note) > NOTE_MAX:
        raise InvalidInput(f"a note is at most {NOTE_MAX} characters", code="note_too_long")
    return note


def _open(case_id: int) -> RiskCase:
    """The case, locked; raises NotFound, Conflict case_decided."""
    case = lock_rows(RiskCase.select().where(RiskCase.id == case_id)).first()
    if case is None:
        raise NotFound(f"risk case {case_id} not found", code="case_not_found")
    if case.state != CaseState.OPEN.value:
        raise Conflict(f"risk case {case_id} was already decided ({case.state})", code="case_decided")
    return case


def _decide(case: RiskCase, state: CaseState, actor: str, note: str, now: dt.datetime) -> None:
    done = RiskCase.update(state=state.value, decided_by=actor[:64], decided_at=now, decision_note=note,
                           updated_at=now).where((RiskCase.id == case.id)
                                                 & (RiskCase.state == CaseState.OPEN.value)).execute()
    if not done:
        raise Conflict(f"risk case {case.id} was already decided", code="case_decided")


def assign(case_id: int, assignee: str | None, *, actor: str) -> RiskCase:
    """Assign (None: unassign). Raises NotFound, Conflict case_decided."""
    if assignee is not None:
        assignee = assignee.strip()[:64] or None
    with db.atomic():
        case = _open(case_id)
        if case.assignee != assignee:
            RiskCase.update(assignee=assignee, updated_at=utcnow()).where(RiskCase.id == case.id).execute()
            events.record("risk.case_assigned", f"risk_case:{case.id}", actor, assignee=assignee,
                          previous=case.assignee)
    return get_case(case_id)


def _release_holds(case: RiskCase, order_ids: list[int], actor: str) -> list[int]:
    """Lift the holds on the case's orders, except those another open case names and those an
    operator held by hand. Returns the orders released."""
    if not order_ids:
        return []
    held = [r[0] for r in execute(f'SELECT id FROM "order" WHERE id IN ({placeholders(order_ids)}) '
                                  "AND risk_hold ORDER BY id", order_ids).fetchall()]
    if not held:
        return []
    keep = risk_graph.named_elsewhere(case.id, held) | risk_graph.held_by_hand(held)
    free = [oid for oid in held if oid not in keep]
    if free:
        execute(f'UPDATE "order" SET risk_hold = %s WHERE id IN ({placeholders(free)})', [False, *free])
        execute(*events.many_statement("order.risk_released", actor, [
            (f"order:{oid}", {"reason": f"risk case {case.id} cleared"}) for oid in free]))
    return free


def clear(case_id: int, *, actor: str, note: str) -> RiskCase:
    """Release the case's holds. Raises NotFound, Conflict case_decided, InvalidInput note_required."""
    note = _note(note)
    now = utcnow()
    with db.atomic():
        case = _open(case_id)
        released = _release_holds(case, risk_graph.order_ids_of(risk_graph.hits_of(case.id)), actor)
        _decide(case, CaseState.CLEARED, actor, note, now)
        events.record("risk.case_cleared", f"risk_case:{case.id}", actor, creator_id=case.creator_id,
                      released=released, note=note)
    return get_case(case_id)


def _penalty(spec: PenaltySpec | None) -> PenaltySpec | None:
    if spec is None:
        return None

    def bad(value: Any, low: int, high: int) -> bool:
        return value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not low <= value <= high)

    top = int(execute("SELECT COALESCE(MAX(rank), 0) FROM star_level").fetchone()[0])
    if bad(spec.downgrade_levels, 1, MAX_LEVELS) or bad(spec.downgrade_floor, 0, top) \
            or bad(spec.suspend_days, 1, MAX_SUSPEND_DAYS):
        raise InvalidInput(f"a downgrade is 1-{MAX_LEVELS} levels or a floor rank 0-{top}; a suspension "
                           f"1-{MAX_SUSPEND_DAYS} days", code="invalid_penalty")
    return spec


def confirm(case_id: int, *, actor: str, note: str, penalty: PenaltySpec | None = None) -> RiskCase:
    """Reverse / claw back the commission of the case's orders through the ledger, refuse its
    withdrawals under review, apply the penalties. Raises NotFound, Conflict case_decided,
    InvalidInput note_required / invalid_penalty."""
    note = _note(note)
    spec = _penalty(penalty)
    now = utcnow()
    reason = f"risk case {case_id}"
    with db.atomic():
        case = _open(case_id)
        hits = risk_graph.hits_of(case.id)
        order_ids = risk_graph.order_ids_of(hits)
        live = risk_graph.live_commission(order_ids)
        reversed_ = reversals.reverse(order_ids, reason=reason, actor=actor) if order_ids else {}
        rejected = []
        for w in risk_graph.withdrawals(risk_graph.withdrawal_ids_of(hits)):
            if w["state"] == "review":
                payouts.reject(w["id"], actor, f"风控审核未通过（案件 {case.id}）")
                rejected.append(w["id"])
        creator_id = case.creator_id
        clawed = sum(v for (_, c), v in live.items() if c == creator_id)
        made: list[RiskPenalty] = []
        if live:
            made.append(RiskPenalty.create(
                creator_id=creator_id, kind=PenaltyKind.CLAWBACK.value, case_id=case.id, reason=reason,
                created_by=actor[:64], created_at=now,
                detail=json.dumps({"orders": sorted({o for o, _ in live}), "fen": clawed,
                                   "all_fen": sum(live.values()), **reversed_})))
        if spec is not None:
            made += _apply_penalties(case, spec, actor=actor, reason=f"{reason}: {note}"[:200], now=now)
        _decide(case, CaseState.CONFIRMED, actor, note, now)
        events.record("risk.case_confirmed", f"risk_case:{case.id}", actor, creator_id=creator_id,
                      orders=order_ids, reversed=reversed_, clawed_fen=clawed, withdrawals_rejected=rejected,
                      penalties=[p.id for p in made], note=note)
        if creator_id is not None:
            risk_notices.tell_creator(creator_id, risk_notices.case_key(case.id),
                                      risk_notices.confirmed_text(len({o for o, _ in live}), clawed, len(rejected)),
                                      now=now)
            for p in made:
                text = _penalty_text(p)
                if text:
                    risk_notices.tell_creator(creator_id, risk_notices.penalty_key(p.id), text, now=now)
    return get_case(case_id)


def _apply_penalties(case: RiskCase, spec: PenaltySpec, *, actor: str, reason: str,
                     now: dt.datetime) -> list[RiskPenalty]:
    made = []
    creator = lock_rows(Creator.select().where(Creator.id == case.creator_id)).first()
    if creator is None:
        return made
    if spec.downgrade_levels is not None or spec.downgrade_floor is not None:
        targets = [creator.rank - spec.downgrade_levels] if spec.downgrade_levels is not None else []
        if spec.downgrade_floor is not None:
            targets.append(spec.downgrade_floor)
        to_rank = max(0, min(creator.rank, *targets))  # at least frozen where it is
        if creator.rank_cap is not None:
            to_rank = min(to_rank, creator.rank_cap)  # never loosen an earlier cap
        after = level_evaluation.penalize(creator, to_rank, actor=actor, reason=reason)
        made.append(RiskPenalty.create(
            creator_id=creator.id, kind=PenaltyKind.DOWNGRADE.value, case_id=case.id, reason=reason,
            created_by=actor[:64], created_at=now,
            detail=json.dumps({"from": creator.rank, "to": after.rank, "cap": to_rank,
                               "levels": spec.downgrade_levels, "floor": spec.downgrade_floor})))
    if spec.suspend_days is not None:
        made.append(RiskPenalty.create(
            creator_id=creator.id, kind=PenaltyKind.SUSPEND_WITHDRAWALS.value, case_id=case.id, reason=reason,
            created_by=actor[:64], created_at=now, until=now + dt.timedelta(days=spec.suspend_days),
            detail=json.dumps({"days": spec.suspend_days})))
    for p in made:
        events.record("risk.penalty_applied", f"creator:{creator.id}", actor, penalty_id=p.id, kind=p.kind,
                      case_id=case.id, detail=json.loads(p.detail))
    return made


def _penalty_text(p: RiskPenalty) -> str | None:
    if p.kind == PenaltyKind.DOWNGRADE.value:
        return risk_notices.downgrade_text(risk_notices.level_name(json.loads(p.detail)["to"]))
    if p.kind == PenaltyKind.SUSPEND_WITHDRAWALS.value:
        return risk_notices.suspend_text(p.until)
    return None  # the clawback is told in the case's own notice


def _until(until: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    if not isinstance(until, dt.datetime):
        raise InvalidInput("an allowlist entry needs an end date", code="until_required")
    if until.tzinfo is not None:
        until = until.astimezone(dt.UTC).replace(tzinfo=None)
    if until <= now:
        raise InvalidInput("an allowlist entry's end date must be in the future", code="until_required")
    if until - now > ALLOW_MAX:
        raise InvalidInput("an allowlist entry lasts at most a year", code="until_too_far")
    return until


def allowlist(case_id: int, *, actor: str, note: str, until: dt.datetime | None,
              codes: list[str] | None = None) -> RiskCase:
    """Clear the case and let its creator skip the rules that fired (or `codes`) until `until`.
    Raises InvalidInput until_required (None or not in the future), unknown_rule; NotFound;
    Conflict case_decided."""
    note = _note(note)
    now = utcnow()
    until = _until(until, now)
    if codes is not None:
        codes = sorted({str(c).strip() for c in codes})
        unknown = [c for c in codes if c not in BY_CODE]
        if unknown:
            raise InvalidInput(f"unknown rule code(s): {', '.join(unknown)}", code="unknown_rule")
    with db.atomic():
        case = _open(case_id)
        hits = risk_graph.hits_of(case.id)
        wanted = codes if codes is not None else sorted({h["code"] for h in hits if h["code"] in BY_CODE})
        if not wanted:
            raise InvalidInput("name the rules the creator may skip", code="codes_required")
        allow_ids = []
        for code in wanted:
            allow_ids.append(RiskAllow.insert(
                subject_kind=CREATOR, subject_id=case.creator_id, rule_code=code, until=until,
                reason=f"risk case {case.id}: {note}"[:200], created_by=actor[:64], created_at=now).execute())
        released = _release_holds(case, risk_graph.order_ids_of(hits), actor)
        _decide(case, CaseState.ALLOWLISTED, actor, note, now)
        events.record("risk.case_allowlisted", f"risk_case:{case.id}", actor, creator_id=case.creator_id,
                      codes=wanted, until=until.isoformat(), allow_ids=allow_ids, released=released, note=note)
    return get_case(case_id)


def allows(*, active: bool = True, creator_id: int | None = None, limit: int = 200) -> list[RiskAllow]:
    """Allowlist entries newest first: only those in force (not revoked, not ended) by default."""
    query = RiskAllow.select()
    if active:
        query = query.where(RiskAllow.revoked_at.is_null() & (RiskAllow.until > utcnow()))
    if creator_id is not None:
        query = query.where((RiskAllow.subject_kind == CREATOR) & (RiskAllow.subject_id == creator_id))
    return list(query.order_by(RiskAllow.id.desc()).limit(max(1, min(limit, 1000))))


def revoke_allow(allow_id: int, *, actor: str) -> None:
    """End an allowlist entry now. Raises NotFound allow_not_found. Revoking a revoked or
    ended entry changes nothing."""
    now = utcnow()
    with db.atomic():
        entry = lock_rows(RiskAllow.select().where(RiskAllow.id == allow_id)).first()
        if entry is None:
            raise NotFound(f"allowlist entry {allow_id} not found", code="allow_not_found")
        if entry.revoked_at is not None or entry.until <= now:
            return
        RiskAllow.update(revoked_at=now).where(RiskAllow.id == entry.id).execute()
        events.record("risk.allow_revoked", f"{entry.subject_kind}:{entry.subject_id}", actor, allow_id=entry.id,
                      rule_code=entry.rule_code)
