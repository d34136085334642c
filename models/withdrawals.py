"""Withdrawals: a creator's available balance out to a WeChat wallet (T+1, through a payout
adapter) or into shopping credit."""

from __future__ import annotations

from enum import StrEnum

import peewee as pw

from models.db import BaseModel, utcnow
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
