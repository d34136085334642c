"""Group-buy (拼团) in chat, private and in community groups.

- 「拼团」 / /groupbuy: the activities open now (title, group price against retail, team size).
- 「拼团 <活动编号>」: a card. Joining means paying, which happens in the mini-program, so a
  team is started there; the card is posted for a team once someone is in it:
  - the sender is in a team of the activity (the latest, unless they left it or were
    refunded): that team's card (progress "2/3，还差1人", time left or the outcome, the join
    link). Sent in a community group, it also ties an open team to that group
    (`groupbuy.set_chat`, the first group only, by a member only): its progress and its
    success are posted there by tasks/group_notices.py through the one sender;
  - otherwise the activity's card: the open teams with a free seat (closest to filling first,
    each with its join link) and where to start a team in the mini-program.
  Telegram shows the links as URL buttons to the team's share page (`PUBLIC_BASE_URL/group/<team>`,
  which opens the mini-program); WeChat and the console get them in the text.
- 「拼团海报 <团编号>」 / /groupposter: the team's poster (QR of its share link), drawn with
  bots/poster.py's background, fonts and QR code.
What a card says is models/group_cards.py (Chinese, read by a whole group); the command's own
sentences are in the message catalogs.
"""

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
from models import group_cards, groupbuy
from models.chat import Platform
from models.db import utcnow
from models.money import rmb

LIST_MAX = 10
OPEN_TEAMS_SHOWN = 3
NOT_FOUND = N_("没有找到这个拼团活动，发送「拼团」查看正在进行的活动。")
TEAM_NOT_FOUND = N_("没有找到这个团，请核对团编号。")


def _number(value: str, usage: str) -> int:
    word = (first_word(value) or "").lstrip("#＃")
    if not word.isdigit() or len(word) > 15 or int(word) < 1:
        raise ChatInputError(_(usage))
    return int(word)


def activity_arg(value: str) -> int | None:
    """'' -> the list; '12' or '#12' -> activity 12."""
    if first_word(value) is None:
        return None
    return _number(value, N_("请发送：拼团 活动编号，例如 拼团 12；发送「拼团」查看活动。"))


def team_arg(value: str) -> int:
    return _number(value, N_("请发送：拼团海报 团编号，例如 拼团海报 34。"))


def _links_as_buttons(ctx: Context) -> bool:
    return ctx.incoming.platform == Platform.TELEGRAM.value


def _share(ctx: Context, team_id: int) -> str:
    return group_cards.share_url(ctx.settings.PUBLIC_BASE_URL, team_id)


@command("groupbuy", keywords=("拼团",), args=activity_arg,
         help=N_("/groupbuy · 拼团 — 正在进行的拼团；拼团 编号 发出拼团卡片"))
def cmd_groupbuy(ctx: Context, cmd: Command) -> list[Reply]:
    now = utcnow()
    if cmd.value is None:
        return _list(now)
    activity = group_cards.activity_line(cmd.value)
    if activity is None:
        return text(_(NOT_FOUND))
    mine = group_cards.team_of_user(ctx.user.id, activity.id)
    if mine is not None:
        return team_card(ctx, mine)
    if not activity.open_at(now):
        return text(_("这个拼团活动已经结束了，发送「拼团」查看正在进行的活动。"))
    return _activity_card(ctx, activity, now)


def _list(now) -> list[Reply]:  # noqa: ANN001
    found = group_cards.active_activities(now, LIST_MAX)
    if not found:
        return text(_("现在没有进行中的拼团活动。"))
    lines = [_("正在进行的拼团：")]
    lines += [f"#{a.id} {a.title} · {group_cards.price_line(a)}" for a in found]
    lines.append(_("发送「拼团 编号」发出拼团卡片；开团、参团在小程序里付款。"))
    return text("\n".join(lines))


def team_card(ctx: Context, team_id: int) -> list[Reply]:
    """The team's card; in a community group the team is tied to the group (first one only)."""
    card = group_cards.card_of(team_id)
    if card is None:
        return text(_(TEAM_NOT_FOUND))
    if ctx.incoming.chat_kind == "group" and card.chat_id is None and card.state == "open" \
            and group_cards.is_member(ctx.user.id, team_id):
        groupbuy.set_chat(team_id, ctx.incoming.platform, ctx.incoming.chat_id)
    now = utcnow()
    link = _share(ctx, team_id)
    joinable = group_cards.joinable_now(card, now)
    if _links_as_buttons(ctx):
        label = _("参团（{progress}）").format(progress=group_cards.progress(group_cards.shown_paid(card), card.size))
        buttons = ((Button(label, url=link),),) if joinable else ()
        return [Reply(text=group_cards.card_text(card, now), buttons=buttons, link=link)]
    return [Reply(text=group_cards.card_text(card, now, link=link), link=link)]


def _activity_card(ctx: Context, activity: group_cards.ActivityLine, now) -> list[Reply]:  # noqa: ANN001
    teams = group_cards.joinable(activity.id, now, OPEN_TEAMS_SHOWN)
    lines = [f"🛒 拼团活动：{activity.title}", group_cards.price_line(activity)]
    buttons = []
    for team in teams:
        line = f"团 #{team.team_id}：{group_cards.progress(team.paid, team.size)} · " \
               f"{group_cards.time_left(team.expires_at, now)}"
        if _links_as_buttons(ctx):
            buttons.append((Button(_("参团 #{id}（{progress}）").format(
                id=team.team_id, progress=group_cards.progress(team.paid, team.size)), url=_share(ctx, team.team_id)),))
        else:
            line += f"\n  参团：{_share(ctx, team.team_id)}"
        lines.append(line)
    if not teams:
        lines.append(_("还没有人开团，来做第一个团长吧！"))
    path = group_cards.activity_path(activity.id)
    lines.append(_("开团：在微信小程序「千星」打开 {path}，付款即开团。").format(path=path))
    return [Reply(text="\n".join(lines), buttons=tuple(buttons))]


@command("groupposter", keywords=("拼团海报",), args=team_arg,
         help=N_("/groupposter 团编号 · 拼团海报 团编号 — 生成拼团海报（扫码参团）"))
def cmd_groupposter(ctx: Context, cmd: Command) -> list[Reply]:
    card = group_cards.card_of(cmd.value)
    if card is None:
        return text(_(TEAM_NOT_FOUND))
    link = _share(ctx, card.team_id)
    png = render_poster(card, link)
    return [Reply(text=_("拼团海报已生成，扫码即可参团「{title}」。").format(title=card.title), image=png,
                  image_key=hashlib.sha256(png).hexdigest()[:40], link=link)]


def render_poster(card: group_cards.TeamCard, link: str) -> bytes:
    """A team poster: the activity, the group price against retail, the team size and the QR
    of the team's share link (bots/poster.py's background, fonts and QR code). The progress is
    left out, so one team's poster stays the same image while the team fills."""
    image = poster._background().copy()
    draw = ImageDraw.Draw(image)
    mid = poster.WIDTH // 2
    draw.text((mid, 118), f"{card.size}人拼团 · 团 #{card.team_id}", font=poster._font(30), fill="#ffffff",
              anchor="mt")
    y = 226
    for line in poster._wrap(poster.drawable(card.title) or "拼团", 36, 470, 2):
        draw.text((mid, y), line, font=poster._font(36), fill="#222222", anchor="mt")
        y += 48
    draw.text((mid, y + 8), f"拼团价 {rmb(card.group_price_fen)}", font=poster._font(44), fill="#e53935",
              anchor="mt")
    draw.text((mid, y + 64), f"单买 {rmb(card.retail_fen)}", font=poster._font(24), fill="#888888", anchor="mt")
    bottom = poster._paste_qr(image, link, y + 110, 260)
    draw.text((mid, bottom + 24), "扫码参团 · 付款即占位", font=poster._font(28), fill="#222222", anchor="mt")
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=poster.PNG_COMPRESS_LEVEL)
    return out.getvalue()
