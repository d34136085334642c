"""An operator's manual adjustment of a creator's star level (the admin's "adjust level").

Evaluation (models/level_evaluation.py) only promotes, to what the metrics earn, and a risk
penalty caps the rank; `set_rank` is the operator's override in between: any rank of the level
table (0 = not yet one-star), never above a penalty's cap (lift the penalty first). It moves no
money: reaching the top rank this way pays no thousand-star bonus (only an earned promotion
does). A rank set below what the metrics earn is raised again by the next evaluation; to keep a
creator down, use a penalty.
"""

from __future__ import annotations

from models import events
from models.db import db, lock_rows
from models.errors import InvalidInput
from models.levels import table
from models.network import Creator


def set_rank(creator: Creator, rank: int, actor: str, reason: str) -> Creator:
    """Set the creator's rank to `rank`, leaving a `creator.level_changed` event (from, to,
    reason) when it changes; setting the current rank changes nothing.

    Raises InvalidInput (invalid_rank, reason_required, rank_above_cap)."""
    top = max((lv.rank for lv in table()), default=0)
    if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank <= top:
        raise InvalidInput(f"the rank must be 0-{top}", code="invalid_rank")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("a level adjustment needs a reason", code="reason_required")
    reason = reason.strip()[:200]
    with db.atomic():
        current = lock_rows(Creator.select().where(Creator.id == creator.id)).get()
        if current.rank_cap is not None and rank > current.rank_cap:
            raise InvalidInput(f"a penalty caps this creator at rank {current.rank_cap}; lift it first",
                               code="rank_above_cap")
        if rank != current.rank:
            Creator.update(rank=rank).where(Creator.id == current.id).execute()
            events.record("creator.level_changed", f"creator:{current.id}", actor,
                          reason=f"operator: {reason}", **{"from": current.rank, "to": rank})
    return Creator.get_by_id(creator.id)
