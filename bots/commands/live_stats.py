"""Live dashboard and votes in chat, for creators: /dashboard (数据, 看板) shows the figures of
the session live now (or the most recent one, or the one named) with its hints and polls;
/vote 问题 | 选项A | 选项B [| 选项C ...] [| 5分钟] opens a poll in the session live now,
/vote close ID closes one, /vote alone lists the session's polls."""

from __future__ import annotations

import re
from typing import NamedTuple

from bots.commands.i18n import N_, _
from bots.commands.parsing import ChatInputError
from bots.commands.registry import Command, Context, command
from bots.commands.replies import money, percent, text
from bots.types import Reply
from models import live_board, live_votes
from models.errors import DomainError
from models.live_dashboard import DashboardPolicy

STATE_LABELS = {"scheduled": N_("未开播"), "live": N_("直播中"), "ended": N_("已结束"), "cancelled": N_("已取消")}
# Domain errors of these commands, in the reader's language (the domain's own sentences are Chinese).
ERRORS = {
    "live_not_found": N_("没有找到你的这场直播，请核对场次编号。"),
    "poll_not_found": N_("没有找到你的这个投票，请核对投票编号。"),
    "session_not_live": N_("只有直播中的场次可以发起投票。"),
    "too_many_open_polls": N_("同时进行的投票太多了，请先结束一个（/vote close 编号）。"),
    "invalid_question": N_("投票问题需要 1-120 个字。"),
    "invalid_options": N_("投票需要 2-6 个选项，每个选项 1-40 个字。"),
    "duplicate_option": N_("选项不能重复。"),
    "invalid_duration": N_("投票时长需要 10 秒到 24 小时。"),
}
VOTE_USAGE = N_("发起投票：/vote 问题 | 选项A | 选项B（最多 6 个选项，可在最后加时长，例如 | 5分钟）\n"
                "结束投票：/vote close 编号")
DURATION = re.compile(r"^(\d{1,5})\s*(分钟|分|min|m|秒|s)$", re.IGNORECASE)


def _polite(exc: DomainError) -> list[Reply]:
    found = ERRORS.get(exc.code)
    if found is None:
        raise exc  # the registry's polite reply
    return text(_(found))


def session_arg(typed: str) -> int | None:
    """An optional session id: '' -> None (the live or most recent session)."""
    typed = typed.strip().lstrip("#")
    if not typed:
        return None
    if not typed.isdigit() or len(typed) > 18:
        raise ChatInputError(_("请发送：/dashboard 或 /dashboard 场次编号"))
    return int(typed)


@command("dashboard", keywords=("看板", "数据", "直播数据"), private=True,
         creator=True, args=session_arg, help=N_("/dashboard · 看板 — 直播实时数据和提示"))
def cmd_dashboard(ctx: Context, cmd: Command) -> list[Reply]:
    creator = ctx.creator
    if cmd.value is None:
        session = live_board.current_or_latest(creator)
        if session is None:
            return text(_("你还没有开过直播。开播后发送「看板」查看实时数据。"))
        session_id = session.id
    else:
        session_id = cmd.value
    try:
        board = live_board.board(ctx.redis, session_id, creator=creator, policy=DashboardPolicy.of(ctx.settings))
    except DomainError as exc:
        return _polite(exc)
    return text(render(board))


def render(board: dict) -> str:
    state = STATE_LABELS.get(board["state"])
    lines = [_("直播看板 #{id}：{title}（{state}）").format(id=board["session_id"], title=board["title"] or "—",
                                                      state=_(state) if state else board["state"]),
             _("在线 {online} 人 · 峰值 {peak} 人 · 累计观众 {viewers} 人").format(
                 online=board["online"], peak=board["peak_online"], viewers=board["unique_viewers"]),
             _("支付订单 {orders} 笔 · 成交额 {gmv} · 买家 {buyers} 人 · 转化率 {conversion}").format(
                 orders=board["orders"], gmv=money(board["gmv_fen"]), buyers=board["buyers"],
                 conversion=percent(board["conversion_bp"]))]
    if board["reservations"]:
        lines.append(_("预约 {reserved} 人，到场 {came} 人（{rate}）").format(
            reserved=board["reservations"], came=board["turned_up"], rate=percent(board["turnup_bp"])))
    for p in board["products"]:
        line = _("· {name}：已售 {units} 件，{gmv}").format(name=p["name"] or p["sku"], units=p["units"],
                                                      gmv=money(p["gmv_fen"]))
        if p["sold_out"]:
            line += _("（已售罄）")
        elif p["price_fen"] is not None:
            line += _("（现价 {price}，本档剩 {left} 件）").format(price=money(p["price_fen"]),
                                                          left=p["left_at_tier"])
        lines.append(line)
    if board["hints"]:
        lines.append(_("提示："))
        lines += [f"· {h['text']}" for h in board["hints"]]
    lines += [poll_line(p) for p in board["polls"]]
    return "\n".join(lines)


def poll_line(poll: dict) -> str:
    counts = " · ".join(f"{o['label']} {o['votes']}" for o in poll["options"])
    status = _("已结束") if poll["closed"] else _("进行中")
    return _("投票 #{id}（{status}）{question}：{counts}").format(id=poll["id"], status=status,
                                                           question=poll["question"], counts=counts)


class VoteArgs(NamedTuple):
    action: str  # list | open | close
    spec: live_votes.PollSpec | None = None
    poll_id: int | None = None


def vote_args(typed: str) -> VoteArgs:
    """'' -> list; 'close 12' / '结束 12' -> close; '问题 | A | B [| 5分钟]' -> open."""
    words = typed.split()
    if not words:
        return VoteArgs("list")
    if words[0].lower() in ("close", "end", "结束", "关闭"):
        if len(words) != 2 or not words[1].lstrip("#").isdigit() or len(words[1]) > 18:
            raise ChatInputError(_(VOTE_USAGE))
        return VoteArgs("close", poll_id=int(words[1].lstrip("#")))
    parts = [p.strip() for p in re.split(r"[|｜]", typed)]
    duration = None
    if len(parts) > 3 and (found := DURATION.match(parts[-1])):
        number, unit = int(found.group(1)), found.group(2).lower()
        duration = number if unit in ("秒", "s") else number * 60
        parts = parts[:-1]
    if len(parts) < 3:
        raise ChatInputError(_(VOTE_USAGE))
    try:
        return VoteArgs("open", spec=live_votes.parse_poll(parts[0], parts[1:], duration))
    except DomainError as exc:
        raise ChatInputError(_(ERRORS.get(exc.code, VOTE_USAGE))) from None


@command("vote", keywords=("投票",), creator=True, args=vote_args,
         help=N_("/vote 问题 | 选项A | 选项B · 投票 — 直播中发起投票"))
def cmd_vote(ctx: Context, cmd: Command) -> list[Reply]:
    creator, args = ctx.creator, cmd.value
    try:
        if args.action == "close":
            poll, _closed = live_votes.close_poll(creator, args.poll_id, actor=creator.actor)
            return text(_("投票已结束。") + "\n" + poll_line(live_votes.results(poll.id)))
        session = live_votes.current_session(creator)
        if session is None:
            return text(_("你现在没有在直播，开播后才能发起投票。"))
        if args.action == "list":
            polls = live_votes.public_polls(session.id)
            if not polls:
                return text(_("这场直播还没有投票。") + "\n" + _(VOTE_USAGE))
            return text("\n".join(poll_line(p) for p in polls))
        poll = live_votes.open_poll(creator, session.id, args.spec)
    except DomainError as exc:
        return _polite(exc)
    options = "\n".join(f"{o['position']}. {o['label']}" for o in live_votes.results(poll.id)["options"])
    return text(_("投票 #{id} 已发起：{question}").format(id=poll.id, question=poll.question) + "\n" + options
                + "\n" + _("观众在直播间投票；发送 /vote close {id} 结束。").format(id=poll.id))
