"""The funnel hint in chat, for creators: /funnel (漏斗) names the weakest step of the
creator's funnel (video plays -> live entries -> orders) against creators of the same star
level and suggests one action (models/funnel_compare.py computes, content_ai/funnel_hint.py
words it: the model under the guards, else a template)."""

from __future__ import annotations

from bots.commands.i18n import N_, _
from bots.commands.registry import Command, Context, command
from bots.commands.replies import percent, text
from bots.types import Reply
from content_ai import funnel_hint
from models import funnel_compare


@command("funnel", keywords=("漏斗",), private=True, creator=True,
         help=N_("/funnel · 漏斗 — 我的转化漏斗和改进建议"))
def cmd_funnel(ctx: Context, cmd: Command) -> list[Reply]:
    creator = ctx.creator
    c = funnel_compare.compare(creator, redis=ctx.redis)
    hint = funnel_hint.funnel_hint(c, ai=ctx.ai, settings=ctx.settings, creator_id=creator.id)
    lines = [_("我的漏斗：视频播放 {plays} 次 → 进直播间 {entries} 次 → 订单 {orders} 笔").format(
                 plays=c.plays, entries=c.entries, orders=c.orders),
             _("进直播间率 {entry}（同等级中位数 {m_entry}）· 成交率 {order}（同等级中位数 {m_order}）").format(
                 entry=percent(c.entry_bp), m_entry=percent(c.medians.entry_bp), order=percent(c.order_bp),
                 m_order=percent(c.medians.order_bp)),
             hint.text]
    return text("\n".join(lines))
