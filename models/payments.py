"""Payments: preparing a payment, confirming it from a verified notification, refunds.

Gateways (WeChat Pay through wechatpy, the sandbox) live outside models/ and implement
`PaymentGateway`; this module only holds the rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import peewee as pw

from models import coupons, events, groupbuy, inventory, ledger, live_prices
from models.catalog import Kind, Sku
from models.db import BaseModel, db, execute, execute_batch, for_update, is_postgres, lock_rows, utcnow
from models.delivery import TopupRequest, Voucher
from models.errors import Conflict, DomainError, InvalidState, NotFound, OutOfStock, PaymentRejected
from models.network import Creator
from models.orders import Order, Status
from models.users import User
from models.vault import CardKey, KeyState


class PaymentState(StrEnum):
    PREPARED = "prepared"
    PAID = "paid"


class Payment(BaseModel):
    order = pw.ForeignKeyField(Order, unique=True, backref="payment", on_delete="RESTRICT")
    provider = pw.CharField(max_length=16)
    prepay_id = pw.CharField(max_length=64, null=True)
    transaction_id = pw.CharField(max_length=64, null=True, unique=True)
    amount_fen = pw.IntegerField()
    state = pw.CharField(max_length=16, default=PaymentState.PREPARED.value)
    created_at = pw.DateTimeField(default=utcnow)
    paid_at = pw.DateTimeField(null=True)


class Refund(BaseModel):
    order = pw.ForeignKeyField(Order, unique=True, on_delete="RESTRICT")
    refund_no = pw.CharField(max_length=32, unique=True)
    amount_fen = pw.IntegerField()
    reason = pw.CharField(max_length=200, default="")
    actor = pw.CharField(max_length=64)
    state = pw.CharField(max_length=16, default="requested")  # requested, succeeded, failed
    provider_ref = pw.CharField(max_length=64, null=True)
    last_error = pw.CharField(max_length=200, null=True)
    attempts = pw.IntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])  # gateway tries (issue 14)
    next_attempt_at = pw.DateTimeField(null=True)  # a failed refund's next automatic try
    created_at = pw.DateTimeField(default=utcnow)
    done_at = pw.DateTimeField(null=True)


class GatewayError(DomainError):
    """The payment provider could not be reached or refused; safe to retry later."""

    code = "payment_gateway_error"
    status = 502


@dataclass(frozen=True)
class QueryResult:
    state: str  # SUCCESS, NOTPAY, CLOSED, REFUND, USERPAYING, PAYERROR, NOTFOUND
    transaction_id: str | None = None
    total_fee: int | None = None


class PaymentGateway(Protocol):
    name: str

    def prepare(self, order: Order, openid: str, client_ip: str) -> tuple[str, dict[str, Any]]:
        """Create the provider-side order; return (prepay_id, mini-program payment params)."""

    def query(self, order_no: str) -> QueryResult: ...

    def refund(self, order_no: str, refund_no: str, total_fee: int, refund_fee: int) -> str: ...


def prepare_payment(order: Order, gateway: PaymentGateway, openid: str, client_ip: str) -> dict:
    """Ask the gateway for payment parameters for a pending order.

    Raises InvalidState when the order is no longer payable, GatewayError on provider trouble.
    """
    if order.status != Status.PENDING or order.expires_at <= utcnow():
        raise InvalidState("this order can no longer be paid", code="order_not_payable")
    prepay_id, params = gateway.prepare(order, openid, client_ip)
    with db.atomic():
        updated = (
            Payment.update(prepay_id=prepay_id)
            .where((Payment.order == order.id) & (Payment.state == PaymentState.PREPARED))
            .execute()
        )
        if not updated:
            Payment.insert(
                order=order.id, provider=gateway.name, prepay_id=prepay_id,
                amount_fen=order.amount_fen,
            ).on_conflict_ignore().execute()
    return params


class Outcome(StrEnum):
    PAID = "paid"  # newly paid: deliver
    DUPLICATE = "duplicate"  # already processed: answer success, do nothing
    REFUND = "refund"  # paid after expiry with what it held gone, or after a cancel: refund it


def confirm_payment(order_no: str, transaction_id: str, total_fee: int, *, source: str) -> tuple[int, Outcome]:
    """Apply a verified payment. Idempotent under concurrent duplicates: the order row is locked,
    the transaction id is unique and the ledger key is unique.

    The ledger gets `ledger.sale_legs` (with the coupon discount leg) under `payment:{no}`, and
    the order's coupons are consumed (`coupons.paid_statements`), in the same transaction. A late
    payment is recorded all the same: an EXPIRED order is revived if everything it held can be
    taken again (`_revive`), else REFUND; a CANCELLED one (by the buyer, or its group-buy team
    failed) is REFUND. Such an order holds no stock, so delivery hands nothing out for it.

    Raises PaymentRejected for an unknown order or a wrong amount (nothing is written).
    """
    if is_postgres():
        settled = _confirm_on_postgres(order_no, transaction_id, total_fee, source)
        if settled is not None:
            return settled
    with db.atomic():
        row = execute(_PAYABLE + for_update("FOR UPDATE OF o"), (order_no,)).fetchone()
        if row is None:
            raise PaymentRejected(f"unknown order {order_no}", code="unknown_order")
        order_id, status, amount_fen, sku_id, quantity, payment_id, payment_state, paid_txn, discount = row
        subject = f"order:{order_id}"
        if total_fee != amount_fen:
            raise PaymentRejected("amount does not match the order", code="amount_mismatch")
        if payment_state == PaymentState.PAID:
            if paid_txn != transaction_id:
                events.record("payment.second_transaction", subject, source,
                              transaction_id=transaction_id)
            return order_id, Outcome.DUPLICATE
        outcome = Outcome.PAID
        if status == Status.EXPIRED:
            outcome = _revive(order_id, sku_id, quantity)
        elif status == Status.CANCELLED:
            outcome = Outcome.REFUND
        elif status != Status.PENDING:
            return order_id, Outcome.DUPLICATE
        now = Payment.paid_at.db_value(utcnow())
        execute_batch([
            *_paid_statements(order_id, payment_id, source, total_fee, transaction_id, now),
            *coupons.paid_statements(order_id),
            *ledger.posting_statements(
                f"payment:{order_no}", "payment", ledger.sale_legs(ledger.CASH_WECHATPAY, total_fee, discount),
                order_id=order_id),
            events.statement("order.paid", subject, source, transaction_id=transaction_id,
                             amount_fen=total_fee, late=status != Status.PENDING),
        ])
    return order_id, outcome


def _confirm_on_postgres(order_no: str, transaction_id: str, total_fee: int,
                         source: str) -> tuple[int, Outcome] | None:
    """The common case (a pending order) in one round trip: qx_confirm_payment (migration
    0002, its coupon legs and statements since 0020). None for an expired order (it may
    re-reserve) and for a cancelled one (paid, then refunded): both take the Python path above."""
    payload = events.Event.payload.db_value
    order_id, outcome = execute(
        "SELECT * FROM qx_confirm_payment(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (order_no, transaction_id, total_fee, source, utcnow(), ledger.CASH_WECHATPAY,
         ledger.SALES, ledger.DISCOUNT_EXPENSE,
         payload({"transaction_id": transaction_id, "amount_fen": total_fee, "late": False}),
         payload({"transaction_id": transaction_id})),
    ).fetchone()
    if outcome == "unknown_order":
        raise PaymentRejected(f"unknown order {order_no}", code="unknown_order")
    if outcome == "amount_mismatch":
        raise PaymentRejected("amount does not match the order", code="amount_mismatch")
    if outcome in (Status.EXPIRED, Status.CANCELLED):
        return None
    return order_id, Outcome.PAID if outcome == "paid" else Outcome.DUPLICATE


def _paid_statements(order_id: int, payment_id: int | None, provider: str, amount_fen: int,
                     transaction_id: str, now: object, *, claim_provider: bool = False) -> list[tuple]:
    """The order and payment writes that make a locked, payable order paid (every payment path
    uses them). `claim_provider` also renames the provider of an existing payment row (a credit
    payment of an order that had a WeChat Pay payment prepared)."""
    if payment_id is None:
        payment = ("INSERT INTO payment (order_id, provider, amount_fen, transaction_id, state, "
                   "created_at, paid_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                   (order_id, provider, amount_fen, transaction_id, PaymentState.PAID.value, now, now))
    elif claim_provider:
        payment = ("UPDATE payment SET provider = %s, transaction_id = %s, state = %s, paid_at = %s "
                   "WHERE id = %s", (provider, transaction_id, PaymentState.PAID.value, now, payment_id))
    else:
        payment = ("UPDATE payment SET transaction_id = %s, state = %s, paid_at = %s WHERE id = %s",
                   (transaction_id, PaymentState.PAID.value, now, payment_id))
    return [('UPDATE "order" SET status = %s, paid_at = %s WHERE id = %s',
             (Status.PAID.value, now, order_id)), payment]


CREDIT_PROVIDER = "credit"


def pay_with_credit(order_id: int, user: User) -> Order:
    """Pay one of the buyer's pending orders with their shopping credit (a creator's credit
    withdrawals, models.withdrawals). In one transaction: lock the order, lock the creator row
    (as credit withdrawals do) and read the credit balance, post credit -> sales under
    `credit-payment:{order no}` (`ledger.sale_legs`, with the coupon discount leg), and mark the
    order paid with the statements every payment uses (`_paid_statements`,
    `coupons.paid_statements`) plus the `order.paid` event. No cash leg: the PostgreSQL
    qx_confirm_payment function posts WeChat Pay cash and is not used here. The caller queues
    delivery, as for any payment. Paying an order already paid with credit returns it again.

    Raises NotFound (order_not_found), InvalidState (order_not_payable: not pending or past its
    deadline), Conflict (insufficient_credit: not a creator, or too little credit).
    """
    creator = Creator.get_or_none(Creator.user == user.id)
    with db.atomic():
        order = lock_rows(Order.select().where((Order.id == order_id) & (Order.user == user.id))).first()
        if order is None:
            raise NotFound(f"order {order_id} not found", code="order_not_found")
        payment = Payment.get_or_none(Payment.order == order.id)
        if (order.status in (Status.PAID, Status.DELIVERED) and payment is not None
                and payment.provider == CREDIT_PROVIDER):
            return Order.get_by_id(order.id)
        if order.status != Status.PENDING or order.expires_at <= utcnow():
            raise InvalidState("this order can no longer be paid", code="order_not_payable")
        if creator is None:
            raise Conflict("you have no shopping credit", code="insufficient_credit")
        lock_rows(Creator.select().where(Creator.id == creator.id)).get()
        account = ledger.creator_account(creator.id, ledger.CREDIT)
        credit = ledger.owed_to_creator(creator.id, (ledger.CREDIT,))[ledger.CREDIT]
        if credit < order.amount_fen:
            raise Conflict(f"your shopping credit ({credit} fen) does not cover this order "
                           f"({order.amount_fen} fen)", code="insufficient_credit")
        now = Payment.paid_at.db_value(utcnow())
        reference = f"credit-{order.no}"
        execute_batch([
            *_paid_statements(order.id, payment.id if payment else None, CREDIT_PROVIDER,
                              order.amount_fen, reference, now, claim_provider=True),
            *coupons.paid_statements(order.id),
            *ledger.posting_statements(
                f"credit-payment:{order.no}", "credit_payment",
                ledger.sale_legs(account, order.amount_fen, order.discount_fen), order_id=order.id),
            events.statement("order.paid", order.subject, user.actor, transaction_id=reference,
                             amount_fen=order.amount_fen, late=False, method=CREDIT_PROVIDER,
                             creator=creator.id),
        ])
    return Order.get_by_id(order.id)


FREE_PROVIDER = "free"


def pay_free(order_id: int, *, actor: str) -> Order:
    """Confirm a zero-amount order as paid (a prize of the reservation lottery, models/lottery.py:
    a zero-price order that then goes through delivery like any other). In one transaction
    under the order's lock: the order and payment writes every payment uses (`_paid_statements`,
    provider `free`) and the `order.paid` event. No ledger transaction: the ledger records money
    that moves and none does (the supply cost of the prize shows as the order's `cost_fen`, as
    for any sale). The caller queues delivery, as for any payment. Paying it again returns it.

    Raises NotFound (order_not_found), InvalidState (order_not_payable: not pending, past its
    deadline, or not a zero-amount order).
    """
    with db.atomic():
        order = lock_rows(Order.select().where(Order.id == order_id)).first()
        if order is None:
            raise NotFound(f"order {order_id} not found", code="order_not_found")
        payment = Payment.get_or_none(Payment.order == order.id)
        if (order.status in (Status.PAID, Status.DELIVERED) and payment is not None
                and payment.provider == FREE_PROVIDER):
            return Order.get_by_id(order.id)
        if order.amount_fen != 0 or order.status != Status.PENDING or order.expires_at <= utcnow():
            raise InvalidState("this order cannot be confirmed free of charge", code="order_not_payable")
        now = Payment.paid_at.db_value(utcnow())
        reference = f"free-{order.no}"
        execute_batch([
            *_paid_statements(order.id, payment.id if payment else None, FREE_PROVIDER, 0, reference, now,
                              claim_provider=True),
            events.statement("order.paid", order.subject, actor, transaction_id=reference, amount_fen=0,
                             late=False, method=FREE_PROVIDER),
        ])
    return Order.get_by_id(order.id)


_PAYABLE = (
    "SELECT o.id, o.status, o.amount_fen, o.sku_id, o.quantity, p.id, p.state, p.transaction_id, "
    "o.discount_fen "
    'FROM "order" o LEFT JOIN payment p ON p.order_id = o.id WHERE o.no = %s'
)


class _Gone(Exception):
    """What an expired order held was taken by someone else meanwhile."""


def _revive(order_id: int, sku_id: int, quantity: int) -> Outcome:
    """A payment for an expired order: take back everything it held, all or nothing (one
    savepoint): its live tier place, its coupons' uses (`coupons.reclaim`: the coupon may be
    exhausted by now), its group-buy seat (`groupbuy.reclaim`: the team may be full or closed)
    and its stock. REFUND when any of them is gone."""
    try:
        with db.atomic():  # savepoint
            if not live_prices.reclaim(order_id):  # its live tier filled up meanwhile
                raise _Gone("sold out at the live price")
            if not coupons.reclaim(order_id):
                raise _Gone("its coupon was used up meanwhile")
            if groupbuy.team_of_order(order_id) is not None and not groupbuy.reclaim(order_id):
                raise _Gone("its group-buy team has no seat for it any more")
            inventory.reserve(order_id, Sku.get_by_id(sku_id), quantity)
    except (OutOfStock, _Gone):
        return Outcome.REFUND
    return Outcome.PAID


def refund_order(order_id: int, gateway: PaymentGateway, *, actor: str, reason: str,
                 revoke_unrevealed: bool = False, restore_coupons: bool = True) -> Refund:
    """Refund a paid order in full. Unrevealed keys go back to the pool (or are revoked),
    revealed ones are revoked; an order.refunded event is written for commission clawback.
    Idempotent: a second call returns the finished refund.

    An order paid with shopping credit is refunded to that credit, without the gateway.

    `refund:{no}` posts the payment's `ledger.sale_legs` negated, and `coupons.on_refund` gives
    the coupons' uses back (the buyer's grants too when `restore_coupons`, the setting
    COUPON_RESTORE_ON_REFUND, and still valid) in the same transaction.

    Raises InvalidState when the order was never paid, GatewayError when the provider fails
    (the refund stays requested and can be retried).
    """

    with db.atomic():
        order = lock_rows(Order.select().where(Order.id == order_id)).first()
        if order is None or order.status not in (Status.PAID, Status.DELIVERED, Status.REFUNDED):
            raise InvalidState("only paid orders can be refunded", code="order_not_refundable")
        Refund.insert(order=order.id, refund_no=f"R{order.no[1:]}", amount_fen=order.amount_fen,
                      reason=reason[:200], actor=actor).on_conflict_ignore().execute()
        refund = Refund.get(Refund.order == order.id)
    if refund.state == "succeeded":
        return refund
    credit = _credit_account(order)
    free = order.amount_fen == 0  # a prize: no money to send back, no ledger entry (pay_free)
    try:
        provider_ref = (f"credit-{refund.refund_no}" if credit else f"free-{refund.refund_no}" if free else
                        gateway.refund(order.no, refund.refund_no, order.amount_fen, refund.amount_fen))
    except GatewayError as exc:
        Refund.update(state="failed", last_error=str(exc)[:200]).where(Refund.id == refund.id).execute()
        raise
    with db.atomic():
        order = lock_rows(Order.select().where(Order.id == order_id)).get()
        if order.status == Status.REFUNDED:
            return Refund.get_by_id(refund.id)
        now = utcnow()
        live_prices.released([order.id])  # a live order's places go back to its tier, once
        groupbuy.on_refund(order.id)  # a group-buy member: refunded; before success its place is free again
        vouchers = {v.card_key_id: v for v in Voucher.select().where(Voucher.order == order.id)}
        for key in CardKey.select().where(CardKey.order_id == order.id):
            voucher = vouchers.get(key.id)
            unseen = voucher is None or voucher.revealed_at is None
            back = unseen and not revoke_unrevealed and key.state != KeyState.REVOKED
            CardKey.update(
                state=KeyState.AVAILABLE if back else KeyState.REVOKED,
                order_id=None if back else order.id,
                reserved_at=None, sold_at=None if back else key.sold_at,
            ).where(CardKey.id == key.id).execute()
        for item in inventory.items_of(order.id):
            if item.kind == Kind.TOPUP and vouchers:
                continue  # the account was credited; nothing returns to the shelf
            if item.kind != Kind.CARD_KEY:
                inventory.Sku.update(stock=inventory.Sku.stock + item.quantity).where(
                    inventory.Sku.id == item.sku_id).execute()
        Voucher.update(revoked_at=now).where(Voucher.order == order.id).execute()
        # A top-up still queued must not credit the account after its money went back.
        TopupRequest.update(state="cancelled", done_at=now).where(
            (TopupRequest.order == order.id) & (TopupRequest.state == "pending")).execute()
        Order.update(status=Status.REFUNDED, refunded_at=now).where(Order.id == order.id).execute()
        Refund.update(state="succeeded", provider_ref=provider_ref, done_at=now).where(
            Refund.id == refund.id).execute()
        if not free:
            ledger.post(
                f"refund:{order.no}", "refund",
                [ledger.Leg(leg.account, -leg.amount_fen) for leg in
                 ledger.sale_legs(credit or ledger.CASH_WECHATPAY, order.amount_fen, order.discount_fen)],
                order_id=order.id,
            )
        coupons.on_refund(order.id, restore=restore_coupons)
        events.record("order.refunded", order.subject, actor, reason=reason,
                      amount_fen=order.amount_fen, ref=order.ref_code)
    return Refund.get_by_id(refund.id)


def _credit_account(order: Order) -> str | None:
    """The buyer's `creator:X:credit` account when the order was paid with shopping credit."""
    paid_by = Payment.select(Payment.provider).where(Payment.order == order.id).scalar()
    if paid_by != CREDIT_PROVIDER:
        return None
    creator = Creator.get(Creator.user == order.user_id)
    return ledger.creator_account(creator.id, ledger.CREDIT)


def unclear_orders(older_than_s: int, limit: int = 200) -> list[Order]:
    """Unpaid orders (pending, expired or cancelled: a late payment is refunded) with a prepared
    payment whose outcome we have not heard of yet."""
    import datetime as dt

    cutoff = utcnow() - dt.timedelta(seconds=older_than_s)
    return list(
        Order.select()
        .join(Payment, on=(Payment.order == Order.id))
        .where((Order.status.in_([Status.PENDING, Status.EXPIRED, Status.CANCELLED]))
               & (Payment.state == PaymentState.PREPARED)
               & (Order.created_at <= cutoff)
               & (Order.created_at >= cutoff - dt.timedelta(days=2)))
        .order_by(Order.id)
        .limit(limit)
    )
