"""One order's whole record for an operator: the order, its buyer, SKU and seller chain, event
history, payment and refund, vouchers and keys, notices and deliveries, set-aside failures,
commission and ledger transactions: about ten indexed lookups by the order's id (the order with
its SKU, buyer, payment, refund, top-up and settlement is one of them), whatever the data.

Card keys appear only masked, from the vault's stored hint and length (`CardKey.masked`):
nothing here decrypts a key or a serial, whoever asks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import peewee as pw

from models import events
from models.catalog import Kind, Sku
from models.delivery import TopupRequest, Voucher
from models.errors import NotFound
from models.events import Event
from models.failures import FailureView, of_item
from models.ledger import LedgerTransaction, Posting
from models.live import LiveSession
from models.network import Creator
from models.notifications import Notification, NotificationAttempt
from models.orders import Order
from models.payments import Payment, Refund
from models.settlement import Commission, Settlement
from models.users import User
from models.vault import CardKey, mask

SERIAL_MASK = mask("", 8)  # a serial's code is the SKU's, shared by every buyer: never shown


@dataclass(frozen=True)
class KeyLine:
    """A card key or voucher of the order, masked."""

    seq: int | None  # the voucher's place in the order; None for a key not (yet) in a voucher
    sku_code: str
    kind: str
    masked: str
    key_id: int | None
    key_state: str | None
    topup_ref: str | None
    created_at: dt.datetime | None
    revealed_at: dt.datetime | None
    revoked_at: dt.datetime | None


@dataclass(frozen=True)
class NoticeLine:
    notification: Notification
    attempts: list[NotificationAttempt]


@dataclass(frozen=True)
class LedgerLine:
    txn: LedgerTransaction
    postings: list[Posting]


@dataclass(frozen=True)
class CommissionLine:
    creator_id: int
    creator_code: str
    kind: str
    amount_fen: int
    created_at: dt.datetime


@dataclass(frozen=True)
class OrderRecord:
    order: Order  # with .sku
    buyer: User
    chain: list[Creator]  # the seller, then its upline (parent, grandparent) as far as they exist
    live: LiveSession | None
    events: list[Event]
    payment: Payment | None
    refund: Refund | None
    keys: list[KeyLine]
    topup: TopupRequest | None
    notices: list[NoticeLine]
    failures: list[FailureView]
    settlement: Settlement | None
    commissions: list[CommissionLine]
    ledger: list[LedgerLine]


def _chain(seller_id: int | None) -> list[Creator]:
    """The seller and its two uplines, in one query (each creator row names both)."""
    if seller_id is None:
        return []
    up = Creator.alias()
    found = {c.id: c for c in Creator.select().where(
        (Creator.id == seller_id)
        | (Creator.id == up.select(up.parent).where(up.id == seller_id))
        | (Creator.id == up.select(up.grandparent).where(up.id == seller_id)))}
    seller = found.get(seller_id)
    if seller is None:
        return []
    return [seller, *(found[i] for i in (seller.parent_id, seller.grandparent_id) if i in found)]


def _keys(order_id: int) -> list[KeyLine]:
    lines: list[KeyLine] = []
    shown: set[int] = set()
    vouchers = (Voucher.select(Voucher, Sku, CardKey).join(Sku, on=(Voucher.sku == Sku.id)).switch(Voucher)
                .join(CardKey, pw.JOIN.LEFT_OUTER, on=(Voucher.card_key == CardKey.id))
                .where(Voucher.order == order_id).order_by(Voucher.seq))
    for v in vouchers:
        key = v.card_key if v.card_key_id is not None else None
        if key is not None:
            shown.add(key.id)
        masked = key.masked if key is not None else SERIAL_MASK if v.kind == Kind.SERIAL else ""
        lines.append(KeyLine(v.seq, v.sku.code, v.kind, masked, key.id if key else None,
                             key.state if key else None, v.topup_ref, v.created_at, v.revealed_at, v.revoked_at))
    # Keys held for the order but in no voucher (reserved while it is paid but undelivered,
    # or revoked by a refund before delivery).
    for key in (CardKey.select(CardKey, Sku).join(Sku).where(CardKey.order_id == order_id).order_by(CardKey.id)):
        if key.id not in shown:
            lines.append(KeyLine(None, key.sku.code, Kind.CARD_KEY.value, key.masked, key.id, key.state, None,
                                 key.reserved_at, None, None))
    return lines


def _notices(order_id: int) -> list[NoticeLine]:
    rows = (Notification.select(Notification, NotificationAttempt)
            .join(NotificationAttempt, pw.JOIN.LEFT_OUTER, on=(NotificationAttempt.notification == Notification.id),
                  attr="attempt")
            .where(Notification.order_id == order_id).order_by(Notification.id, NotificationAttempt.id))
    lines: dict[int, NoticeLine] = {}
    for row in rows:
        line = lines.setdefault(row.id, NoticeLine(row, []))
        if row.attempt is not None:
            line.attempts.append(row.attempt)
    return list(lines.values())


def _commissions(order_id: int) -> list[CommissionLine]:
    rows = (Commission.select(Commission, Creator.code)
            .join(Creator, pw.JOIN.LEFT_OUTER, on=(Creator.id == Commission.creator_id))
            .where(Commission.order_id == order_id).order_by(Commission.id).objects())
    return [CommissionLine(r.creator_id, r.code or "?", r.kind, r.amount_fen, r.created_at) for r in rows]


def _ledger(order_id: int) -> list[LedgerLine]:
    rows = (Posting.select(Posting, LedgerTransaction).join(LedgerTransaction)
            .where(LedgerTransaction.order_id == order_id).order_by(LedgerTransaction.id, Posting.id))
    lines: dict[int, LedgerLine] = {}
    for posting in rows:
        lines.setdefault(posting.txn.id, LedgerLine(posting.txn, [])).postings.append(posting)
    return list(lines.values())


def order_record(order_id: int) -> OrderRecord:
    """Everything about one order. Raises NotFound."""
    order = (Order.select(Order, Sku, User, Payment, Refund, TopupRequest, Settlement)
             .join(Sku, on=(Order.sku == Sku.id), attr="sku").switch(Order)
             .join(User, on=(Order.user == User.id), attr="user").switch(Order)
             .join(Payment, pw.JOIN.LEFT_OUTER, on=(Payment.order == Order.id), attr="the_payment").switch(Order)
             .join(Refund, pw.JOIN.LEFT_OUTER, on=(Refund.order == Order.id), attr="the_refund").switch(Order)
             .join(TopupRequest, pw.JOIN.LEFT_OUTER, on=(TopupRequest.order == Order.id), attr="the_topup")
             .switch(Order)
             .join(Settlement, pw.JOIN.LEFT_OUTER, on=(Settlement.order_id == Order.id), attr="the_settlement")
             .where(Order.id == order_id).first())
    if order is None:
        raise NotFound(f"order {order_id} not found", code="order_not_found")
    return OrderRecord(
        order=order,
        buyer=order.user,
        chain=_chain(order.seller_id),
        live=LiveSession.get_or_none(LiveSession.id == order.live_id) if order.live_id else None,
        events=events.events_for(order.subject),
        payment=order.the_payment,
        refund=order.the_refund,
        keys=_keys(order.id),
        topup=order.the_topup,
        notices=_notices(order.id),
        failures=of_item(order.id),
        settlement=order.the_settlement,
        commissions=_commissions(order.id),
        ledger=_ledger(order.id),
    )
