"""Payouts: what happens to a wallet withdrawal after its request (models/withdrawals.py): an
operator's approval or rejection, and paying due withdrawals out through the payout adapter
(the adapter interface, and the claim, transfer and outcome of each payout).

Why a payout is never sent twice: `pay_due` claims a withdrawal with a compare-and-set
(approved -> paying) that also moves `due_at` forward by a lease; the withdrawal `no` is the
provider's idempotent partner_trade_no; and a `paying` withdrawal whose lease ran out (a crash,
a timeout: the outcome is unknown) is first *queried* by its `no` and only transferred again
when the provider says it never saw it.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from models import approvals, events, ledger
from models.db import db, lock_rows, utcnow
from models.errors import DomainError, InvalidInput, InvalidState, NotFound
from models.network import Creator
from models.users import User
from models.withdrawals import Method, Withdrawal, WithdrawalState, get_withdrawal

log = logging.getLogger(__name__)

PAYING_LEASE_S = 300  # a paying withdrawal is looked at again this long after it was claimed


# ---- the payout adapter interface -------------------------------------------------------------


class PayoutFailed(DomainError):
    """The provider refused the transfer for good (nothing was paid)."""

    code = "payout_failed"
    status = 502


class PayoutUnclear(DomainError):
    """The outcome is unknown (timeout, system error): query by `no` before trying again."""

    code = "payout_unclear"
    status = 502


class TransferState(StrEnum):
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    PROCESSING = "PROCESSING"
    NOT_FOUND = "NOT_FOUND"  # the provider never received a transfer with this no


@dataclass(frozen=True)
class TransferStatus:
    state: TransferState
    reference: str | None = None
    reason: str = ""


class PayoutAdapter(Protocol):
    """Sends money to a WeChat wallet. Implementations live in qianxing/gateways/payout.py."""

    name: str

    def transfer(self, no: str, openid: str, amount_fen: int, desc: str) -> str:
        """Pay `amount_fen` to `openid`; `no` is the idempotent partner_trade_no. Returns the
        provider's reference. Raises PayoutFailed (definitely not paid) or PayoutUnclear."""

    def query(self, no: str) -> TransferStatus:
        """What the provider knows about transfer `no`. Raises PayoutUnclear when it cannot say."""


# ---- operator decisions -----------------------------------------------------------------------


def _locked(withdrawal_id: int) -> Withdrawal:
    found = lock_rows(Withdrawal.select().where(Withdrawal.id == withdrawal_id)).first()
    if found is None:
        raise NotFound(f"withdrawal {withdrawal_id} not found", code="withdrawal_not_found")
    return found


def approve(withdrawal_id: int, actor: str, *,
            second_above_fen: int = approvals.SECOND_APPROVAL_ABOVE_FEN) -> Withdrawal:
    """An operator approves a withdrawal under review. At or below `second_above_fen` (the
    WITHDRAW_SECOND_APPROVAL_ABOVE_FEN setting) that lets it go out at its payout time (or at
    once, if that has passed); above it, it takes two different approvers: the first approval
    is recorded and the withdrawal stays under review until a second, different one
    (models/approvals.py). Approving an approved one again changes nothing.

    Raises NotFound, InvalidState (withdrawal_not_in_review), SameApprover (same_approver)."""
    with db.atomic():
        w = _locked(withdrawal_id)
        if w.state == WithdrawalState.APPROVED and w.reviewed_by:
            return w
        if w.state != WithdrawalState.REVIEW:
            raise InvalidState(f"withdrawal {w.id} is {w.state}, not waiting for review",
                               code="withdrawal_not_in_review")
        decision = approvals.register(w, actor, second_above_fen)
        if not decision.complete:
            events.record("withdrawal.approval_recorded", w.subject, actor, no=w.no,
                          approvals=decision.have, needed=decision.need)
            return w
        now = utcnow()
        Withdrawal.update(state=WithdrawalState.APPROVED.value, reviewed_by=actor[:64],
                          reviewed_at=now).where(Withdrawal.id == w.id).execute()
        events.record("withdrawal.approved", w.subject, actor, no=w.no)
    return get_withdrawal(withdrawal_id)


def reject(withdrawal_id: int, actor: str, reason: str) -> Withdrawal:
    """An operator refuses a wallet withdrawal that has not gone to the provider yet (under
    review or approved and waiting); the money returns to available.

    Raises NotFound, InvalidInput (a reason is required), InvalidState (withdrawal_not_rejectable).
    """
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("say why the withdrawal is rejected", code="reason_required")
    with db.atomic():
        w = _locked(withdrawal_id)
        if w.state == WithdrawalState.REJECTED:
            return w
        if w.state not in (WithdrawalState.REVIEW, WithdrawalState.APPROVED):
            raise InvalidState(f"withdrawal {w.id} is {w.state} and can no longer be rejected",
                               code="withdrawal_not_rejectable")
        Withdrawal.update(state=WithdrawalState.REJECTED.value, reviewed_by=actor[:64],
                          reviewed_at=utcnow(), last_error=reason[:200]).where(
            Withdrawal.id == w.id).execute()
        _return_to_available(w, f"reject:{w.no}", "withdrawal_rejected")
        events.record("withdrawal.rejected", w.subject, actor, no=w.no, reason=reason[:200])
    return get_withdrawal(withdrawal_id)


def _return_to_available(w: Withdrawal, key: str, kind: str) -> None:
    ledger.post(key, kind, [
        ledger.Leg(ledger.creator_account(w.creator_id, ledger.WITHDRAWING), w.amount_fen),
        ledger.Leg(ledger.creator_account(w.creator_id, ledger.AVAILABLE), -w.amount_fen),
    ], memo=f"withdrawal {w.no} returned")


# ---- payouts ----------------------------------------------------------------------------------


class PayOutcome(StrEnum):
    PAID = "paid"
    FAILED = "failed"
    UNCLEAR = "unclear"  # still paying; a later run asks the provider
    SKIPPED = "skipped"  # another run has it, or it is no longer due


@dataclass
class PayDueResult:
    counts: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in PayOutcome})

    def add(self, outcome: PayOutcome) -> None:
        self.counts[outcome.value] += 1


def pay_due(adapter: PayoutAdapter, now: dt.datetime | None = None, batch: int = 100,
            *, actor: str = "system:payout") -> PayDueResult:
    """Pay every approved wallet withdrawal whose payout time has passed, and settle paying
    ones whose outcome we never learned (see the module docstring). Safe to run twice and
    concurrently."""
    now = now or utcnow()
    result = PayDueResult()
    due = [w.id for w in Withdrawal.select(Withdrawal.id).where(
        (Withdrawal.state.in_([WithdrawalState.APPROVED.value, WithdrawalState.PAYING.value]))
        & (Withdrawal.due_at <= now) & (Withdrawal.method == Method.WALLET.value))
        .order_by(Withdrawal.due_at, Withdrawal.id).limit(batch)]
    for withdrawal_id in due:
        result.add(pay_one(adapter, withdrawal_id, now, actor=actor))
    return result


def _claim(withdrawal_id: int, now: dt.datetime, actor: str) -> tuple[Withdrawal, bool] | None:
    """Compare-and-set approved|paying -> paying with a fresh lease; None if another run has it.
    The flag says whether this is a retry (a paying one: ask the provider first)."""
    with db.atomic():
        w = Withdrawal.get_or_none(Withdrawal.id == withdrawal_id)
        if w is None or w.state not in (WithdrawalState.APPROVED, WithdrawalState.PAYING):
            return None
        claimed = Withdrawal.update(
            state=WithdrawalState.PAYING.value, due_at=now + dt.timedelta(seconds=PAYING_LEASE_S),
        ).where((Withdrawal.id == w.id) & (Withdrawal.state == w.state)
                & (Withdrawal.due_at <= now)).execute()
        if not claimed:
            return None
        retry = w.state == WithdrawalState.PAYING
        events.record("withdrawal.paying", w.subject, actor, no=w.no, retry=retry)
    return w, retry


def pay_one(adapter: PayoutAdapter, withdrawal_id: int, now: dt.datetime | None = None, *,
            actor: str = "system:payout") -> PayOutcome:
    """Pay one due withdrawal (see `pay_due`)."""
    now = now or utcnow()
    claim = _claim(withdrawal_id, now, actor)
    if claim is None:
        return PayOutcome.SKIPPED
    w, retry = claim
    try:
        if retry:
            status = adapter.query(w.no)
            if status.state == TransferState.SUCCESS:
                return _finish_paid(w, status.reference or w.no, actor)
            if status.state == TransferState.FAILED:
                return _finish_failed(w, status.reason or "the provider reports the transfer failed",
                                      actor)
            if status.state == TransferState.PROCESSING:
                return _unclear(w, "the provider is still processing the transfer", actor)
        openid = User.select(User.openid).join(Creator, on=(Creator.user == User.id)).where(
            Creator.id == w.creator_id).scalar()
        reference = adapter.transfer(w.no, openid, w.net_fen, f"千星提现 {w.no}")
    except PayoutFailed as exc:
        return _finish_failed(w, exc.message, actor)
    except PayoutUnclear as exc:
        return _unclear(w, exc.message, actor)
    except Exception as exc:  # a bug or an unmapped error: never guess, ask the provider later
        log.exception("payout of withdrawal %s: unexpected error", w.no)
        return _unclear(w, f"unexpected error: {type(exc).__name__}", actor)
    return _finish_paid(w, reference, actor)


def _finish_paid(w: Withdrawal, reference: str, actor: str) -> PayOutcome:
    with db.atomic():
        done = Withdrawal.update(state=WithdrawalState.PAID.value, paid_at=utcnow(),
                                 payout_ref=reference[:64], last_error=None).where(
            (Withdrawal.id == w.id) & (Withdrawal.state == WithdrawalState.PAYING)).execute()
        if not done:
            return PayOutcome.SKIPPED  # a concurrent run settled it first
        legs = [ledger.Leg(ledger.creator_account(w.creator_id, ledger.WITHDRAWING), w.amount_fen),
                ledger.Leg(ledger.PAYOUT_CLEARING, -w.net_fen)]
        if w.fee_fen:
            legs.append(ledger.Leg(ledger.WITHDRAWAL_FEES, -w.fee_fen))
        ledger.post(f"payout:{w.no}", "payout", legs, memo=f"withdrawal {w.no} paid")
        events.record("withdrawal.paid", w.subject, actor, no=w.no, reference=reference[:64],
                      net_fen=w.net_fen, fee_fen=w.fee_fen)
    return PayOutcome.PAID


def _finish_failed(w: Withdrawal, reason: str, actor: str) -> PayOutcome:
    with db.atomic():
        done = Withdrawal.update(state=WithdrawalState.FAILED.value, last_error=reason[:200]).where(
            (Withdrawal.id == w.id) & (Withdrawal.state == WithdrawalState.PAYING)).execute()
        if not done:
            return PayOutcome.SKIPPED
        _return_to_available(w, f"payout-failed:{w.no}", "payout_failed")
        events.record("withdrawal.failed", w.subject, actor, no=w.no, reason=reason[:200])
    return PayOutcome.FAILED


def _unclear(w: Withdrawal, reason: str, actor: str) -> PayOutcome:
    with db.atomic():
        Withdrawal.update(last_error=reason[:200]).where(
            (Withdrawal.id == w.id) & (Withdrawal.state == WithdrawalState.PAYING)).execute()
        events.record("withdrawal.payout_unclear", w.subject, actor, no=w.no, reason=reason[:200])
    log.warning("payout of withdrawal %s unclear (%s); it will be queried again", w.no, reason)
    return PayOutcome.UNCLEAR
