"""Running a command and the pieces every area's replies share: money formatting, polite
errors, the "join first" answer, star-level names."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bots.commands import handoff_flow
from bots.commands.i18n import N_, _, current_locale
from bots.commands.parsing import ChatInputError, normalize
from bots.commands.registry import REGISTRY, Command, Context, menu
from bots.types import Reply
from content_ai import facts
from models import levels
from models.errors import DomainError
from models.money import rmb
from models.network import Creator

PREFIX = "qx:chat"  # Redis keys of the chat layer
LIST_MAX = 20
VOUCHERS_MAX = 10

money = rmb  # "¥19.90"; the yuan formatter is models.money's


def percent(bp: int) -> str:
    return facts.percent(bp)


def text(message: str, **kw: Any) -> list[Reply]:
    return [Reply(text=message, **kw)]


# Polite texts (catalog message ids) for the domain errors a user can cause.
MESSAGES: dict[str, str] = {
    "not_a_creator": N_("你还不是千星创作者，发送 /join（加入）即可免费加入。"),
    "unknown_invite_code": N_("邀请码不存在，请核对后重新发送。"),
    "invalid_invite_code": N_("邀请码格式不对：邀请码是 4-32 位字母或数字。"),
    "self_binding": N_("不能绑定自己的邀请码哦。"),
    "invite_cycle": N_("对方已经在你的团队里，不能绑定为你的邀请人。"),
    "already_bound": N_("你已经绑定了邀请人，如需更换请联系客服。"),
    "unknown_sku": N_("没有找到这个商品，发送「商品」查看商品编码。"),
    "invalid_markup": N_("加价必须是 0 或正数（元）。"),
    "markup_too_high": N_("加价超过了这个商品允许的上限。"),
    "supply_locked": N_("这个商品还没有为你的等级解锁。"),
    "below_minimum": N_("提现金额低于最低提现额。"),
    "insufficient_balance": N_("可提现余额不足。"),
    "in_debt": N_("你的账户有待抵扣的欠款，需先由后续收益抵扣后才能提现。"),
    "withdrawals_suspended": N_("你的提现功能因风控处罚暂时停用，如有疑问请联系客服。"),
    "invalid_amount": N_("金额格式不对，请输入数字，例如 100 或 99.50。"),
    "amount_too_large": N_("金额太大了，请检查后重新输入。"),
    "request_key_reused": N_("这个确认按钮已经用过了，请重新发起提现。"),
    "voucher_not_found": N_("没有找到这张卡券。"),
    "order_not_found": N_("没有找到你的这个订单，请核对订单号。"),
    "user_not_found": N_("账户不存在，请重新发送 /start。"),
    "code_exhausted": N_("系统繁忙，请稍后再试。"),
    "invalid_account": N_("无法识别你的账号，请稍后再试。"),
    "unknown_platform": N_("暂不支持这个平台。"),
}
FAILED = N_("操作没有成功，请检查输入后重试。")


def polite(exc: DomainError) -> str:
    """A polite reply naming the problem (never a stack trace or an internal id), in the
    current locale."""
    if isinstance(exc, ChatInputError):
        return exc.message  # raised in the chat layer, already translated
    if current_locale() == "zh" and any("\u4e00" <= ch <= "\u9fff" for ch in exc.message):
        return exc.message  # a Chinese sentence from the domain
    return _(MESSAGES.get(exc.code) or FAILED)


def help_hint() -> str:
    return _("发送 /help（帮助）查看可用命令。")


def execute(ctx: Context, cmd: Command) -> list[Reply]:
    """Run a command as declared: a creators-only command answers "join first" to anyone else
    (before its arguments are looked at), the declared parser turns the argument text into
    `cmd.value`, then the handler runs. A domain error (a parser's included) becomes a polite
    reply."""
    spec = REGISTRY.get(cmd.name)
    try:
        if spec is None:
            return text(_("没有这个命令。{hint}").format(hint=help_hint()))
        if spec.creator:
            creator = creator_of(ctx)
            if creator is None:
                return join_first()
            ctx = replace(ctx, creator=creator)
        if spec.parser is not None:
            cmd = replace(cmd, value=spec.parser(cmd.rest))
        return spec.handler(ctx, cmd)
    except DomainError as exc:
        return text(polite(exc))


def free_text(ctx: Context) -> list[Reply]:
    """A private message that is no command: a grounded answer (content_ai.answers, through
    handoff_flow), a hand-off to the operators when it asks for one, nothing while a human's
    answer keeps the chat silent, else the "not understood" hint."""
    typed = normalize(ctx.incoming.text)
    if not typed:
        return text(_("你好！{hint}").format(hint=help_hint()), buttons=menu("main"))
    found = handoff_flow.answer(ctx, typed)
    if found is not None:
        return found
    return text(_("抱歉，我没有听懂。{hint}").format(hint=help_hint()), buttons=menu("main"))


def creator_of(ctx: Context) -> Creator | None:
    return Creator.get_or_none(Creator.user == ctx.user.id)


def join_first() -> list[Reply]:
    return text(_(MESSAGES["not_a_creator"]) + "\n" + _("也可以点击好友的邀请链接加入。"), buttons=menu("join"))


def level_names() -> dict[int, str]:
    return {lv.rank: lv.name for lv in levels.table()}


def level_name(rank: int, names: dict[int, str] | None = None) -> str:
    names = names if names is not None else level_names()
    return names.get(rank, levels.UNRANKED_NAME if rank <= 0 else _("{rank}星").format(rank=rank))
