"""Shopper self-service in chat (issue 14, private chats only): cancel an unpaid order
(「取消订单 <订单号或ID>」 or /cancel) and ask for a refund (「退款 <订单号或ID> <原因>」 or
/refund). The same services as the mini-program; a refund the policy grants is made by the
refund sweep within a minute (a bot cannot queue jobs), and the result is pushed to the shopper."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bots.commands.i18n import N_, _
from bots.commands.parsing import ChatInputError
from bots.commands.registry import Command, Context, command
from bots.commands.replies import FAILED, money, text
from bots.types import Reply
from models import live_orders, orders, refund_requests
from models.errors import DomainError
from models.orders import Order

_ORDER_NO = re.compile(r"^[A-Z0-9]{4,32}$")
_ORDER_ID = re.compile(r"^\d{1,18}$")
_CANCEL_USAGE = N_("请发送：取消订单 订单号，例如 取消订单 QX20250101ABCDEF。订单号在小程序「我的订单」里。")
# Polite answers to the refusals of the services, by error code.
_REFUSED = {
    "order_not_found": N_("没有找到你的这个订单，请核对订单号。"),
    "order_not_cancellable": N_("这个订单已付款或已关闭，不能取消。已付款的订单可以申请退款：退款 订单号 原因。"),
    "order_not_refundable": N_("只有已付款的订单可以申请退款。"),
    "refund_already_requested": N_("这个订单已经申请过退款了，请等待处理结果。"),
    "invalid_reason": N_("退款原因最多 200 个字，请简短说明。"),
}


@dataclass(frozen=True)
class RefundArgs:
    order: str
    reason: str


def order_ref(value: str) -> str:
    """An order number (QX…) or id as typed; upper-cased."""
    word = value.split()[0].upper() if value.split() else ""
    if not word:
        raise ChatInputError(_(_CANCEL_USAGE))
    if not (_ORDER_NO.match(word) or _ORDER_ID.match(word)):
        raise ChatInputError(_("「{text}」不是订单号，请核对后重新发送。").format(text=word[:20]))
    return word


def refund_args(value: str) -> RefundArgs:
    words = value.split(maxsplit=1)
    if len(words) < 2:
        raise ChatInputError(_("请发送：退款 订单号 原因，例如 退款 QX20250101ABCDEF 买错了。"))
    return RefundArgs(order=order_ref(words[0]), reason=words[1])


def _find(ctx: Context, ref: str) -> Order | None:
    """The user's own order by number or id (someone else's is not found)."""
    where = (Order.no == ref) if not ref.isdigit() else ((Order.id == int(ref)) | (Order.no == ref))
    return Order.select().where(where & (Order.user == ctx.user.id)).first()


def _refused(exc: DomainError) -> list[Reply]:
    return text(_(_REFUSED[exc.code]) if exc.code in _REFUSED else _(FAILED))


@command("cancel_order", slash=("cancel",), keywords=("取消订单",), private=True, args=order_ref,
         help=N_("/cancel 订单号 · 取消订单 订单号 — 取消未付款的订单"))
def cmd_cancel(ctx: Context, cmd: Command) -> list[Reply]:
    if not ctx.private:
        return text(_("请私聊机器人取消订单。"))
    order = _find(ctx, cmd.value)
    if order is None:
        return text(_(_REFUSED["order_not_found"]))
    try:
        cancelled = orders.cancel_order(order.id, ctx.user)
    except DomainError as exc:
        return _refused(exc)
    live_orders.reopen_gates(ctx.redis, [cancelled.id])
    return text(_("订单 {no} 已取消，库存和优惠券已释放。").format(no=cancelled.no))


@command("refund_request", slash=("refund",), keywords=("退款",), private=True, args=refund_args,
         help=N_("/refund 订单号 原因 · 退款 订单号 原因 — 申请退款"))
def cmd_refund(ctx: Context, cmd: Command) -> list[Reply]:
    if not ctx.private:
        return text(_("请私聊机器人申请退款。"))
    args: RefundArgs = cmd.value
    order = _find(ctx, args.order)
    if order is None:
        return text(_(_REFUSED["order_not_found"]))
    try:
        found = refund_requests.request_refund(order.id, ctx.user.id, args.reason, ctx.settings.SELF_REFUND_AUTO)
    except DomainError as exc:
        return _refused(exc)
    if found.automatic:
        return text(_("退款申请已通过：订单 {no} 的 {amount} 将原路退回，到账后会通知你。").format(
            no=order.no, amount=money(order.amount_fen)))
    return text(_("退款申请已提交：订单 {no}。客服审核后会通知你结果。").format(no=order.no))
