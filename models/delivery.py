"""Delivery: turning a paid order into vouchers, once, and revealing them to their owner.

`fulfil_order` is safe to run any number of times: the order row is locked, it only acts on a
paid order, and vouchers are unique per (order, seq). Top-ups call an upstream provider outside
any transaction, keyed by the order number so a retried call never credits twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import peewee as pw

from models import events
from models.catalog import Kind, Sku
from models.db import BaseModel, db, execute, execute_batch, for_update, lock_rows, placeholders, utcnow
from models.errors import DomainError, NotFound
from models.orders import Order, Status
from models.users import User
from models.vault import CardKey, KeyState, mask, plaintext_of, serial_of

log = logging.getLogger(__name__)


class Voucher(BaseModel):
    order = pw.ForeignKeyField(Order, backref="vouchers", on_delete="RESTRICT", index=False)  # (order, seq)
    user = pw.ForeignKeyField(User, backref="vouchers", on_delete="RESTRICT")
    sku = pw.ForeignKeyField(Sku, on_delete="RESTRICT", index=False)
    seq = pw.IntegerField()
    kind = pw.CharField(max_length=16)
    # One LIVE voucher per key (the partial unique index `voucher_live_card_key`, migration
    # 0007): a refunded voucher keeps its key for the history while the key is sold again.
    card_key = pw.ForeignKeyField(CardKey, null=True, index=False, on_delete="RESTRICT")
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
    FAILED = "failed"  # set aside by the batch job (models/failures.py), retried alone


def fulfil_order(order_id: int) -> Fulfilment:
    """Claim one order's reserved goods for its buyer (see `fulfil_orders`)."""
    return fulfil_orders([order_id])[order_id]


def fulfil_orders(order_ids: list[int]) -> dict[int, Fulfilment]:
    """Claim the reserved goods of many paid orders for their buyers, in one transaction and a
    fixed number of statements whatever the batch size. Card keys and serials become vouchers
    (a bundle is all or nothing); top-ups are handed to `run_topup`. Orders not paid, already
    delivered, or paid late with nothing reserved are left alone (NOOP); an order whose reserved
    keys do not match its items is logged and left for the sweep. A group-buy order still waiting
    for its team (`group_hold`) is left alone too, even if handed over (models/groupbuy.py)."""
    result = {order_id: Fulfilment.NOOP for order_id in order_ids}
    ids = sorted(set(order_ids))
    if not ids:
        return result
    with db.atomic():
        # Lock in id order so concurrent batches never deadlock.
        orders = {row[0]: row[1:] for row in execute(
            f'SELECT id, user_id, recipient_account FROM "order" WHERE id IN ({placeholders(ids)}) '
            # a group-buy order waits for its team (group_hold): never delivered before success
            "AND status = %s AND NOT group_hold ORDER BY id" + for_update(), (*ids, Status.PAID.value)).fetchall()}
        if not orders:
            return result
        paid = list(orders)
        items: dict[int, list[tuple[int, str, int]]] = defaultdict(list)
        for order_id, sku_id, kind, qty in execute(
                "SELECT order_id, sku_id, kind, quantity FROM order_item "
                f"WHERE order_id IN ({placeholders(paid)}) ORDER BY order_id, sku_id", paid).fetchall():
            items[order_id].append((sku_id, kind, qty))
        keys: dict[tuple[int, int], list[int]] = defaultdict(list)
        for key_id, order_id, sku_id in execute(
                f"SELECT id, order_id, sku_id FROM card_key WHERE order_id IN ({placeholders(paid)}) "
                "AND state = %s ORDER BY order_id, id", (*paid, KeyState.RESERVED.value)).fetchall():
            keys[(order_id, sku_id)].append(key_id)
        now = Voucher.created_at.db_value(utcnow())
        statements: list[tuple[str, tuple | list]] = []
        vouchers: list[tuple] = []
        delivered: list[int] = []
        for order_id in paid:
            # No items: paid after expiry with the shelf empty; the refund job settles it.
            if any(kind == Kind.TOPUP for _, kind, _ in items[order_id]):
                statements.append(("INSERT INTO topup_request (order_id, account, state, attempts, "
                                   "created_at) VALUES (%s, %s, %s, 0, %s) ON CONFLICT (order_id) "
                                   "DO NOTHING", (order_id, orders[order_id][1] or "", "pending", now)))
                result[order_id] = Fulfilment.NEEDS_TOPUP
            elif items[order_id] and (goods := _goods(order_id, items[order_id], keys)) is not None:
                user_id = orders[order_id][0]
                vouchers += [(order_id, user_id, sku_id, seq, kind, key_id, now)
                             for seq, (sku_id, kind, key_id) in enumerate(goods)]
                delivered.append(order_id)
                result[order_id] = Fulfilment.DELIVERED
        if delivered:
            marks = placeholders(delivered)
            statements += [
                (f"UPDATE card_key SET state = %s, sold_at = %s WHERE order_id IN ({marks}) "
                 "AND state = %s", (KeyState.SOLD.value, now, *delivered, KeyState.RESERVED.value)),
                ("INSERT INTO voucher (order_id, user_id, sku_id, seq, kind, card_key_id, created_at) "
                 "VALUES " + ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(vouchers)),
                 [v for row in vouchers for v in row]),
                (f'UPDATE "order" SET status = %s, delivered_at = %s WHERE id IN ({marks})',
                 (Status.DELIVERED.value, now, *delivered)),
                events.many_statement("order.delivered", "system", [
                    (f"order:{o}", {"vouchers": sum(1 for v in vouchers if v[0] == o)})
                    for o in delivered]),
            ]
        if statements:
            execute_batch(statements)
    return result


def _goods(order_id: int, items: list[tuple[int, str, int]],
           keys: dict[tuple[int, int], list[int]]) -> list[tuple[int, str, int | None]] | None:
    goods: list[tuple[int, str, int | None]] = []
    for sku_id, kind, qty in items:
        if kind == Kind.CARD_KEY:
            claimed = keys.get((order_id, sku_id), [])
            if len(claimed) != qty:
                log.error("order %s holds %s reserved keys of SKU %s, expected %s",
                          order_id, len(claimed), sku_id, qty)
                return None
            goods += [(sku_id, kind, key_id) for key_id in claimed]
        else:
            goods += [(sku_id, kind, None)] * qty
    return goods


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
        v.revealed_at = utcnow()  # this answer reveals it: say so
        Voucher.update(revealed_at=v.revealed_at).where(
            (Voucher.id == v.id) & Voucher.revealed_at.is_null()).execute()
        events.record("voucher.revealed", f"order:{v.order_id}", user.actor, voucher=v.id)
    return _view(v, secret)
