"""What the risk cases queue of the admin reads (issue 15), beside the services that decide
(models/risk_cases.py, which also gives the queue's figures, `summary`, and each case's rule
codes, `codes_of`): one page of cases newest first, keyset on id, by state, outcome and
assignee, with their creators. Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models import risk_cases
from models.network import Creator
from models.risk_tables import CaseState, RiskCase

PAGE = 50
STATES = tuple(s.value for s in CaseState)
OUTCOMES = ("hold", "review")


@dataclass(frozen=True)
class QueueRow:
    case: RiskCase
    creator: Creator | None
    codes: list[str] = field(default_factory=list)


def queue(*, state: str | None = CaseState.OPEN.value, outcome: str | None = None, assignee: str | None = None,
          before_id: int | None = None, limit: int = PAGE) -> list[QueueRow]:
    """One page of cases, newest first (the `state, opened_at` index serves the usual filter).
    `state` None: every state."""
    query = RiskCase.select()
    if state:
        query = query.where(RiskCase.state == state)
    if outcome:
        query = query.where(RiskCase.outcome == outcome)
    if assignee:
        query = query.where(RiskCase.assignee == assignee)
    if before_id is not None:
        query = query.where(RiskCase.id < before_id)
    cases = list(query.order_by(RiskCase.id.desc()).limit(limit))
    creators = creators_by_id({c.creator_id for c in cases if c.creator_id is not None})
    codes = risk_cases.codes_of([c.id for c in cases])
    return [QueueRow(c, creators.get(c.creator_id), codes.get(c.id, [])) for c in cases]


def creators_by_id(ids: set[int]) -> dict[int, Creator]:
    ids = {i for i in ids if i is not None}
    return {c.id: c for c in Creator.select().where(Creator.id.in_(list(ids)))} if ids else {}
