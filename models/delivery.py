"""Delivery: turning a paid order into vouchers, once, and revealing them to their owner.

`fulfil_order` is safe to run any number of times: the order row is locked, it only acts on a
paid order, and vouchers are unique per (order, seq). Top-ups call an upstream provider outside
any transaction, keyed by the order number so a retried call never credits twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import peewee as pw

from models import events, inventory
from models.catalog import Kind, Sku
from models.db import BaseModel, db, lock_rows, utcnow
from models.errors import DomainError, NotFound
from models.orders import Order, Status
from models.users import User
from models.vault import CardKey, KeyState, VaultError, mask, plaintext_of, serial_of


class Voucher(BaseModel):
    order = pw.ForeignKeyField(Order, backref="vouchers", on_delete="RESTRICT")
    user = pw.ForeignKeyField(User, backref="vouchers", on_delete="RESTRICT")
    sku = pw.ForeignKeyField(Sku, on_delete="RESTRICT")
    seq = pw.IntegerField()
    kind = pw.CharField(max_length=16)
    card_key = pw.ForeignKeyField(CardKey, null=True, unique=True, on_delete="RESTRICT")
    topup_ref = pw.CharField(max_length=64, null=True)
    created_at = pw.DateTimeField(default=utcnow)
    revealed_at = pw.DateTimeField(null=True)
    revoked_at = pw.DateTimeField(null=True)

    class Meta:
        indexes = ((("order", "seq"), True),)


class TopupRequest(BaseModel):
    order = pw.ForeignKeyField(Order, unique=True, on_delete="RESTRICT")
    account = pw.CharField(max_length=64)
    state = pw.CharField(max_length=16, default="pending")  # pending, succeeded, failed
    attempts = pw.IntegerField(default=0)
    provider_ref = pw.CharField(max_length=64, null=True)
    last_error = pw.CharField(max_length=200, null=True)
    created_at = pw.DateTimeField(default=utcnow)
    done_at = pw.DateTimeField(null=True)


class TopupFailed(DomainError):
    """The provider refused for good (bad account, product withdrawn)."""

    code = "topup_failed"


class TopupUnavailable(DomainError):
    """The provider is down or slow; retry later."""

    code = "topup_unavailable"
    status = 503


class TopupProvider(Protocol):
    def recharge(self, request_id: str, sku_code: str, account: str, face_fen: int) -> str:
        """Credit the account; return the provider's reference. Idempotent per request_id.
        Raises TopupFailed or TopupUnavailable."""


class Fulfilment(StrEnum):
    DELIVERED = "delivered"
    NEEDS_TOPUP = "needs_topup"
    NOOP = "noop"


def fulfil_order(order_id: int) -> Fulfilment:
    """Claim the order's reserved goods for its buyer. Card keys and serials become vouchers
    in one transaction (a bundle is all or nothing); a top-up is handed to `run_topup`."""
    with db.atomic():
        order = lock_rows(Order.select().where(Order.id == order_id)).first()
        if order is None or order.status != Status.PAID:
            return Fulfilment.NOOP
        items = inventory.items_of(order.id)
        if not items:
            # Paid after expiry with the shelf empty (Outcome.REFUND): nothing is reserved and
            # the refund job settles it; delivering would mark it delivered with no vouchers.
            return Fulfilment.NOOP
        if any(item.kind == Kind.TOPUP for item in items):
            TopupRequest.insert(order=order.id, account=order.recipient_account or "").on_conflict_ignore().execute()
            return Fulfilment.NEEDS_TOPUP
        rows: list[dict] = []
        for item in items:
            if item.kind == Kind.CARD_KEY:
                keys = list(CardKey.select(CardKey.id).where(
                    (CardKey.order_id == order.id) & (CardKey.sku == item.sku_id)
                    & (CardKey.state == KeyState.RESERVED)).order_by(CardKey.id))
                if len(keys) != item.quantity:
                    raise VaultError(f"order {order.id} lost its reserved keys")
                CardKey.update(state=KeyState.SOLD, sold_at=utcnow()).where(
                    CardKey.id.in_([k.id for k in keys])).execute()
                rows += [{"sku": item.sku_id, "kind": item.kind, "card_key": k.id} for k in keys]
            else:
                rows += [{"sku": item.sku_id, "kind": item.kind, "card_key": None}] * item.quantity
        _write_vouchers(order, rows)
        return Fulfilment.DELIVERED


def _write_vouchers(order: Order, rows: list[dict]) -> None:
    now = utcnow()
    Voucher.insert_many(
        [dict(row, order=order.id, user=order.user_id, seq=i) for i, row in enumerate(rows)]
    ).execute()
    Order.update(status=Status.DELIVERED, delivered_at=now).where(Order.id == order.id).execute()
    events.record("order.delivered", order.subject, "system", vouchers=len(rows))


def run_topup(order_id: int, provider: TopupProvider) -> Fulfilment:
    """Call the provider for a paid top-up order and record the outcome. Raises
    TopupUnavailable / TopupFailed for the job to retry or refund."""
    request = TopupRequest.get_or_none(TopupRequest.order == order_id)
    if request is None or request.state != "pending":
        return Fulfilment.NOOP
    order = Order.select(Order, Sku).join(Sku).where(Order.id == order_id).get()
    TopupRequest.update(attempts=TopupRequest.attempts + 1).where(TopupRequest.id == request.id).execute()
    try:
        ref = provider.recharge(order.no, order.sku.code, request.account, order.amount_fen)
    except (TopupFailed, TopupUnavailable) as exc:
        TopupRequest.update(last_error=exc.message[:200]).where(TopupRequest.id == request.id).execute()
        events.record("topup.attempt_failed", order.subject, "system", error=exc.code)
        raise
    with db.atomic():
        order = lock_rows(Order.select().where(Order.id == order_id)).get()
        done = TopupRequest.update(state="succeeded", provider_ref=ref, done_at=utcnow()).where(
            (TopupRequest.id == request.id) & (TopupRequest.state == "pending")).execute()
        if not done or order.status != Status.PAID:
            return Fulfilment.NOOP
        _write_vouchers(order, [{"sku": order.sku_id, "kind": Kind.TOPUP, "card_key": None,
                                 "topup_ref": ref}])
    return Fulfilment.DELIVERED


def give_up_topup(order_id: int, error: str) -> bool:
    """Mark a top-up failed for good; True if this call made the change (then refund)."""
    return bool(TopupRequest.update(state="failed", last_error=error[:200], done_at=utcnow()).where(
        (TopupRequest.order == order_id) & (TopupRequest.state == "pending")).execute())


# ---- buyer's view --------------------------------------------------------------------------


@dataclass(frozen=True)
class VoucherView:
    id: int
    order_id: int
    sku: str
    name: str
    kind: str
    masked: str
    secret: str | None  # plaintext, only when revealed to the owner
    revealed: bool
    revoked: bool
    created_at: str


def _view(v: Voucher, secret: str | None) -> VoucherView:
    if v.kind == Kind.CARD_KEY:
        masked = v.card_key.masked
    elif v.kind == Kind.TOPUP:
        masked = f"top-up {v.topup_ref}"
    else:
        masked = mask("", 8)
    return VoucherView(v.id, v.order_id, v.sku.code, v.sku.name, v.kind, masked, secret,
                       v.revealed_at is not None, v.revoked_at is not None,
                       v.created_at.isoformat() + "Z")


def my_vouchers(user: User, limit: int = 50) -> list[VoucherView]:
    query = (Voucher.select(Voucher, Sku, CardKey).join(Sku).switch(Voucher)
             .join(CardKey, pw.JOIN.LEFT_OUTER).where(Voucher.user == user)
             .order_by(Voucher.id.desc()).limit(limit))
    return [_view(v, None) for v in query]


def reveal(user: User, voucher_id: int) -> VoucherView:
    """The plaintext of one voucher, for its owner only; the first reveal is recorded.
    Raises NotFound for someone else's voucher (no hint that it exists) or a revoked one."""
    v = (Voucher.select(Voucher, Sku, CardKey).join(Sku).switch(Voucher)
         .join(CardKey, pw.JOIN.LEFT_OUTER)
         .where((Voucher.id == voucher_id) & (Voucher.user == user)).first())
    if v is None or v.revoked_at is not None:
        raise NotFound("voucher not found", code="voucher_not_found")
    if v.kind == Kind.CARD_KEY:
        secret = plaintext_of(v.card_key)
    elif v.kind == Kind.SERIAL:
        secret = serial_of(v.sku)
    else:
        secret = v.topup_ref
    if v.revealed_at is None:
        Voucher.update(revealed_at=utcnow()).where(
            (Voucher.id == v.id) & Voucher.revealed_at.is_null()).execute()
        events.record("voucher.revealed", f"order:{v.order_id}", user.actor, voucher=v.id)
    return _view(v, secret)
