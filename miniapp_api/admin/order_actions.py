"""The operator's actions on one order, each running the services `qianxing orders ...` runs
(qianxing/cli/orders.py), once per form (`actions.perform`), with a reason, audited.

    mark_paid  payments.confirm_payment(source="operator"), then delivery as for any payment
    redeliver  failed notices back to pending, delivery now (also of an order set aside), notices queued
    resend     the delivery notices of a delivered order sent again on every channel
    refund     payments.refund_order through the runtime's gateway, then the commission reversal job
    hold       reversals.hold (held=True); release: held=False
    fraud      reversals.flag_fraud

Work that must follow the commit (queueing delivery or notices) runs after `perform` returns,
so a worker never looks for a change that is not visible yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import peewee as pw
from flask import request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin.actions import Outcome, perform
from miniapp_api.admin.security import Signed
from miniapp_api.deps import runtime
from models import payments, reversals
from models.errors import Conflict, DomainError, InvalidState
from models.money import yuan
from models.notifications import Notification
from models.orders import Order, Status
from tasks import queues
from tasks.delivery import deliver_order
from tasks.maintenance import dispatch_payment

OPERATOR_SOURCE = "operator"  # an offline payment an operator recorded
PAYABLE = (Status.PENDING.value, Status.EXPIRED.value)
PAID = (Status.PAID.value, Status.DELIVERED.value)


@dataclass(frozen=True)
class Spec:
    name: str  # the URL segment and the form's id
    permission: str
    audit: str  # the audit log's action
    label: Any  # lazy string: the button
    applies: Callable[[Order], bool]  # offered on the page for an order in this state
    danger: bool = False


SPECS: dict[str, Spec] = {s.name: s for s in (
    Spec("mark_paid", "orders.mark_paid", "order.mark_paid", _l("标记已付款"), lambda o: o.status in PAYABLE),
    Spec("redeliver", "orders.redeliver", "order.redeliver", _l("重新发货"), lambda o: o.status in PAID),
    Spec("resend", "orders.resend", "order.resend", _l("重发通知"), lambda o: o.status == Status.DELIVERED),
    Spec("refund", "orders.refund", "order.refund", _l("退款"), lambda o: o.status in PAID, danger=True),
    Spec("hold", "orders.hold", "order.hold", _l("风控冻结"), lambda o: not o.risk_hold),
    Spec("release", "orders.hold", "order.release", _l("解除冻结"), lambda o: o.risk_hold),
    Spec("fraud", "orders.fraud", "order.fraud", _l("判定欺诈"),
         lambda o: o.status in (*PAID, Status.REFUNDED.value), danger=True),
)}

# The services' English messages in the operator's language, by error code.
MESSAGES = {
    "order_not_refundable": _l("只有已付款的订单可以退款"),
    "payment_gateway_error": _l("微信支付暂时无法完成退款，已记录为失败，请稍后重试"),
    "amount_mismatch": _l("金额与订单不符"),
    "unknown_order": _l("订单不存在"),
    "order_not_found": _l("订单不存在"),
    "reason_required": _l("请填写原因（至少 2 个字）"),
    "missing_action_token": _l("表单缺少一次性令牌，请刷新页面后重试"),
    "not_deliverable": _l("只有已付款或已发货的订单可以重新发货"),
    "not_delivered": _l("只有已发货的订单可以重发通知"),
    "forbidden": _l("没有权限执行此操作"),
    "reference_taken": _l("这个付款凭证号已经记在另一个订单上"),
}


def message(exc: DomainError) -> str:
    return str(MESSAGES[exc.code]) if exc.code in MESSAGES else exc.message


def snapshot(order_id: int) -> dict[str, Any]:
    o = Order.get_by_id(order_id)
    return {"status": o.status, "risk_hold": o.risk_hold, "paid_at": o.paid_at, "delivered_at": o.delivered_at,
            "refunded_at": o.refunded_at}


def run(spec: Spec, order: Order, who: Signed, reason: str) -> tuple[Outcome, str]:
    """Perform `spec` on `order` for `who`; (outcome, what to tell the operator). Raises
    DomainError (nothing done, the form may be sent again)."""
    actor = f"operator:{who.name}"[:64]  # the width of every actor column
    before = snapshot(order.id)
    common = {"reason": reason, "before": before, "permission": spec.permission,
              "after": lambda result: {**snapshot(order.id), "result": result}}
    obj = f"order:{order.id}"
    if spec.name == "mark_paid":
        reference = " ".join((request.form.get("reference") or "").split())[:60] or f"manual-{order.no}"
        outcome = perform(spec.audit, obj, run=lambda: _mark_paid(order, reference), **common)
        if outcome.duplicate:
            return outcome, ""
        state = outcome.result["outcome"]
        dispatch_payment(order.id, payments.Outcome(state))
        return outcome, {"paid": _("已标记为已付款，正在发货"), "duplicate": _("订单已经付过款，没有重复记账"),
                         "refund": _("订单已过期且库存不足，已安排原路退款")}[state]
    if spec.name == "redeliver":
        outcome = perform(spec.audit, obj, run=lambda: _redeliver(order.id), atomic=False, **common)
        return outcome, _("已重新发货（%(outcome)s），通知已排队", outcome=outcome.result) if outcome.result else ""
    if spec.name == "resend":
        outcome = perform(spec.audit, obj, run=lambda: _reopen_notices(order.id), **common)
        if not outcome.duplicate:
            _queue_notices(order.id)
        return outcome, _("发货通知已重新排队发送")
    if spec.name == "refund":
        outcome = perform(spec.audit, obj, run=lambda: _refund(order.id, actor, reason), atomic=False, **common)
        if outcome.duplicate:
            return outcome, ""
        if outcome.result["state"] == "succeeded":
            queues.reverse_refunded()  # take back its commission
            return outcome, _("已退款 %(amount)s 元", amount=outcome.result["amount"])
        return outcome, _("退款已提交，状态：%(state)s", state=outcome.result["state"])
    if spec.name in ("hold", "release"):
        held = spec.name == "hold"
        outcome = perform(spec.audit, obj, run=lambda: reversals.hold(order.id, held=held, actor=actor,
                                                                      reason=reason), **common)
        if outcome.duplicate or outcome.result:
            return outcome, _("订单已冻结") if held else _("订单已解除冻结")
        return outcome, _("订单本来就是冻结状态") if held else _("订单本来就没有冻结")
    if spec.name == "fraud":
        outcome = perform(spec.audit, obj, run=lambda: reversals.flag_fraud(order.id, actor=actor, reason=reason),
                          **common)
        done = outcome.result or {}
        return outcome, _("已判定欺诈并冻结；撤回佣金 %(reversed)s 笔，追回 %(clawed)s 笔",
                          reversed=done.get("reversed", 0), clawed=done.get("clawed_back", 0))
    raise ValueError(spec.name)


def _mark_paid(order: Order, reference: str) -> dict[str, Any]:
    """The payment's source is "operator": it becomes the payment's provider (16 characters at
    most); who it was is the audit row's."""
    try:
        order_id, outcome = payments.confirm_payment(order.no, reference, order.amount_fen, source=OPERATOR_SOURCE)
    except pw.IntegrityError:  # a payment's transaction id is unique
        raise Conflict("this payment reference is already recorded for another order",
                       code="reference_taken") from None
    return {"order_id": order_id, "outcome": outcome.value, "reference": reference}


def _redeliver(order_id: int) -> str:
    """`qianxing orders redeliver`: failed notices back to pending, delivery run here and now
    (also for an order set aside after failed batches), every channel's notice queued."""
    status = Order.get_by_id(order_id).status
    if status not in PAID:
        raise InvalidState("only paid or delivered orders can be delivered again", code="not_deliverable")
    Notification.update(state="pending").where(
        (Notification.order_id == order_id) & (Notification.state == "failed")).execute()
    outcome = deliver_order(order_id) if status == Status.PAID else status
    _queue_notices(order_id)
    return outcome


def _reopen_notices(order_id: int) -> int:
    """Every delivery notice of a delivered order that is not being sent right now goes back to
    pending, so the queued notice job sends it again (a notice never sent is created by it)."""
    if Order.get_by_id(order_id).status != Status.DELIVERED:
        raise InvalidState("only delivered orders have a delivery notice to send again", code="not_delivered")
    return (Notification.update(state="pending", last_error=None)
            .where((Notification.order_id == order_id) & (Notification.kind == "delivered")
                   & (Notification.state != "sending")).execute())


def _queue_notices(order_id: int) -> None:
    for notifier in runtime().notifiers:
        queues.notify(order_id, notifier.channel)


def _refund(order_id: int, actor: str, reason: str) -> dict[str, Any]:
    rt = runtime()
    refund = payments.refund_order(order_id, rt.gateway, actor=actor, reason=reason,
                                   revoke_unrevealed=rt.settings.REFUND_UNREVEALED_KEYS == "revoke",
                                   restore_coupons=rt.settings.COUPON_RESTORE_ON_REFUND)
    return {"refund_no": refund.refund_no, "state": refund.state, "amount_fen": refund.amount_fen,
            "amount": yuan(refund.amount_fen)}
