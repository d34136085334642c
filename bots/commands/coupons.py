"""Coupons in chat (issue 14, private chats only): claim one by its code (「领券 <code>」 or
/claim <code>) and list my coupons (「我的券」 or /coupons). Applying a coupon is part of
ordering in the mini-program."""

from __future__ import annotations

import time

from bots.commands.i18n import N_, _
from bots.commands.parsing import ChatInputError
from bots.commands.registry import Command, Context, command
from bots.commands.replies import PREFIX, money, percent, text
from bots.types import Reply
from models import coupons, risk_gate
from models.errors import DomainError

WALLET_LINES = 10
CLAIM_FAILED = N_("领券没有成功，请稍后再试。")
# Polite answers to the refusals of models.coupons.claim.
_REFUSED = {
    "coupon_not_found": N_("没有这个券码，请核对后重新发送（不区分大小写）。"),
    "coupon_expired": N_("这张券不在有效期内。"),
    "coupon_inactive": N_("这张券已停止发放。"),
    "coupon_exhausted": N_("这张券已经被领完了。"),
    "coupon_limit": N_("你已经领过这张券了。"),
}
_REASONS = {
    "expired": N_("已过期"), "not_started": N_("未开始"), "inactive": N_("已停用"),
    "exhausted": N_("已发完"), "in_use": N_("待付款订单占用中"), "out_of_scope": N_("不适用"),
}


def claim_code(value: str) -> str:
    """The code as typed (spaces and dashes allowed: the service normalizes it)."""
    code = value.strip()
    if not code:
        raise ChatInputError(_("请发送：领券 券码，例如 领券 QX2026SPRING。"))
    return code[:64]


def describe(item: coupons.WalletItem) -> str:
    """「满100减10」, 「减15%，最多减¥20.00」, 「特价¥9.90」."""
    if item.kind == coupons.CouponKind.AMOUNT_OFF:
        if item.threshold_fen:
            return _("满{threshold}减{off}").format(threshold=money(item.threshold_fen), off=money(item.amount_off_fen))
        return _("立减{off}").format(off=money(item.amount_off_fen))
    if item.kind == coupons.CouponKind.PERCENT_OFF:
        line = _("减{pct}").format(pct=percent(item.percent_bp))
        return line + (_("，最多减{cap}").format(cap=money(item.cap_fen)) if item.cap_fen else "")
    return _("特价{price}").format(price=money(item.fixed_price_fen or 0))


def _claim_allowed(ctx: Context) -> bool:
    """COUPON_CLAIM_RATE_PER_USER claims per window per user, as in the mini-program."""
    allowed, window = ctx.settings.COUPON_CLAIM_RATE_PER_USER, ctx.settings.COUPON_CLAIM_RATE_WINDOW_S
    if allowed <= 0:
        return True
    key = f"{PREFIX}:coupon_claim:{ctx.user.id}:{int(time.time() // window)}"
    pipe = ctx.redis.pipeline()
    pipe.incr(key)
    pipe.expire(key, window + 60)
    count, _expire = pipe.execute()
    return int(count) <= allowed


@command("claim", slash=("claim", "lingquan"), keywords=("领券",), private=True, args=claim_code,
         help=N_("/claim 券码 · 领券 券码 — 领取优惠券（仅私聊）"))
def cmd_claim(ctx: Context, cmd: Command) -> list[Reply]:
    if not _claim_allowed(ctx):
        return text(_("领券太频繁了，请稍后再试。"))
    try:
        grant = risk_gate.claim_coupon(ctx.redis, ctx.settings, ctx.user.id, cmd.value)  # no IP/device in chat
    except DomainError as exc:
        return text(_(_REFUSED.get(exc.code, CLAIM_FAILED)))
    item = coupons.describe(grant)
    return text(_("领券成功！「{name}」{what}，有效期至 {until} (UTC)。下单时在小程序里选用。").format(
        name=item.name, what=describe(item), until=f"{item.expires_at:%Y-%m-%d %H:%M}"), private=True)


@command("coupons", slash=("coupons", "quan"), keywords=("我的券", "我的优惠券"), private=True,
         help=N_("/coupons · 我的券 — 查看我的优惠券（仅私聊）"))
def cmd_coupons(ctx: Context, cmd: Command) -> list[Reply]:
    items = coupons.wallet(ctx.user.id)
    if not items:
        return text(_("你还没有优惠券。发送「领券 券码」领取。"), private=True)
    lines = [_("我的优惠券（{count} 张）").format(count=len(items))]
    for i, item in enumerate(items[:WALLET_LINES], 1):
        state = _(_REASONS[item.reason]) if item.reason in _REASONS else _("可用")
        lines.append(_("{i}. {name}：{what}，至 {until}（{state}）").format(
            i=i, name=item.name, what=describe(item), until=f"{item.expires_at:%Y-%m-%d}", state=state))
    if len(items) > WALLET_LINES:
        lines.append(_("……还有 {more} 张，在小程序「我的优惠券」查看全部。").format(more=len(items) - WALLET_LINES))
    return text("\n".join(lines), private=True)
