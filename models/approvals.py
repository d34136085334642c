"""Approvals of withdrawals under review: above WITHDRAW_SECOND_APPROVAL_ABOVE_FEN it takes two
DIFFERENT operators (the four-eyes rule); at or below it, one approval lets a withdrawal go out.

Every approval is a row `(withdrawal, approver)` with a unique key: the same operator can never
count twice. `payouts.approve` is the one entry point (the admin and `qianxing withdrawals
approve` both go through it): it takes the withdrawal's row lock (SELECT ... FOR UPDATE; SQLite
transactions are IMMEDIATE), then `register` reads the approvals so far and adds this one in the
same transaction. Two approvers at the same moment are therefore serialised on the withdrawal
row: exactly one of them is first, the other sees that approval and is second (or is refused,
when both are the same operator); the unique key backs this up should anything write approvals
without the lock.

An approver is an actor string: `operator:{id}` for an admin operator, `operator:cli` for the
command line (the CLI counts as one approver).
"""

from __future__ import annotations

from dataclasses import dataclass

import peewee as pw

from models.db import BaseModel, db, utcnow
from models.errors import Conflict, InvalidInput
from models.events import Event
from models.withdrawals import Withdrawal, WithdrawalState

SECOND_APPROVAL_ABOVE_FEN = 1_000_000  # the default of the WITHDRAW_SECOND_APPROVAL_ABOVE_FEN setting


class WithdrawalApproval(BaseModel):
    withdrawal = pw.ForeignKeyField(Withdrawal, backref="approvals", on_delete="RESTRICT", index=False)
    approver = pw.CharField(max_length=64)
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "withdrawal_approval"
        indexes = ((("withdrawal", "approver"), True),)  # also serves "the approvals of a withdrawal"


class SameApprover(Conflict):
    """This approver already approved the withdrawal: a second approval must come from someone else."""

    code = "same_approver"


def needed(amount_fen: int, second_above_fen: int) -> int:
    """How many different approvers a withdrawal of `amount_fen` needs: 2 above the threshold."""
    return 2 if amount_fen > second_above_fen else 1


@dataclass(frozen=True)
class Decision:
    """What one more approval does: `record` it, and whether the withdrawal is then `complete`."""

    record: bool
    complete: bool
    have: int  # approvals after this one
    need: int


def decide(amount_fen: int, second_above_fen: int, so_far: list[str] | tuple[str, ...], approver: str) -> Decision:
    """The rule, without the database: an approver who is already among `so_far` is refused
    (SameApprover); otherwise the approval is recorded and completes the withdrawal when the
    distinct approvers reach `needed`."""
    if not approver or not approver.strip():
        raise InvalidInput("an approval needs an approver", code="approver_required")
    if approver in so_far:
        raise SameApprover(f"{approver} already approved this withdrawal; the second approval must come "
                           "from a different operator")
    need = needed(amount_fen, second_above_fen)
    have = len(set(so_far)) + 1
    return Decision(record=True, complete=have >= need, have=have, need=need)


def approvers(withdrawal_id: int) -> list[WithdrawalApproval]:
    """The approvals of a withdrawal, first first."""
    return list(WithdrawalApproval.select().where(WithdrawalApproval.withdrawal == withdrawal_id)
                .order_by(WithdrawalApproval.id))


def register(w: Withdrawal, approver: str, second_above_fen: int) -> Decision:
    """Record `approver`'s approval of `w`, which the caller has locked inside its transaction
    and found under review. Raises SameApprover (also when a concurrent writer without the lock
    inserted the same approval: the unique key)."""
    approver = approver.strip()[:64]
    so_far = [a.approver for a in approvers(w.id)]
    decision = decide(w.amount_fen, second_above_fen, so_far, approver)
    try:
        with db.atomic():  # a savepoint: a duplicate leaves the caller's transaction usable
            WithdrawalApproval.create(withdrawal=w.id, approver=approver)
    except pw.IntegrityError:
        raise SameApprover(f"{approver} already approved this withdrawal; the second approval must come "
                           "from a different operator") from None
    return decision


# ---- the review queue and a withdrawal's story, for operators ----------------------------------------

def queue(state: str, *, before_id: int | None = None, limit: int = 50) -> tuple[list[Withdrawal], int | None]:
    """Withdrawals in one state, newest first, by keyset; returns the page and the id to pass
    as `before_id` for the next one (None: the last page)."""
    limit = max(1, min(limit, 200))
    query = Withdrawal.select().where(Withdrawal.state == WithdrawalState(state).value)
    if before_id:
        query = query.where(Withdrawal.id < before_id)
    rows = list(query.order_by(Withdrawal.id.desc()).limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def ledger_keys(w: Withdrawal) -> list[str]:
    """The keys of every ledger transaction a withdrawal can post (models/withdrawals.py)."""
    return [f"withdraw:{w.no}", f"payout:{w.no}", f"payout-failed:{w.no}", f"reject:{w.no}"]


@dataclass(frozen=True)
class Attempt:
    """One hand-over to the payout provider and what came back."""

    started_at: object
    retry: bool
    outcome: str  # paid, failed, unclear, or "" while nobody knows yet
    answer: str  # the provider's reference or reason
    actor: str


def attempts(history: list[Event]) -> list[Attempt]:
    """The payout attempts in a withdrawal's events: each `withdrawal.paying` and the answer
    that followed it (paid with the provider's reference, failed or unclear with the reason)."""
    out: list[Attempt] = []
    current: dict | None = None
    answers = {"withdrawal.paid": "paid", "withdrawal.failed": "failed", "withdrawal.payout_unclear": "unclear"}
    for e in history:
        if e.topic == "withdrawal.paying":
            if current is not None:
                out.append(Attempt(**current))
            current = {"started_at": e.created_at, "retry": bool(e.payload.get("retry")), "outcome": "",
                       "answer": "", "actor": e.actor}
        elif e.topic in answers and current is not None:
            current["outcome"] = answers[e.topic]
            current["answer"] = str(e.payload.get("reference") or e.payload.get("reason") or "")
            out.append(Attempt(**current))
            current = None
    if current is not None:
        out.append(Attempt(**current))
    return out
