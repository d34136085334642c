"""Withdrawals: a creator's available balance out to a WeChat wallet (T+1, through a payout
adapter) or into shopping credit. This module holds the withdrawal itself and its request: the
table, the policy, the fee quote, the balance checks and the request's ledger entry, and the
reading side (lists, balances). What happens after the request, the operator's approval or
rejection and paying due withdrawals out through the payout adapter, is in models/payouts.py.

Life cycle (`withdrawal.state`; every change is an event on `withdrawal:{id}`):
    review    wallet withdrawals above WITHDRAW_REVIEW_ABOVE_FEN, or flagged by a risk rule
              (first, spike, shared payout account), wait for an operator
    approved  waits for its payout time (`due_at`, T+1 by default)
    paying    claimed by `payouts.pay_due` and handed to the payout adapter
    paid      the provider paid it (wallet), or it became shopping credit (credit, at once)
    rejected  an operator refused it; the money went back to available
    failed    the provider refused it for good; the money went back to available

Money (see models.ledger; a creator's money is a credit, i.e. negative, balance):
    withdraw:{no}        available -> withdrawing (wallet) or available -> credit (credit)
    payout:{no}          withdrawing -> payout clearing (net) + withdrawal fee income (fee)
    payout-failed:{no}   withdrawing -> available
    reject:{no}          withdrawing -> available

Why two requests can never take more than is available: the request locks the creator row
(SELECT ... FOR UPDATE; SQLite transactions are IMMEDIATE) and sums the available postings in
the same transaction that posts `withdraw:{no}`.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import peewee as pw

from models import events, ledger, live_rules, risk_penalties
from models.db import BaseModel, db, lock_rows, utcnow
from models.errors import Conflict, InvalidInput, NotFound
from models.levels import StarLevel
from models.network import Creator


class Method(StrEnum):
    WALLET = "wallet"
    CREDIT = "credit"


class WithdrawalState(StrEnum):
    REVIEW = "review"  # above the approval threshold: waits for an operator
    APPROVED = "approved"  # waits for its payout time (T+1)
    PAYING = "paying"  # handed to the payout adapter; outcome unknown until it answers
    PAID = "paid"
    REJECTED = "rejected"
    FAILED = "failed"


class Withdrawal(BaseModel):
    no = pw.CharField(max_length=32, unique=True)  # partner_trade_no towards the payout provider
    creator = pw.ForeignKeyField(Creator, backref="withdrawals", on_delete="RESTRICT")
    method = pw.CharField(max_length=8)
    amount_fen = pw.BigIntegerField()  # taken from the available balance
    fee_fen = pw.BigIntegerField()
    state = pw.CharField(max_length=16)
    request_key = pw.CharField(max_length=128, null=True)
    requested_at = pw.DateTimeField(default=utcnow)
    due_at = pw.DateTimeField()
    reviewed_by = pw.CharField(max_length=64, null=True)
    reviewed_at = pw.DateTimeField(null=True)
    paid_at = pw.DateTimeField(null=True)
    payout_ref = pw.CharField(max_length=64, null=True)
    last_error = pw.CharField(max_length=200, null=True)

    class Meta:
        indexes = ((("creator", "request_key"), True), (("state", "due_at"), False))

    @property
    def net_fen(self) -> int:
        return self.amount_fen - self.fee_fen

    @property
    def subject(self) -> str:
        return f"withdrawal:{self.id}"


# ---- policy ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WithdrawPolicy:
    min_fen: int = 10_000  # 100 yuan
    fee_bp: int = 100  # 1%, unless the creator's star level has a withdraw_fee_bp perk
    delay_hours: int = 24  # T+1
    review_above_fen: int = 500_000  # wallet withdrawals above this wait for an operator

    @classmethod
    def from_settings(cls, settings: Any) -> WithdrawPolicy:
        return cls(min_fen=settings.WITHDRAW_MIN_FEN, fee_bp=settings.WITHDRAW_FEE_BP,
                   delay_hours=settings.WITHDRAW_PAYOUT_DELAY_H,
                   review_above_fen=settings.WITHDRAW_REVIEW_ABOVE_FEN)


# ---- requests ---------------------------------------------------------------------------------


def _new_no() -> str:
    """`WD` + date + 16 hex digits: letters and digits only, as partner_trade_no requires."""
    return "WD" + utcnow().strftime("%Y%m%d") + secrets.token_hex(8).upper()


def _available_owed(creator_id: int) -> int:
    """What the platform owes the creator in `available` (negative: the creator is in debt)."""
    return ledger.owed_to_creator(creator_id, (ledger.AVAILABLE,))[ledger.AVAILABLE]


@dataclass(frozen=True)
class Quote:
    amount: int  # what leaves the available balance, fen
    fee: int  # what the platform keeps
    net: int  # what arrives: amount - fee


def quote(amount_fen: int, fee_bp: int) -> Quote:
    """What a withdrawal of `amount_fen` at `fee_bp` costs and pays: the only place the rule
    lives. fee = floor(amount x fee_bp / 10000), rounded down so the fee never exceeds the rate;
    net = amount - fee, so fee + net == amount to the fen. A credit withdrawal is quoted at 0 bp
    (no fee); a wallet one at `fee_bp_of` the creator's level."""
    fee = amount_fen * fee_bp // 10_000
    return Quote(amount=amount_fen, fee=fee, net=amount_fen - fee)


def fee_bp_of(level_fee_bp: int | None, policy: WithdrawPolicy) -> int:
    """The wallet fee rate: the star level's withdraw_fee_bp perk when it has one, else the policy's."""
    return int(level_fee_bp) if level_fee_bp is not None else policy.fee_bp


def fee_bp_for(rank: int, policy: WithdrawPolicy, method: Method | str = "wallet") -> int:
    """The fee rate of a withdrawal by a creator of star level `rank`: 0 for credit, else `fee_bp_of`."""
    if Method(method) == Method.CREDIT:
        return 0
    level = StarLevel.get_or_none(StarLevel.rank == rank)
    return fee_bp_of(level.withdraw_fee_bp if level is not None else None, policy)


def _creator_id(creator: Creator | int) -> int:
    return creator if isinstance(creator, int) else creator.id


def request_withdrawal(creator: Creator | int, amount_fen: int, method: Method | str, *,
                       policy: WithdrawPolicy, request_key: str | None = None,
                       actor: str | None = None, review_codes: Sequence[str] = ()) -> Withdrawal:
    """Take `amount_fen` out of the creator's available balance.

    Wallet: the fee is `quote(amount, fee_bp_for(rank, policy))` (the level's perk, else the setting); the money
    moves to `withdrawing` and is paid out at T+1, after an operator's approval above the
    review threshold. Credit: no fee; it becomes shopping credit at once. The same
    `request_key` twice returns the same withdrawal. `review_codes` (the risk rules that fired,
    models/risk_withdrawal_checks.py) send a wallet withdrawal to review whatever its amount;
    its event names them.

    Raises InvalidInput (bad amount, method or key; below_minimum), NotFound (the creator),
    Conflict (in_debt, insufficient_balance, request_key_reused).
    """
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
        raise InvalidInput("amount_fen must be an integer number of fen", code="invalid_amount")
    try:
        method = Method(method)
    except ValueError:
        raise InvalidInput("method must be wallet or credit", code="invalid_method") from None
    if amount_fen < policy.min_fen:
        raise InvalidInput(f"the minimum withdrawal is {policy.min_fen} fen", code="below_minimum")
    if request_key is not None and not 1 <= len(request_key) <= 128:
        raise InvalidInput("request_key must be 1-128 characters", code="invalid_request_key")
    creator_id = _creator_id(creator)
    with db.atomic():
        row = lock_rows(Creator.select().where(Creator.id == creator_id)).first()
        if row is None:
            raise NotFound(f"creator {creator_id} not found", code="not_a_creator")
        if request_key is not None:
            existing = Withdrawal.get_or_none((Withdrawal.creator == creator_id)
                                              & (Withdrawal.request_key == request_key))
            if existing is not None:
                if (existing.amount_fen, existing.method) != (amount_fen, method.value):
                    raise Conflict("this request_key was used for another withdrawal",
                                   code="request_key_reused")
                return existing
        suspended = risk_penalties.withdrawals_suspended(creator_id)
        if suspended is not None:
            until = (f"至 {live_rules.local_time(suspended.until, 'Asia/Shanghai')}（北京时间）"
                     if suspended.until else "")
            raise Conflict(f"你的提现功能因风控处罚暂停{until}，如有疑问请联系客服。", code="withdrawals_suspended")
        owed = _available_owed(creator_id)
        if owed < 0:
            raise Conflict(f"your balance owes {-owed} fen; it is netted against future "
                           "earnings before you can withdraw", code="in_debt")
        if amount_fen > owed:
            raise Conflict(f"only {owed} fen is available", code="insufficient_balance")
        now = utcnow()
        fee = quote(amount_fen, fee_bp_for(row.rank, policy, method)).fee  # 0 for credit
        if method == Method.CREDIT:
            state, target, due = WithdrawalState.PAID, ledger.CREDIT, now
        else:
            review = amount_fen > policy.review_above_fen or bool(review_codes)
            state = WithdrawalState.REVIEW if review else WithdrawalState.APPROVED
            target, due = ledger.WITHDRAWING, now + dt.timedelta(hours=policy.delay_hours)
        withdrawal = Withdrawal.create(
            no=_new_no(), creator=creator_id, method=method.value, amount_fen=amount_fen,
            fee_fen=fee, state=state.value, request_key=request_key, requested_at=now, due_at=due,
            paid_at=now if state == WithdrawalState.PAID else None)
        ledger.post(f"withdraw:{withdrawal.no}", "withdrawal", [
            ledger.Leg(ledger.creator_account(creator_id, ledger.AVAILABLE), amount_fen),
            ledger.Leg(ledger.creator_account(creator_id, target), -amount_fen),
        ], memo=f"{method.value} withdrawal {withdrawal.no}")
        events.record(f"withdrawal.{state.value}", withdrawal.subject,
                      actor or f"creator:{creator_id}", no=withdrawal.no, method=method.value,
                      amount_fen=amount_fen, fee_fen=fee, due_at=due.isoformat(),
                      **({"risk": list(review_codes)} if review_codes and method == Method.WALLET else {}))
    return withdrawal


# ---- reading ----------------------------------------------------------------------------------


def get_withdrawal(withdrawal_id: int) -> Withdrawal:
    found = Withdrawal.get_or_none(Withdrawal.id == withdrawal_id)
    if found is None:
        raise NotFound(f"withdrawal {withdrawal_id} not found", code="withdrawal_not_found")
    return found


def list_withdrawals(creator: Creator | int, limit: int = 20,
                     before_id: int | None = None) -> list[Withdrawal]:
    """A creator's withdrawals, newest first; page with `before_id`."""
    query = Withdrawal.select().where(Withdrawal.creator == _creator_id(creator))
    if before_id:
        query = query.where(Withdrawal.id < before_id)
    return list(query.order_by(Withdrawal.id.desc()).limit(max(1, min(limit, 100))))


def find_withdrawals(state: WithdrawalState | str | None = None, limit: int = 100) -> list[Withdrawal]:
    """Every creator's withdrawals (operators), newest first, optionally in one state."""
    query = Withdrawal.select()
    if state is not None:
        query = query.where(Withdrawal.state == WithdrawalState(state).value)
    return list(query.order_by(Withdrawal.id.desc()).limit(limit))


def balances(creator_id: int) -> dict[str, int]:
    """A creator's balances in fen as numbers owed TO the creator: `pending_fen`,
    `available_fen` (never below 0), `withdrawing_fen`, `credit_fen`, and `debt_fen` (what the
    creator owes the platform after a clawback took `available` below zero; 0 otherwise)."""
    owed = ledger.owed_to_creator(creator_id)
    return {
        "pending_fen": owed[ledger.PENDING],
        "available_fen": max(owed[ledger.AVAILABLE], 0),
        "withdrawing_fen": owed[ledger.WITHDRAWING],
        "credit_fen": owed[ledger.CREDIT],
        "debt_fen": max(-owed[ledger.AVAILABLE], 0),
    }
