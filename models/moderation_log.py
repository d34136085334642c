"""The moderation decision log (issue 16): one row per decision that content_ai/moderation.py
records, the admin's filtered query, and an operator marking a decision reviewed."""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass

from models.db import db, utcnow
from models.errors import InvalidInput, NotFound
from models.moderation import ModerationDecision

OUTCOMES = ("pass", "rewrite", "block")
SOURCES = ("local", "wechat")
EXCERPT_CHARS = 200
HITS_MAX = 20


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The text as the log keeps it: control and zero-width characters shown as "·", clipped."""
    head = (text or "")[: limit + 1]
    shown = "".join("·" if unicodedata.category(c) in ("Cc", "Cf") and c not in "\n\t" else c for c in head)
    shown = " ".join(shown.split())
    return shown if len(shown) <= limit else shown[:limit - 1] + "…"


def record(*, kind: str, subject: str, outcome: str, hits: tuple[str, ...] | list[str], source: str,
           text: str) -> int:
    """Write one decision (inside a savepoint, so a failure never aborts the caller's
    transaction); its id."""
    if outcome not in OUTCOMES or source not in SOURCES:
        raise InvalidInput(f"bad decision {outcome!r}/{source!r}", code="invalid_decision")
    with db.atomic():
        row = ModerationDecision.create(at=utcnow(), kind=kind[:16], subject=(subject or "")[:96], outcome=outcome,
                                        hits=[h[:64] for h in list(hits)[:HITS_MAX]], source=source,
                                        excerpt=excerpt(text))
    return int(row.id)


@dataclass(frozen=True)
class Filters:
    outcome: str | None = None
    kind: str | None = None
    since: dt.datetime | None = None  # naive UTC, inclusive
    until: dt.datetime | None = None  # naive UTC, exclusive
    reviewed: bool | None = None
    before_id: int | None = None  # paging: rows older than this id


def decisions(filters: Filters, *, limit: int = 100) -> list[ModerationDecision]:
    """The newest decisions matching the filters (id descending)."""
    query = ModerationDecision.select().order_by(ModerationDecision.id.desc()).limit(max(1, min(limit, 500)))
    if filters.outcome:
        if filters.outcome not in OUTCOMES:
            raise InvalidInput(f"unknown outcome {filters.outcome!r}", code="invalid_outcome")
        query = query.where(ModerationDecision.outcome == filters.outcome)
    if filters.kind:
        query = query.where(ModerationDecision.kind == filters.kind[:16])
    if filters.since is not None:
        query = query.where(ModerationDecision.at >= filters.since)
    if filters.until is not None:
        query = query.where(ModerationDecision.at < filters.until)
    if filters.reviewed is not None:
        query = query.where(ModerationDecision.reviewed == filters.reviewed)
    if filters.before_id is not None:
        query = query.where(ModerationDecision.id < filters.before_id)
    return list(query)


def mark_reviewed(decision_id: int, *, actor: str) -> ModerationDecision:
    """An operator has looked at a decision. Raises NotFound decision_not_found, InvalidInput
    already_reviewed."""
    with db.atomic():
        row = (ModerationDecision.get_or_none(ModerationDecision.id == decision_id)
               if 0 < decision_id < 2**63 else None)
        if row is None:
            raise NotFound("审核记录不存在", code="decision_not_found")
        if row.reviewed:
            raise InvalidInput("这条记录已经复核过了", code="already_reviewed")
        row.reviewed, row.reviewed_by, row.reviewed_at = True, actor[:64], utcnow()
        row.save()
    return row
