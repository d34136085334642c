"""Shopper refund requests (issue 14): asked from the mini-program or chat; refunded at once
under the policy in settings (keys never revealed, a failed top-up), else queued for operators.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum

import peewee as pw

from models import events
from models.db import BaseModel, db, execute, for_update, placeholders, utcnow
from models.errors import Conflict, InvalidInput, InvalidState, NotFound
from models.money import rmb
from models.notifications import Notice, Notification, Notifier, enqueue_user_notices, send_user_notice
from models.orders import Order, Status
from models.users import User


class RequestState(StrEnum):
    PENDING = "pending"  # in the admin's refund queue
    REFUNDING = "refunding"  # approved (or automatic), the refund under way
    REFUNDED = "refunded"
    REJECTED = "rejected"


class RefundRequest(BaseModel):
    order_id = pw.BigIntegerField(unique=True)  # one request per order
    user_id = pw.BigIntegerField()
    reason = pw.CharField(max_length=200)
    state = pw.CharField(max_length=12, default=RequestState.PENDING.value)
    automatic = pw.BooleanField(default=False)  # decided by the policy, not an operator
    decided_by = pw.CharField(max_length=64, null=True)
    decision_note = pw.CharField(max_length=200, null=True)
    created_at = pw.DateTimeField(default=utcnow)
    decided_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "refund_request"
        indexes = ((("state", "id"), False), (("user_id", "id"), False))


TABLES: list[type[pw.Model]] = [RefundRequest]


class Policy(StrEnum):
    """SELF_REFUND_AUTO: which requests are refunded without an operator."""

    UNREVEALED = "unrevealed"  # nothing was used: keys never revealed, a failed top-up, a group not yet formed
    NEVER = "never"  # every request waits in the admin's refund queue


REASON_MAX = 200
REFUNDABLE = (Status.PAID.value, Status.DELIVERED.value)
NOTICE_KIND = "refund_result"
_GROUP_BEFORE_SUCCESS = ("joining", "paid", "refunding")  # groupbuy.MemberState before the team succeeded
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # tabs and line breaks are whitespace


@dataclass(frozen=True)
class OrderFacts:
    """What the policy looks at (read by `facts_of`)."""

    revealed: int  # vouchers of the order the buyer ever revealed (a key seen is a key used)
    topup: str | None  # the top-up's state (pending, succeeded, failed, cancelled), when a top-up
    group_member: str | None  # the group-buy member state, when a group-buy order


def automatic(facts: OrderFacts, policy: str) -> bool:
    """Whether a shopper's refund request is granted without an operator.

    Under `never`, no request is. Under `unrevealed` (the default):
    - a group-buy member order whose team has not succeeded yet: yes (the group-buy rules free
      its seat on refund; nothing was delivered);
    - a top-up: yes when it failed for good, no once the account was credited (an operator
      checks with the provider), yes while it is still pending;
    - anything else: yes when none of its vouchers was ever revealed (no key was seen, or
      nothing was delivered yet), else an operator decides (the admin's refund queue).
    """
    if policy != Policy.UNREVEALED:
        return False
    if facts.group_member in _GROUP_BEFORE_SUCCESS:
        return True
    if facts.topup == "failed":
        return True
    if facts.topup == "succeeded":
        return False
    return facts.revealed == 0


def facts_of(order_id: int) -> OrderFacts:
    revealed = execute("SELECT COUNT(*) FROM voucher WHERE order_id = %s AND revealed_at IS NOT NULL",
                       (order_id,)).fetchone()[0]
    topup = execute("SELECT state FROM topup_request WHERE order_id = %s", (order_id,)).fetchone()
    member = execute("SELECT state FROM group_member WHERE order_id = %s", (order_id,)).fetchone()
    return OrderFacts(revealed=int(revealed), topup=topup[0] if topup else None,
                      group_member=member[0] if member else None)


def clean_reason(reason: object) -> str:
    """The reason as stored: whitespace runs collapsed, 1..200 characters, no control
    characters but tabs and line breaks (the API's schema states the same). Raises InvalidInput
    (invalid_reason)."""
    if not isinstance(reason, str):
        raise InvalidInput("the reason is text", code="invalid_reason")
    if _CONTROL.search(reason):
        raise InvalidInput("the reason must not hold control characters", code="invalid_reason")
    text = " ".join(reason.split())
    if not text or len(text) > REASON_MAX:
        raise InvalidInput(f"give a reason of 1 to {REASON_MAX} characters", code="invalid_reason")
    return text


def request_refund(order_id: int, user_id: int, reason: object, policy: str) -> RefundRequest:
    """A shopper asks for their paid order's money back. One transaction, the order row locked:
    someone else's order -> NotFound (order_not_found); a second request -> Conflict
    (refund_already_requested, the unique order key); an order not paid or delivered ->
    InvalidState (order_not_refundable); a bad reason -> InvalidInput (invalid_reason). Nothing
    is written on any of them.

    Returns the request: REFUNDING and `automatic` when the policy grants it (`automatic`; the
    caller queues `tasks.refund_requests.refund_requested`, and the sweep picks up any it could
    not queue), else PENDING in the operators' queue."""
    text = clean_reason(reason)
    with db.atomic():
        row = execute(f'SELECT user_id, status FROM "order" WHERE id = %s{for_update()}', (order_id,)).fetchone()
        if row is None or row[0] != user_id:
            raise NotFound(f"order {order_id} not found", code="order_not_found")
        if RefundRequest.select().where(RefundRequest.order_id == order_id).exists():
            raise Conflict("a refund was already requested for this order", code="refund_already_requested")
        if row[1] not in REFUNDABLE:
            raise InvalidState(f"order {order_id} is {row[1]}: only a paid order can be refunded",
                               code="order_not_refundable")
        auto = automatic(facts_of(order_id), policy)
        state = RequestState.REFUNDING if auto else RequestState.PENDING
        now = utcnow()
        try:
            with db.atomic():  # a savepoint: a concurrent second request loses on the unique key
                request = RefundRequest.create(order_id=order_id, user_id=user_id, reason=text, state=state.value,
                                               automatic=auto, decided_by="policy" if auto else None,
                                               decided_at=now if auto else None)
        except pw.IntegrityError:
            raise Conflict("a refund was already requested for this order",
                           code="refund_already_requested") from None
        events.record("refund.requested", f"order:{order_id}", f"user:{user_id}", request=request.id,
                      automatic=auto)
    return request


def of_order(order_id: int, user_id: int) -> RefundRequest:
    """The buyer's request on their order. NotFound: order_not_found (not theirs),
    refund_request_not_found (none yet)."""
    owner = execute('SELECT user_id FROM "order" WHERE id = %s', (order_id,)).fetchone()
    if owner is None or owner[0] != user_id:
        raise NotFound(f"order {order_id} not found", code="order_not_found")
    found = RefundRequest.get_or_none(RefundRequest.order_id == order_id)
    if found is None:
        raise NotFound("no refund was requested for this order", code="refund_request_not_found")
    return found


def get(request_id: int) -> RefundRequest:
    found = RefundRequest.get_or_none(RefundRequest.id == request_id)
    if found is None:
        raise NotFound(f"refund request {request_id} not found", code="refund_request_not_found")
    return found


def _decide(request_id: int, to: RequestState, actor: str, note: str, channels: list[str]) -> RefundRequest:
    note = " ".join((note or "").split())[:REASON_MAX]
    with db.atomic():
        request = get(request_id)
        flipped = (RefundRequest.update(state=to.value, decided_by=actor[:64], decision_note=note or None,
                                        decided_at=utcnow())
                   .where((RefundRequest.id == request_id) & (RefundRequest.state == RequestState.PENDING))
                   .execute())
        if not flipped:
            raise InvalidState(f"refund request {request_id} is {request.state}, no longer pending",
                               code="request_not_pending")
        if to == RequestState.REJECTED:
            enqueue_user_notices([(notice_key(request_id, to, ch), request.user_id, ch, NOTICE_KIND)
                                  for ch in channels])
        events.record(f"refund.{'approved' if to == RequestState.REFUNDING else 'rejected'}",
                      f"order:{request.order_id}", actor, request=request_id, note=note)
    return get(request_id)


def approve(request_id: int, actor: str, note: str = "", channels: list[str] | None = None) -> RefundRequest:
    """An operator grants a pending request: REFUNDING (the caller queues the refund job).
    Raises NotFound, InvalidState (request_not_pending: decided before)."""
    return _decide(request_id, RequestState.REFUNDING, actor, note, channels or [])


def reject(request_id: int, actor: str, note: str = "", channels: list[str] | None = None) -> RefundRequest:
    """An operator refuses a pending request: REJECTED, the shopper's notice recorded in the
    same transaction (on `channels`; the caller pushes it). Raises as `approve`."""
    return _decide(request_id, RequestState.REJECTED, actor, note, channels or [])


def refunded(request_id: int, channels: list[str]) -> bool:
    """After the order's refund succeeded: REFUNDING -> REFUNDED, the shopper's notice recorded
    in the same transaction. True when this call made the change (exactly once)."""
    with db.atomic():
        request = get(request_id)
        flipped = (RefundRequest.update(state=RequestState.REFUNDED.value)
                   .where((RefundRequest.id == request_id) & (RefundRequest.state == RequestState.REFUNDING))
                   .execute())
        if flipped:
            enqueue_user_notices([(notice_key(request_id, RequestState.REFUNDED, ch), request.user_id, ch,
                                   NOTICE_KIND) for ch in channels])
    return bool(flipped)


def recheck(request_id: int, policy: str) -> bool:
    """Just before the refund of a request the policy granted: is it still granted? A key the
    buyer revealed after asking (the app still showed it) sends the request back to the
    operators' queue (REFUNDING -> PENDING, no longer automatic). Requests an operator approved
    are left alone. True when the refund may go ahead."""
    with db.atomic():
        request = get(request_id)
        if request.state != RequestState.REFUNDING:
            return False
        if not request.automatic or automatic(facts_of(request.order_id), policy):
            return True
        (RefundRequest.update(state=RequestState.PENDING.value, automatic=False, decided_by=None, decided_at=None)
         .where((RefundRequest.id == request_id) & (RefundRequest.state == RequestState.REFUNDING)).execute())
        events.record("refund.requeued", f"order:{request.order_id}", "policy", request=request_id,
                      why="used after the request")
    return False


def refunding(limit: int = 100) -> list[int]:
    """Requests granted but not refunded yet (the sweep finishes them)."""
    return [r.id for r in RefundRequest.select(RefundRequest.id).where(RefundRequest.state == RequestState.REFUNDING)
            .order_by(RefundRequest.id).limit(limit)]


# ---- telling the shopper ----------------------------------------------------------------------


def notice_key(request_id: int, state: str, channel: str) -> str:
    return f"refund_request:{request_id}:{state}:{channel}"


def notice_of(request: RefundRequest) -> Notice:
    """The shopper's notice of a decided request (texts are data, shown as written)."""
    order = Order.get_by_id(request.order_id)
    if request.state == RequestState.REFUNDED:
        text = f"退款成功：订单 {order.no} 的 {rmb(order.amount_fen)} 已原路退回。"
    else:
        note = f"说明：{request.decision_note}" if request.decision_note else ""
        text = f"退款申请未通过：订单 {order.no}。{note}"
    return Notice(kind=NOTICE_KIND, order_no="", order_id=0, product=order.no, amount_fen=order.amount_fen,
                  when=(request.decided_at or utcnow()).strftime("%Y-%m-%d %H:%M"),
                  page=f"pages/orders/detail?id={order.id}", text=text)


def push_notices(request_id: int, notifiers: list[Notifier]) -> dict[str, str]:
    """Push the decided request's notice on every channel, each at most once (the notification
    row's key); per channel the `send_user_notice` outcome. Outside any transaction."""
    request = get(request_id)
    if request.state not in (RequestState.REFUNDED, RequestState.REJECTED):
        return {}
    notice = notice_of(request)
    user = User.get_by_id(request.user_id)
    return {n.channel: send_user_notice(notice_key(request_id, request.state, n.channel), user, notice, n)
            for n in notifiers}


def unsent_notices(since: dt.datetime, limit: int = 200) -> list[int]:
    """Requests decided since `since` whose notice is still pending on some channel."""
    decided = [r.id for r in RefundRequest.select(RefundRequest.id).where(
        RefundRequest.state.in_([RequestState.REFUNDED.value, RequestState.REJECTED.value])
        & (RefundRequest.decided_at >= since)).order_by(RefundRequest.id).limit(limit)]
    if not decided:
        return []
    prefixes = [f"refund_request:{i}:" for i in decided]
    pending = Notification.select(Notification.key).where(
        (Notification.order_id == 0) & (Notification.kind == NOTICE_KIND) & (Notification.state == "pending"))
    waiting = {int(n.key.split(":")[1]) for n in pending if any(n.key.startswith(p) for p in prefixes)}
    return sorted(waiting)


# ---- the operators' queue ---------------------------------------------------------------------


@dataclass(frozen=True)
class QueueRow:
    id: int
    order_id: int
    order_no: str
    buyer_openid: str
    amount_fen: int
    reason: str
    revealed: int  # vouchers the buyer revealed
    created_at: dt.datetime


def pending_queue(*, before_id: int | None = None, limit: int = 50) -> list[QueueRow]:
    """Pending requests, newest first (keyset on the id: the (state, id) index)."""
    query = (RefundRequest.select(RefundRequest, Order.no, Order.amount_fen, User.openid)
             .join(Order, on=(Order.id == RefundRequest.order_id))
             .join(User, on=(User.id == Order.user))
             .where(RefundRequest.state == RequestState.PENDING))
    if before_id is not None:
        query = query.where(RefundRequest.id < before_id)
    rows = list(query.order_by(RefundRequest.id.desc()).limit(limit).objects())
    revealed: dict[int, int] = {}
    ids = [r.order_id for r in rows]
    if ids:
        revealed = dict(execute(
            f"SELECT order_id, COUNT(*) FROM voucher WHERE order_id IN ({placeholders(ids)}) "
            "AND revealed_at IS NOT NULL GROUP BY order_id", ids).fetchall())
    return [QueueRow(id=r.id, order_id=r.order_id, order_no=r.no, buyer_openid=r.openid, amount_fen=r.amount_fen,
                     reason=r.reason, revealed=int(revealed.get(r.order_id, 0)), created_at=r.created_at)
            for r in rows]
