"""Earnings and withdrawals: balances, the statement, and the two-step withdrawal (the Redis
confirmation step is bots/commands/confirm.py)."""

from __future__ import annotations

from typing import NamedTuple

from bots.commands.confirm import WITHDRAW_CONFIRM_TTL_S, decide, load_offer, store_offer
from bots.commands.i18n import N_, _
from bots.commands.parsing import parse_yuan
from bots.commands.registry import Command, Context, MenuPlace, command, menu_key
from bots.commands.replies import MESSAGES, creator_of, money, text
from bots.types import Button, Reply
from models import earnings, risk_withdrawal_checks, withdrawals
from models.money import yuan


@command("earnings", keywords=("收益", "我的收益"), private=True, creator=True, help=N_("/earnings · 收益 — 我的收益"),
         menu=(MenuPlace("main", 1, 0, N_("我的收益")), MenuPlace("wechat", 2, 0, N_("我的收益"))))
def cmd_earnings(ctx: Context, cmd: Command) -> list[Reply]:
    creator = ctx.creator
    b = earnings.balances(creator)
    lines = [_("我的收益"),
             _("可提现：{amount}").format(amount=money(b["available_fen"])),
             _("待结算：{amount}（订单完成 {days} 天后转为可提现）").format(
                 amount=money(b["pending_fen"]), days=ctx.settings.REFUND_WINDOW_DAYS),
             _("提现中：{amount}").format(amount=money(b["withdrawing_fen"])),
             _("购物金：{amount}").format(amount=money(b["credit_fen"]))]
    if b["debt_fen"]:
        lines.append(_("待抵扣欠款：{amount}（由后续收益自动抵扣）").format(amount=money(b["debt_fen"])))
    lines.append(_("最低提现 {amount}，发送「提现 金额」申请。").format(amount=money(ctx.withdraw_policy.min_fen)))
    return text("\n".join(lines), buttons=((Button(_("收益明细"), menu_key("statement")),),))


KIND_LABELS = {
    "commission": N_("佣金入账"), "release": N_("结算可提现"), "reversal": N_("退款冲回"),
    "clawback": N_("追回佣金"), "withdrawal": N_("申请提现"), "payout": N_("提现到账"),
    "payout_failed": N_("提现失败退回"), "withdrawal_rejected": N_("提现驳回退回"),
    "thousand_star_bonus": N_("千星奖励"), "traffic_reward": N_("流量奖励"),
    "credit_payment": N_("购物金消费"), "refund": N_("退款"),
}
BUCKET_LABELS = {"pending": N_("待结算"), "available": N_("可提现"), "withdrawing": N_("提现中"),
                 "credit": N_("购物金")}


@command("statement", keywords=("明细", "收益明细"), private=True, creator=True,
         help=N_("/statement · 明细 — 收益明细"), menu=MenuPlace("wechat", 2, 1, N_("收益明细")))
def cmd_statement(ctx: Context, cmd: Command) -> list[Reply]:
    creator = ctx.creator
    entries = earnings.statement(creator, limit=10)
    if not entries:
        return text(_("还没有收益记录。分享商品成交后，佣金会显示在这里。"))
    lines = [_("收益明细（最近 10 条）")]
    for e in entries:
        sign = "+" if e.amount_fen >= 0 else "-"
        kind = _(KIND_LABELS[e.kind]) if e.kind in KIND_LABELS else e.kind
        bucket = _(BUCKET_LABELS[e.bucket]) if e.bucket in BUCKET_LABELS else e.bucket
        lines.append(f"{e.created_at:%m-%d %H:%M} {kind} · {bucket} {sign}{money(abs(e.amount_fen))}")
    return text("\n".join(lines))


class WithdrawArgs(NamedTuple):
    amount: int  # fen
    method: withdrawals.Method


def withdraw_args(text: str) -> WithdrawArgs | None:
    """'100', '100 credit' (or 购物金 / 余额: to shopping credit) -> the amount and the method;
    None when nothing was typed (the handler shows the balance and the minimum)."""
    words = text.split()
    if not words:
        return None
    method = withdrawals.Method.WALLET
    if len(words) > 1 and words[1].lower() in ("credit", "购物金", "余额"):
        method = withdrawals.Method.CREDIT
    return WithdrawArgs(parse_yuan(words[0]), method)


@command("withdraw", keywords=("提现",), private=True, creator=True, args=withdraw_args,
         help=N_("/withdraw 金额 · 提现 100 — 提现到微信零钱（需确认）"), menu=MenuPlace("wechat", 2, 2, N_("提现")))
def cmd_withdraw(ctx: Context, cmd: Command) -> list[Reply]:
    creator = ctx.creator
    policy = ctx.withdraw_policy
    b = earnings.balances(creator)
    if cmd.value is None:
        return text(_("请发送：提现 金额（元），例如 提现 {example}。\n当前可提现 {available}，最低提现 {minimum}。")
                    .format(example=yuan(policy.min_fen), available=money(b["available_fen"]),
                            minimum=money(policy.min_fen)))
    amount, method = cmd.value
    if amount < policy.min_fen:
        return text(_("最低提现 {minimum}，你输入的是 {amount}。").format(minimum=money(policy.min_fen),
                                                                amount=money(amount)))
    if b["debt_fen"]:
        return text(_(MESSAGES["in_debt"]) + _("（欠款 {debt}）").format(debt=money(b["debt_fen"])))
    if amount > b["available_fen"]:
        return text(_("可提现余额不足：当前可提现 {available}。").format(available=money(b["available_fen"])))
    quote = withdrawals.quote(amount, withdrawals.fee_bp_for(creator.rank, policy, method))
    token = store_offer(ctx.redis, {"user": ctx.user.id, "creator": creator.id, "amount_fen": amount,
                                    "method": method.value})
    if method == withdrawals.Method.CREDIT:
        what = _("确认把 {amount} 转为购物金？无手续费，立即到账。").format(amount=money(amount))
    else:
        what = _("确认提现 {amount} 到微信零钱？\n手续费 {fee}，实际到账 {net}，预计 {hours} 小时后到账。").format(
            amount=money(amount), fee=money(quote.fee), net=money(quote.net), hours=policy.delay_hours)
        if amount > policy.review_above_fen:
            what += "\n" + _("金额较大，需人工审核。")
    what += "\n" + _("请在 {minutes} 分钟内确认。").format(minutes=WITHDRAW_CONFIRM_TTL_S // 60)
    return text(what, buttons=((Button(_("确认提现"), f"wd:ok:{token}"), Button(_("取消"), f"wd:no:{token}")),))


STATES = {"review": N_("已提交，等待人工审核"), "approved": N_("已提交"), "paying": N_("正在打款"),
          "paid": N_("已到账"), "rejected": N_("已驳回"), "failed": N_("打款失败，金额已退回")}


def _withdrawal_done(w: withdrawals.Withdrawal) -> str:
    if w.method == withdrawals.Method.CREDIT:
        return _("已转为购物金 {amount}（编号 {no}）。").format(amount=money(w.amount_fen), no=w.no)
    state = _(STATES[w.state]) if w.state in STATES else w.state
    return _("提现{state}：{amount}，手续费 {fee}，实际到账 {net}（编号 {no}）。").format(
        state=state, amount=money(w.amount_fen), fee=money(w.fee_fen), net=money(w.net_fen), no=w.no)


@command("withdraw_confirm", private=True, callback_only=True)
def cmd_withdraw_confirm(ctx: Context, cmd: Command) -> list[Reply]:
    token = cmd.args[0]
    creator = creator_of(ctx)
    offer = load_offer(ctx.redis, token)
    if offer is None:
        done = None if creator is None else withdrawals.Withdrawal.get_or_none(
            (withdrawals.Withdrawal.creator == creator.id) & (withdrawals.Withdrawal.request_key == token))
        if done is not None:
            return text(_withdrawal_done(done))
        return text(_("这个确认已过期或已取消，未发起提现。如需提现请重新发送「提现 金额」。"))
    if creator is None or offer["user"] != ctx.user.id or offer["creator"] != creator.id:
        return text(_("这个按钮不是发给你的。"))
    if decide(ctx.redis, token, "ok") != "ok":
        return text(_("这笔提现已经取消，未发起提现。"))
    w = risk_withdrawal_checks.request_withdrawal(ctx.redis, ctx.settings, creator, int(offer["amount_fen"]),
                                                  offer["method"], policy=ctx.withdraw_policy, request_key=token,
                                                  actor=f"user:{ctx.user.id}")
    return text(_withdrawal_done(w))


@command("withdraw_cancel", private=True, callback_only=True)
def cmd_withdraw_cancel(ctx: Context, cmd: Command) -> list[Reply]:
    token = cmd.args[0]
    offer = load_offer(ctx.redis, token)
    if offer is None:
        return text(_("这个确认已过期，无需取消。"))
    if offer["user"] != ctx.user.id:
        return text(_("这个按钮不是发给你的。"))
    if decide(ctx.redis, token, "no") == "ok":
        return text(_("这笔提现已经确认提交，无法取消。"))
    return text(_("已取消，未发起提现。"))
