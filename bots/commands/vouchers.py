"""Vouchers: a shopper's card keys, and resending a delivery notice (private chats only)."""

from __future__ import annotations

import re
import time

from bots.commands.i18n import N_, _
from bots.commands.parsing import first_word
from bots.commands.registry import Command, Context, MenuPlace, command
from bots.commands.replies import MESSAGES, PREFIX, VOUCHERS_MAX, money, text
from bots.types import Reply
from models import delivery
from models.catalog import Sku
from models.errors import DomainError
from models.orders import Order, Status

_VOUCHERS_LABEL = N_("我的卡券")


@command("vouchers", keywords=("我的卡券", "卡券", "卡密"), private=True,
         help=N_("/vouchers · 我的卡券 — 查看卡密（仅私聊）"),
         menu=(MenuPlace("main", 1, 2, _VOUCHERS_LABEL), MenuPlace("join", 0, 1, _VOUCHERS_LABEL),
               MenuPlace("wechat", 2, 3, _VOUCHERS_LABEL)))
def cmd_vouchers(ctx: Context, cmd: Command) -> list[Reply]:
    if not ctx.private:
        return text(_("请私聊机器人查看卡券。"))
    found = delivery.my_vouchers(ctx.user, limit=VOUCHERS_MAX)
    if not found:
        return text(_("你还没有卡券。在小程序下单付款后，卡券会自动发到这里。"), private=True)
    lines = [_("我的卡券（最近 {count} 张，请勿泄露给他人）").format(count=len(found))]
    for i, v in enumerate(found, 1):
        if v.revoked:
            lines.append(_("{i}. {name}：已作废").format(i=i, name=v.name))
            continue
        secret = delivery.reveal(ctx.user, v.id).secret
        lines.append(f"{i}. {v.name}：{secret or v.masked}")
    return text("\n".join(lines), private=True)


def _resend_allowed(ctx: Context) -> bool:
    """A fixed one-hour window per user: RESEND_PER_HOUR resends, then a polite no."""
    window = int(time.time() // 3600)
    key = f"{PREFIX}:resend:{ctx.user.id}:{window}"
    pipe = ctx.redis.pipeline()
    pipe.incr(key)
    pipe.expire(key, 3700)
    count, _expire = pipe.execute()
    return int(count) <= ctx.settings.RESEND_PER_HOUR


STATUS_LABELS = {Status.PENDING: N_("待付款"), Status.PAID: N_("已付款，正在发货"), Status.DELIVERED: N_("已发货"),
                 Status.EXPIRED: N_("已过期（未付款）"), Status.CANCELLED: N_("已取消（未付款）"),
                 Status.REFUNDED: N_("已退款")}


def order_no(text: str) -> str | None:
    """The order number typed (upper-cased), or None; its format is checked after the rate
    limit, so a malformed number counts as a try."""
    no = first_word(text)
    return no.upper() if no is not None else None


@command("resend", keywords=("补发",), private=True, args=order_no,
         help=N_("/resend 订单号 · 补发 订单号 — 重新发送发货通知"))
def cmd_resend(ctx: Context, cmd: Command) -> list[Reply]:
    if not ctx.private:
        return text(_("请私聊机器人补发。"))
    no = cmd.value
    if no is None:
        return text(_("请发送：补发 订单号，例如 补发 QX20250101ABCDEF。订单号在小程序「我的订单」里。"))
    if not _resend_allowed(ctx):
        return text(_("补发太频繁了：每小时最多 {count} 次，请稍后再试。").format(count=ctx.settings.RESEND_PER_HOUR))
    order = None
    if re.fullmatch(r"[A-Z0-9]{4,32}", no):
        order = (Order.select(Order, Sku).join(Sku, on=(Order.sku == Sku.id))
                 .where((Order.no == no) & (Order.user == ctx.user.id)).first())
    if order is None:
        return text(_(MESSAGES["order_not_found"]))
    status = Status(order.status)
    if status != Status.DELIVERED:
        label = _(STATUS_LABELS[status]) if status in STATUS_LABELS else order.status
        return text(_("订单 {no}：{status}。").format(no=order.no, status=label))
    lines = [_("发货通知（补发）"), _("订单号：{no}").format(no=order.no),
             _("商品：{name} × {quantity}").format(name=order.sku.name, quantity=order.quantity),
             _("金额：{amount}").format(amount=money(order.amount_fen))]
    if order.delivered_at:
        lines.append(_("发货时间：{when} (UTC)").format(when=f"{order.delivered_at:%Y-%m-%d %H:%M}"))
    vouchers = (delivery.Voucher.select(delivery.Voucher.id)
                .where((delivery.Voucher.order == order.id) & (delivery.Voucher.user == ctx.user.id))
                .order_by(delivery.Voucher.seq))
    for i, v in enumerate(vouchers, 1):
        try:
            view = delivery.reveal(ctx.user, v.id)
        except DomainError:
            lines.append(_("卡券{i}：已作废").format(i=i))
            continue
        lines.append(_("卡券{i}：{secret}").format(i=i, secret=view.secret or view.masked))
    return text("\n".join(lines), private=True)
