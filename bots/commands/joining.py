"""Joining and the team: start (and deep links), join, bind, the invite poster, team, progress
and level."""

from __future__ import annotations

from bots.commands.i18n import N_, _
from bots.commands.links import (
    parse_payload,
    plain_product_path,
    product_path,
    shop_path,
    telegram_link,
)
from bots.commands.parsing import ChatInputError, first_word
from bots.commands.registry import Command, Context, MenuPlace, command, menu
from bots.commands.replies import (
    LIST_MAX,
    creator_of,
    help_hint,
    level_name,
    level_names,
    money,
    percent,
    polite,
    text,
)
from bots.types import Reply
from models import levels, network, withdrawals
from models.catalog import get_sku
from models.errors import DomainError
from models.network import BindVia, Creator


@command("start", keywords=("开始",), args=first_word, telegram=False)
def cmd_start(ctx: Context, cmd: Command) -> list[Reply]:
    payload = (ctx.incoming.start_payload or cmd.value or "").strip()
    if payload:
        kind, code, sku = parse_payload(payload[:64])
        if kind == "product" and sku:
            return _product_card(ctx, code, sku)
        if kind == "shop":
            return _shop_card(ctx, code)
        via = {"telegram": BindVia.TELEGRAM, "wechat": BindVia.WECHAT_QR}.get(
            ctx.incoming.platform, BindVia.TYPED) if ctx.incoming.start_payload else BindVia.TYPED
        return _join_and_bind(ctx, code, via)
    creator = creator_of(ctx)
    if creator is None:
        return text(_("欢迎来到千星！这里可以查看卡券、领取福利，也可以免费加入千星计划带货分佣。\n{hint}")
                    .format(hint=help_hint()), buttons=menu("join"))
    return text(_("欢迎回来，{name}！你的邀请码：{code}\n{hint}").format(
        name=creator.name or ctx.display_name or _("创作者"), code=creator.code, hint=help_hint()),
        buttons=menu("main"))


@command("join", keywords=("加入", "加入千星"), menu=MenuPlace("join", 0, 0, N_("加入千星计划")),
         help=N_("/start 开始 · /join 加入 — 加入千星计划"))
def cmd_join(ctx: Context, cmd: Command) -> list[Reply]:
    existing = creator_of(ctx)
    creator = existing or network.become_creator(ctx.user, ctx.display_name)
    first = _("你已经是千星创作者了。") if existing else _("欢迎加入千星计划！")
    return text(_("{first}你的邀请码：{code}\n发送「海报」生成邀请海报，发送「商品」开始选品。")
                .format(first=first, code=creator.code), buttons=menu("main"))


def invite_code(text: str) -> str:
    """The invite code typed after /bind (checked by network.bind)."""
    code = first_word(text)
    if code is None:
        raise ChatInputError(_("请发送：/bind 邀请码（或：绑定 邀请码），例如 /bind ABCD2345。"))
    return code


@command("bind", keywords=("绑定", "绑定邀请码"), args=invite_code, help=N_("/bind 邀请码 · 绑定 邀请码 — 绑定邀请人"))
def cmd_bind(ctx: Context, cmd: Command) -> list[Reply]:
    return _join_and_bind(ctx, cmd.value, BindVia.TYPED)


def _join_and_bind(ctx: Context, code: str, via: BindVia) -> list[Reply]:
    """Join the plan first (so the invite is never lost on a refused code), then bind: the
    first binding wins."""
    existed = creator_of(ctx) is not None
    creator = network.become_creator(ctx.user, ctx.display_name)
    joined = "" if existed else _("欢迎加入千星计划！你的邀请码：{code}\n").format(code=creator.code)
    try:
        parent = network.by_code(code)
        before = creator.parent_id
        creator = network.bind(creator, code, via)
    except DomainError as exc:
        return text(joined + _("绑定邀请人没有成功：{reason}").format(reason=polite(exc)), buttons=menu("main"))
    who = parent.name or parent.code
    if before == parent.id:
        return text(joined + _("你已绑定邀请人 {who}（{code}），无需重复绑定。").format(who=who, code=parent.code),
                    buttons=menu("main"))
    return text(joined + _("绑定成功！你的邀请人是 {who}（{code}）。").format(who=who, code=parent.code),
                buttons=menu("main"))


def _product_card(ctx: Context, creator_code: str, sku_code: str) -> list[Reply]:
    sku = get_sku(sku_code)
    creator = Creator.get_or_none((Creator.code == creator_code) & Creator.active)
    ref = creator.code if creator else ""
    price = network.price_through(creator, sku)
    path = product_path(sku.code, ref) if ref else plain_product_path(sku.code)
    return text(_("{title} · {name}\n价格：{price}\n在微信小程序打开下单：{path}\n"
                  "付款后自动发货，私聊发送「我的卡券」查看。").format(
        title=sku.product.title, name=sku.name, price=money(price), path=path))


def _shop_card(ctx: Context, creator_code: str) -> list[Reply]:
    creator = Creator.get_or_none((Creator.code == creator_code) & Creator.active)
    if creator is None:
        return text(_("这个链接已失效。发送「帮助」查看可用命令。"))
    return text(_("欢迎光临 {name} 的小店！\n在微信小程序打开：{path}").format(
        name=creator.name or creator.code, path=shop_path(creator.code)), buttons=menu("join"))


@command("poster", keywords=("海报", "邀请海报"), creator=True, help=N_("/poster · 海报 — 我的邀请海报"),
         menu=(MenuPlace("main", 0, 0, N_("邀请海报")), MenuPlace("wechat", 0, 0, N_("邀请海报"))))
def cmd_poster(ctx: Context, cmd: Command) -> list[Reply]:
    creator = ctx.creator
    from bots import poster

    png, key = poster.invite_poster(creator, settings=ctx.settings)
    link = telegram_link(ctx.settings, creator.code)
    message = _("你的邀请海报已生成，分享给好友扫码加入。\n邀请码：{code}").format(code=creator.code)
    if link:
        message += "\n" + _("邀请链接：{link}").format(link=link)
    return [Reply(text=message, image=png, image_key=key, link=link)]


@command("team", keywords=("团队", "我的团队"), creator=True, help=N_("/team · 团队 — 我的团队与业绩"),
         menu=(MenuPlace("main", 0, 1, N_("我的团队")), MenuPlace("wechat", 1, 0, N_("我的团队"))))
def cmd_team(ctx: Context, cmd: Command) -> list[Reply]:
    creator = ctx.creator
    team = network.team(creator)
    names = level_names()
    lines = [_("我的团队"),
             _("直属成员 {count} 人，销售额 {gmv}").format(count=len(team.direct), gmv=money(team.direct_gmv_fen)),
             _("二级成员 {count} 人，销售额 {gmv}").format(count=team.second, gmv=money(team.second_gmv_fen))]
    if team.direct:
        lines.append(_("—— 直属成员 ——"))
        for i, m in enumerate(sorted(team.direct, key=lambda m: -m.gmv_fen)[:LIST_MAX], 1):
            lines.append(_("{i}. {name}（{level}）销售额 {gmv}，{orders} 单，团队 {team} 人").format(
                i=i, name=m.name or m.code, level=level_name(m.rank, names), gmv=money(m.gmv_fen),
                orders=m.orders, team=len(m.children)))
        if len(team.direct) > LIST_MAX:
            lines.append(_("……共 {count} 人").format(count=len(team.direct)))
    else:
        lines.append(_("还没有成员，发送「海报」邀请好友加入吧。"))
    return text("\n".join(lines))


def _need(metric: str, value: int) -> str:
    return money(value) if metric.endswith("_fen") else str(value)


@command("progress", keywords=("进度", "升级进度"), creator=True, help=N_("/progress · 进度 — 升级进度"),
         menu=(MenuPlace("main", 0, 2, N_("升级进度")), MenuPlace("wechat", 1, 1, N_("升级进度"))))
def cmd_progress(ctx: Context, cmd: Command) -> list[Reply]:
    creator = ctx.creator
    p = levels.progress(creator, entry_videos=ctx.settings.ENTRY_VIDEOS,
                        entry_invites=ctx.settings.ENTRY_INVITES)
    lines = [_("当前等级：{name}").format(name=p.name)]
    if p.next_rank is None:
        lines.append(_("你已经是最高等级，继续保持！"))
    else:
        lines.append(_("下一等级：{name}，需要：").format(name=p.next_name))
        for t in p.thresholds:
            state = "✅" if t.met else _("还差 {gap}").format(gap=_need(t.metric, t.need - t.have))
            lines.append(f"· {levels.LABELS[t.metric]} {_need(t.metric, t.have)}/{_need(t.metric, t.need)} {state}")
        if p.capped:
            lines.append(_("账户目前受限，暂不能升级，如有疑问请联系客服。"))
        elif p.ready:
            lines.append(_("已满足升级条件，系统下次评估时自动升级。"))
    lines.append(p.invite_line)
    return text("\n".join(lines))


@command("level", keywords=("等级", "我的等级"), creator=True, help=N_("/level · 等级 — 我的等级与佣金比例"),
         menu=MenuPlace("wechat", 1, 2, N_("我的等级")))
def cmd_level(ctx: Context, cmd: Command) -> list[Reply]:
    creator = ctx.creator
    table = {lv.rank: lv for lv in levels.table()}
    current, nxt = table.get(creator.rank), table.get(creator.rank + 1)
    if current is None:
        lines = [_("当前等级：{name}").format(name=levels.UNRANKED_NAME),
                 _("自己的销售按商品佣金比例计算，升到一星后还有团队奖励。")]
    else:
        fee = withdrawals.fee_bp_of(current.withdraw_fee_bp, ctx.withdraw_policy)
        lines = [_("当前等级：{name}").format(name=current.name),
                 _("自己销售佣金：不低于 {rate}").format(rate=percent(current.own_rate_bp)),
                 _("团队奖励：直属成员销售的 {team1}，二级成员销售的 {team2}").format(
                     team1=percent(current.team1_rate_bp), team2=percent(current.team2_rate_bp)),
                 _("提现手续费：{fee}").format(fee=percent(fee)),
                 _("可选商品：{tier} 级货源").format(tier=current.supply_tier)]
    lines.append(_("下一等级：{name}，发送「进度」查看升级条件。").format(name=nxt.name) if nxt
                 else _("已是最高等级。"))
    lines.append(_("佣金只来自真实成交的订单，与邀请人数无关。"))
    return text("\n".join(lines))
