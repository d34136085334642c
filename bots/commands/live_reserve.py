"""Reservations in chat: reserve (the session card's button on Telegram, the keyword
「预约 <id>」 on the WeChat official account), and for creators the session card to share into
chats, the reservation count and the reservation poster (QR to the session)."""

from __future__ import annotations

import hashlib
import io

from PIL import ImageDraw

from bots import poster
from bots.commands.i18n import N_, _
from bots.commands.parsing import ChatInputError, first_word
from bots.commands.registry import Command, Context, command
from bots.commands.replies import text
from bots.types import Button, Reply
from models import reminders, reservations
from models.chat import Platform
from models.errors import DomainError
from models.live import LiveSession, LiveState

RESERVE_BUTTON = N_("预约直播")
NOT_RESERVED = N_("预约没有成功，请稍后再试。")
LIST_MAX = 10
_CHANNEL = {Platform.TELEGRAM.value: reservations.Channel.TELEGRAM.value,
            Platform.WECHAT.value: reservations.Channel.WECHAT_OA.value}
# Polite answers to the refusals of models.reservations.
_REFUSED = {
    "live_not_found": N_("没有找到这场直播，请核对直播编号。"),
    "live_cancelled": N_("这场直播已取消，不能预约了。"),
    "live_ended": N_("这场直播已经结束了。"),
    "reservations_closed": N_("这场直播已经开播，预约已截止，快去直播间看看吧。"),
}


def session_id(value: str) -> int:
    """The session number typed after the command."""
    word = first_word(value)
    if word is None or not word.isdigit() or len(word) > 15 or int(word) < 1:
        raise ChatInputError(_("请发送：预约 直播编号，例如 预约 12。"))
    return int(word)


def optional_session_id(value: str) -> int | None:
    return session_id(value) if first_word(value) is not None else None


def _refused(exc: DomainError) -> list[Reply]:
    return text(_(_REFUSED.get(exc.code, NOT_RESERVED)))


def _when(session: LiveSession, ctx: Context) -> str:
    if session.scheduled_at is None:
        return _("直播中")
    return reminders.local_time(session.scheduled_at, ctx.settings.LIVE_TIMEZONE)


def share_url(ctx: Context, session_id: int) -> str:
    return reminders.share_url(ctx.settings.PUBLIC_BASE_URL, session_id)


@command("reserve", keywords=("预约",), args=session_id, help=N_("/reserve 编号 · 预约 编号 — 预约直播，开播前提醒你"))
def cmd_reserve(ctx: Context, cmd: Command) -> list[Reply]:
    channel = _CHANNEL.get(ctx.incoming.platform, reservations.Channel.TELEGRAM.value)
    try:
        found, created = reservations.reserve(ctx.user, cmd.value, channel)
        session = LiveSession.get_by_id(cmd.value)
    except DomainError as exc:
        return _refused(exc)
    who = f"{ctx.display_name}，" if ctx.incoming.chat_kind == "group" and ctx.display_name else ""
    if not created:
        return text(who + _("你已经预约过「{title}」了，开播前会提醒你。").format(title=session.title))
    return text(who + _("预约成功！「{title}」将于 {when}（北京时间）开播，开播前会提醒你。")
                .format(title=session.title, when=_when(session, ctx)))


def _own_session(ctx: Context, session_id: int) -> LiveSession:
    session = LiveSession.get_or_none((LiveSession.id == session_id) & (LiveSession.creator == ctx.creator.id))
    if session is None:
        raise ChatInputError(_(_REFUSED["live_not_found"]))
    return session


@command("live_card", slash=("livecard",), keywords=("直播卡片",), creator=True, args=session_id,
         help=N_("/livecard 编号 · 直播卡片 编号 — 生成可转发到群里的直播预约卡片"))
def cmd_live_card(ctx: Context, cmd: Command) -> list[Reply]:
    session = _own_session(ctx, cmd.value)
    if session.state != LiveState.SCHEDULED:
        return _refused(DomainError("", code="reservations_closed" if session.state == LiveState.LIVE
                                    else f"live_{session.state}"))
    lines = [_("📺 直播预告：{title}").format(title=session.title),
             _("开播时间：{when}（北京时间）").format(when=_when(session, ctx)),
             _("已有 {n} 人预约").format(n=reservations.count(session.id)),
             _("点下面的按钮预约，开播前提醒你。")]
    return [Reply(text="\n".join(lines), link=share_url(ctx, session.id),
                  buttons=((Button(_(RESERVE_BUTTON), f"reserve:{session.id}"),),))]


@command("reservations", slash=("reservations",), keywords=("预约人数",), creator=True, args=optional_session_id,
         help=N_("/reservations · 预约人数 — 查看我的直播预约人数"))
def cmd_reservations(ctx: Context, cmd: Command) -> list[Reply]:
    if cmd.value is not None:
        sessions = [_own_session(ctx, cmd.value)]
    else:
        sessions = list(LiveSession.select().where((LiveSession.creator == ctx.creator.id)
                                                   & (LiveSession.state == LiveState.SCHEDULED.value))
                        .order_by(LiveSession.scheduled_at).limit(LIST_MAX))
    if not sessions:
        return text(_("你还没有待开播的直播。"))
    counts = reservations.counts([s.id for s in sessions])
    lines = [_("直播 {id}「{title}」{when}：{n} 人预约").format(id=s.id, title=s.title, when=_when(s, ctx),
                                                       n=counts.get(s.id, 0)) for s in sessions]
    return text("\n".join(lines))


@command("reserve_poster", slash=("liveposter",), keywords=("预约海报",), creator=True, args=session_id,
         help=N_("/liveposter 编号 · 预约海报 编号 — 生成直播预约海报（扫码预约）"))
def cmd_reserve_poster(ctx: Context, cmd: Command) -> list[Reply]:
    session = _own_session(ctx, cmd.value)
    png = render_poster(session.title, _when(session, ctx), share_url(ctx, session.id),
                        ctx.creator.name or ctx.creator.code)
    return [Reply(text=_("直播预约海报已生成，扫码即可预约「{title}」。").format(title=session.title), image=png,
                  image_key=hashlib.sha256(png).hexdigest()[:40], link=share_url(ctx, session.id))]


def render_poster(title: str, when: str, link: str, creator: str) -> bytes:
    """A reservation poster: who, what, when, and the QR to the session (bots/poster.py's
    background, fonts and QR code)."""
    image = poster._background().copy()
    draw = ImageDraw.Draw(image)
    mid = poster.WIDTH // 2
    draw.text((mid, 118), poster._fit(f"{creator} 的直播预告", 30, 500), font=poster._font(30), fill="#ffffff",
              anchor="mt")
    y = 226
    for line in poster._wrap(poster.drawable(title) or "直播", 36, 470, 2):
        draw.text((mid, y), line, font=poster._font(36), fill="#222222", anchor="mt")
        y += 48
    draw.text((mid, y + 8), f"开播 {when}", font=poster._font(26), fill="#e53935", anchor="mt")
    bottom = poster._paste_qr(image, link, y + 70, 280)
    draw.text((mid, bottom + 24), "扫码预约 · 开播提醒", font=poster._font(28), fill="#222222", anchor="mt")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()
