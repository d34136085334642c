"""Live sessions from the chat, for creators: list my sessions (times in settings.LIVE_TIMEZONE,
reservation counts), schedule one ("直播 12-08 20:00 标题 +SKU1 +SKU2"), move, cancel, start
("开播 12") and end ("下播 12") one. Ending here does not queue the settlement job (a bot
cannot enqueue): the periodic `settle_all` settles the session's orders within minutes.

Typed times are wall-clock times in LIVE_TIMEZONE: "12-08 20:00", "2026-12-08 20:00",
"今天 20:00", "明天 20:00", "后天 20:00" or "20:00" (today)."""

from __future__ import annotations

import datetime as dt
import re
from typing import NamedTuple

from bots.commands.i18n import N_, _
from bots.commands.parsing import ChatInputError
from bots.commands.registry import Command, Context, command
from bots.commands.replies import LIST_MAX, polite, text
from bots.types import Reply
from models import live, live_page, live_planning
from models.db import utcnow
from models.errors import DomainError
from models.live_rules import in_zone, local_time, to_utc

STATE_LABELS = {"scheduled": N_("预告中"), "live": N_("直播中"), "ended": N_("已结束"), "cancelled": N_("已取消")}
# Polite texts for the refusals of models/live*.py (the message ids are the Chinese texts).
LIVE_MESSAGES = {
    "live_not_found": N_("没有找到你的这场直播，发送「直播」查看你的直播和编号。"),
    "live_start_past": N_("这个时间已经过去了，请选择将来的时间。"),
    "live_start_too_far": N_("最多只能提前 90 天预告直播。"),
    "live_not_started": N_("这场直播还没有开播；不播了请发送「直播 取消 编号」。"),
    "live_already_started": N_("这场直播已经开播，不能再改期或取消；结束请发送「下播 编号」。"),
    "live_ended": N_("这场直播已经结束了。"),
    "live_cancelled": N_("这场直播已经取消了。"),
    "invalid_title": N_("直播标题最多 120 个字。"),
    "duplicate_pin": N_("同一个商品只能挂一次。"),
    "too_many_pins": N_("挂的商品太多了，请减少一些。"),
    "invalid_time": N_("时间格式不对，请写成「12-08 20:00」或「明天 20:00」。"),
}
USAGE = N_("直播命令：\n直播 — 我的直播\n直播 12-08 20:00 标题 +商品编码 — 预告一场直播\n"
           "开播 编号 · 下播 编号\n直播 改期 编号 12-09 20:00 · 直播 取消 编号")
_DATE = re.compile(r"^(?:(\d{4})-)?(\d{1,2})[-/](\d{1,2})$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
RELATIVE_DAYS = {"今天": 0, "明天": 1, "后天": 2, "today": 0, "tomorrow": 1}
ACTIONS = {"list": "list", "列表": "list", "start": "start", "开播": "start", "开始": "start",
           "end": "end", "下播": "end", "结束": "end", "cancel": "cancel", "取消": "cancel",
           "move": "move", "改期": "move", "改到": "move"}


class LiveArgs(NamedTuple):
    action: str  # list, schedule, start, end, cancel, move
    session_id: int | None = None
    when: tuple[str, ...] = ()  # the typed date and time words
    title: str = ""
    skus: tuple[str, ...] = ()
    reason: str = ""


def _usage() -> ChatInputError:
    return ChatInputError(_(USAGE))


def _session_id(word: str | None) -> int:
    digits = (word or "").lstrip("#＃")
    if not digits.isdigit() or len(digits) > 18:
        raise ChatInputError(_("请写上直播编号，例如「开播 12」；发送「直播」查看编号。"))
    return int(digits)


def _when_words(words: list[str]) -> int:
    """How many leading words are a date and a time (0 when they are not)."""
    if words and _TIME.match(words[0]):
        return 1
    if len(words) >= 2 and (words[0].lower() in RELATIVE_DAYS or _DATE.match(words[0])) and _TIME.match(words[1]):
        return 2
    return 0


def live_args(typed: str) -> LiveArgs:
    """'' -> list; 'start 12', 'end 12', 'cancel 12 理由', 'move 12 12-09 20:00' (or their
    Chinese words); otherwise a date and time, a title and +SKU codes -> schedule."""
    words = typed.split()
    if not words:
        return LiveArgs("list")
    action = ACTIONS.get(words[0].lower())
    if action == "list":
        return LiveArgs("list")
    if action == "start":
        return start_args(" ".join(words[1:]))
    if action == "end":
        return LiveArgs("end", _session_id(words[1] if len(words) > 1 else None))
    if action == "cancel":
        return LiveArgs("cancel", _session_id(words[1] if len(words) > 1 else None), reason=" ".join(words[2:])[:200])
    if action == "move":
        sid = _session_id(words[1] if len(words) > 1 else None)
        taken = _when_words(words[2:])
        if not taken:
            raise ChatInputError(_("请写上新的时间，例如「直播 改期 {id} 12-09 20:00」。").format(id=sid))
        return LiveArgs("move", sid, when=tuple(words[2:2 + taken]))
    taken = _when_words(words)
    if not taken:
        raise _usage()
    rest = words[taken:]
    skus = tuple(w[1:] for w in rest if w.startswith("+") and len(w) > 1)
    title = " ".join(w for w in rest if not w.startswith("+"))
    if not title:
        raise ChatInputError(_("请写上直播标题，例如「直播 12-08 20:00 周末福利专场」。"))
    return LiveArgs("schedule", when=tuple(words[:taken]), title=title, skus=skus)


def start_args(typed: str) -> LiveArgs:
    """'12' (or '#12') -> start that scheduled session; anything else -> go live now, unplanned,
    with the text as the title."""
    word = typed.split()[0] if typed.split() else ""
    if word.lstrip("#＃").isdigit():
        return LiveArgs("start", _session_id(word))
    return LiveArgs("start", title=typed.strip())


def end_args(typed: str) -> LiveArgs:
    return LiveArgs("end", _session_id(typed.split()[0]) if typed.split() else None)


def wall_clock(words: tuple[str, ...], now_local: dt.datetime) -> dt.datetime:
    """Typed date and time words -> a naive wall-clock time (in the zone now_local is in). A
    date without a year is this year's, or next year's when it is more than a day past."""
    *day, clock = words
    m = _TIME.match(clock)
    hour, minute = (int(m.group(1)), int(m.group(2))) if m else (99, 99)
    today = now_local.date()
    try:
        if not day:
            date = today
        elif day[0].lower() in RELATIVE_DAYS:
            date = today + dt.timedelta(days=RELATIVE_DAYS[day[0].lower()])
        else:
            d = _DATE.match(day[0])
            year, month, mday = (int(d.group(1)) if d and d.group(1) else today.year, int(d.group(2)) if d else 0,
                                 int(d.group(3)) if d else 0)
            date = dt.date(year, month, mday)
            if not (d and d.group(1)) and date < today - dt.timedelta(days=1):
                date = dt.date(year + 1, month, mday)
        return dt.datetime.combine(date, dt.time(hour, minute))
    except ValueError:
        raise ChatInputError(_("时间格式不对，请写成「12-08 20:00」或「明天 20:00」。")) from None


def _polite(exc: DomainError) -> list[Reply]:
    message = LIVE_MESSAGES.get(exc.code)
    return text(_(message) if message else polite(exc))


def _when_shown(session: live.LiveSession, tz: str) -> str:
    return local_time(session.scheduled_at or session.started_at, tz, "%m-%d %H:%M")


@command("live", keywords=("直播", "预告"), private=True, creator=True, args=live_args,
         help=N_("/live · 直播 — 我的直播；直播 12-08 20:00 标题 预告，改期，取消"))
def cmd_live(ctx: Context, cmd: Command) -> list[Reply]:
    args: LiveArgs = cmd.value
    tz = ctx.settings.LIVE_TIMEZONE
    try:
        if args.action == "list":
            return _list(ctx, tz)
        if args.action == "start":
            return _start(ctx, args)
        if args.action == "end":
            return _end(ctx, args)
        if args.action == "cancel":
            s = live.cancel(ctx.creator, args.session_id, reason=args.reason)
            return text(_("已取消直播 #{id}「{title}」，预约的粉丝会收到取消通知。").format(id=s.id, title=s.title))
        start = to_utc(wall_clock(args.when, in_zone(utcnow(), tz).replace(tzinfo=None)), tz)
        if args.action == "move":
            s = live.reschedule(ctx.creator, args.session_id, start)
            return text(_("直播 #{id} 已改到 {when}（{tz}），预约的粉丝会收到通知。").format(
                id=s.id, when=_when_shown(s, tz), tz=tz))
        spec = live_planning.SessionSpec(title=args.title, scheduled_at=start,
                                         pins=[live_planning.PinSpec(code) for code in args.skus])
        s = live_planning.schedule(ctx.creator, spec, max_pins=ctx.settings.LIVE_MAX_PINS)
        return text(_("已预告直播 #{id}「{title}」：{when}（{tz}），挂了 {pins} 个商品。粉丝现在可以预约了；"
                      "开播时发送「开播 {id}」。").format(id=s.id, title=s.title, when=_when_shown(s, tz), tz=tz,
                                                   pins=len(args.skus)))
    except DomainError as exc:
        return _polite(exc)


def _list(ctx: Context, tz: str) -> list[Reply]:
    sessions = live_page.creator_sessions(ctx.creator, tz, limit=LIST_MAX)
    if not sessions:
        return text(_("你还没有直播。发送「直播 12-08 20:00 标题」预告一场直播，或发送「开播」立即开播。"))
    lines = [_("我的直播（{tz}）").format(tz=tz)]
    for s in sessions:
        when = (s["scheduled_at_local"] or s["started_at_local"] or "")[5:]
        state = _(STATE_LABELS[s["state"]]) if s["state"] in STATE_LABELS else s["state"]
        lines.append(_("#{id} {when} {title} · {state} · 预约 {count} 人").format(
            id=s["id"], when=when, title=s["title"] or _("（无标题）"), state=state, count=s["reservations"]))
    lines.append(_("开播 编号 · 下播 编号 · 直播 改期 编号 时间 · 直播 取消 编号"))
    return text("\n".join(lines))


def _start(ctx: Context, args: LiveArgs) -> list[Reply]:
    if args.session_id is None:
        s = live.start_live(ctx.creator, args.title)
    else:
        s = live.go_live(ctx.creator, args.session_id)
    return text(_("直播 #{id} 已开播！带这场直播编号的订单计入直播成交。结束时发送「下播 {id}」。").format(id=s.id))


def _end(ctx: Context, args: LiveArgs) -> list[Reply]:
    if args.session_id is None:
        raise ChatInputError(_("请写上直播编号，例如「下播 12」；发送「直播」查看编号。"))
    s, ended_now = live.end_live(ctx.creator, args.session_id)
    if not ended_now:
        return text(_("直播 #{id} 已经结束了。").format(id=s.id))
    return text(_("直播 #{id} 已下播，本场订单几分钟内进入结算。").format(id=s.id))


@command("golive", keywords=("开播",), private=True, creator=True, args=start_args,
         help=N_("/golive 编号 · 开播 12 — 开始预告的直播（不写编号即立即开播）"))
def cmd_golive(ctx: Context, cmd: Command) -> list[Reply]:
    try:
        return _start(ctx, cmd.value)
    except DomainError as exc:
        return _polite(exc)


@command("endlive", keywords=("下播",), private=True, creator=True, args=end_args,
         help=N_("/endlive 编号 · 下播 12 — 结束直播（订单进入结算）"))
def cmd_endlive(ctx: Context, cmd: Command) -> list[Reply]:
    try:
        return _end(ctx, cmd.value)
    except DomainError as exc:
        return _polite(exc)
