"""Attaching what the risk engine found to review cases (issue 15): one open case per creator
(see models/risk_cases.py for the cases and their decisions).

`attach` runs inside the caller's transaction (the batch scorer's, the withdrawal check's):
items are grouped by creator; per 500 creators one `INSERT ... ON CONFLICT DO NOTHING RETURNING`
opens the missing cases with their items' totals (the partial unique index
`risk_case_open_subject` keeps one open case per creator), one `SELECT ... FOR UPDATE` reads and
locks the open ones, one insert links the hits (`risk_case_hit`; RETURNING tells the links that
are new: an item whose hits were all linked before adds nothing, so a re-run never counts
twice), one `UPDATE ... FROM (VALUES ...)` adds score, held money and the graver outcome
(review > hold) to the cases joined, and one insert writes a `risk.case_opened` event per new
case.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from models import events
from models.db import db, execute, for_update, placeholders, utcnow
from models.risk_tables import CaseState, Outcome, RiskCase

CREATOR = "creator"  # cases are per creator
SYSTEM = "system:risk"
CHUNK = 500  # creators per statement
_HOLD, _REVIEW = Outcome.HOLD.value, Outcome.REVIEW.value


@dataclass(frozen=True)
class CaseItem:
    """What one scored subject adds to its creator's case."""

    creator_id: int  # cases are per creator: the one whose money waits
    outcome: str  # Outcome.HOLD or Outcome.REVIEW value
    score: int
    hit_ids: list[int] = field(default_factory=list)
    held_fen: int = 0  # commission this item keeps waiting


def _graver(a: str, b: str) -> str:
    return _REVIEW if _REVIEW in (a, b) else _HOLD


def attach(items: Iterable[CaseItem], *, now: dt.datetime | None = None) -> int:
    """Open a case per creator that has none open, or add to the open one (its hits linked, its
    score and held_fen summed, its outcome the graver); set-based. Returns the new cases."""
    items = list(items)
    for item in items:
        if item.outcome not in (_HOLD, _REVIEW):
            raise ValueError(f"a case item is hold or review, not {item.outcome!r}")
    if not items:
        return 0
    now = now or utcnow()
    stamp = RiskCase.opened_at.db_value(now)
    totals = _sums(items)
    opened = 0
    with db.atomic():
        creators = sorted(totals)
        for start in range(0, len(creators), CHUNK):
            chunk = creators[start:start + CHUNK]
            cases, new = _open_cases(chunk, totals, stamp)
            fresh = set(new.values())  # inserted with their items' totals already
            mine = [item for item in items if item.creator_id in cases]
            linked = _link(cases, mine)
            joined = [item for item in mine if cases[item.creator_id] not in fresh
                      and (not item.hit_ids or linked.intersection(item.hit_ids))]  # else counted before
            rows = sorted((cases[c], *v) for c, v in _sums(joined).items())
            if rows:
                execute("UPDATE risk_case SET score = risk_case.score + v.column2, "
                        "held_fen = risk_case.held_fen + v.column3, outcome = CASE WHEN risk_case.outcome = %s "
                        "OR v.column4 = %s THEN %s ELSE %s END, updated_at = %s FROM (VALUES "
                        + ", ".join(["(%s, %s, %s, %s)"] * len(rows)) + ") AS v WHERE risk_case.id = v.column1",
                        [_REVIEW, _REVIEW, _REVIEW, _HOLD, stamp, *[v for row in rows for v in row]])
            if new:
                execute(*events.many_statement("risk.case_opened", SYSTEM, [
                    (f"creator:{creator_id}", {"case_id": case_id, "outcome": totals[creator_id][2]})
                    for creator_id, case_id in sorted(new.items())]))
            opened += len(new)
    return opened


def _sums(items: list[CaseItem]) -> dict[int, tuple[int, int, str]]:
    """creator -> (score, held_fen, graver outcome) of the items."""
    acc: dict[int, tuple[int, int, str]] = {}
    for item in items:
        score, held, outcome = acc.get(item.creator_id, (0, 0, _HOLD))
        acc[item.creator_id] = (score + item.score, held + item.held_fen, _graver(outcome, item.outcome))
    return acc


def _open_cases(creators: list[int], totals: dict[int, tuple[int, int, str]],
                stamp: str) -> tuple[dict[int, int], dict[int, int]]:
    """creator -> open case id (locked), and those of them opened now (with `totals`). Three
    rounds at most: a case decided between our insert and our read is replaced by a new one."""
    cases: dict[int, int] = {}
    new: dict[int, int] = {}
    for _ in range(3):
        missing = [c for c in creators if c not in cases]
        if not missing:
            break
        for case_id, creator_id in execute(
                "INSERT INTO risk_case (subject_kind, subject_id, creator_id, state, outcome, score, held_fen, "
                "opened_at, updated_at, decision_note) VALUES "
                + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, '')"] * len(missing))
                + " ON CONFLICT DO NOTHING RETURNING id, subject_id",
                [v for c in missing for v in (CREATOR, c, c, CaseState.OPEN.value, totals[c][2], totals[c][0],
                                              totals[c][1], stamp, stamp)]).fetchall():
            new[int(creator_id)] = int(case_id)
        for case_id, creator_id in execute(
                "SELECT id, subject_id FROM risk_case WHERE subject_kind = %s AND state = %s "
                f"AND subject_id IN ({placeholders(missing)}) ORDER BY subject_id" + for_update(),
                [CREATOR, CaseState.OPEN.value, *missing]).fetchall():
            cases[int(creator_id)] = int(case_id)
    return cases, {c: i for c, i in new.items() if cases.get(c) == i}


def _link(cases: dict[int, int], items: list[CaseItem]) -> set[int]:
    """Link the items' hits to their cases; the hit ids linked now (not before)."""
    pairs = sorted({(cases[item.creator_id], hit) for item in items for hit in item.hit_ids})
    linked: set[int] = set()
    for start in range(0, len(pairs), 1000):
        chunk = pairs[start:start + 1000]
        linked.update(int(r[0]) for r in execute(
            "INSERT INTO risk_case_hit (case_id, hit_id) VALUES " + ", ".join(["(%s, %s)"] * len(chunk))
            + " ON CONFLICT DO NOTHING RETURNING hit_id", [v for pair in chunk for v in pair]).fetchall())
    return linked
