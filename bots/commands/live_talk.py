"""Live talk tracks in chat, for creators: /talk [场次编号] (话术, 直播话术) writes the talk track
of the creator's session (default: the one live now, else the next scheduled one): an opening,
one part per pinned product with its tier prices, the welfare item, a closing. With a model
configured (ctx.ai) the model writes it under the guards, else the templates
(content_ai/live_tracks.py)."""

from __future__ import annotations

from bots.commands.i18n import N_, _
from bots.commands.parsing import ChatInputError
from bots.commands.registry import Command, Context, command
from bots.commands.replies import text
from bots.types import Reply
from content_ai import live_tracks
from models import live_content
from models.errors import DomainError

ERRORS = {
    "live_not_found": N_("没有找到你的这场直播，请核对场次编号（发送「直播」查看）。"),
    "live_ended": N_("这场直播已经结束了，话术只为预告中或直播中的场次生成。"),
    "live_cancelled": N_("这场直播已取消，话术只为预告中或直播中的场次生成。"),
}
CHUNK = 600  # characters per message (3 bytes each in UTF-8: within WeChat's 2,048 bytes)
LABELS = {"opening": N_("开场"), "welfare": N_("福利"), "closing": N_("收尾")}


def session_arg(typed: str) -> int | None:
    """An optional session id: '' -> None (the live or next scheduled session)."""
    typed = typed.strip().lstrip("#")
    if not typed:
        return None
    if not typed.isdigit() or len(typed) > 15:
        raise ChatInputError(_("请发送：/talk 或 /talk 场次编号，例如「话术 12」。"))
    return int(typed)


def render(track: live_tracks.TalkTrack) -> list[str]:
    """The track as chat messages of at most CHUNK characters each (whole sections: a WeChat
    text message holds about 2,000 bytes, a Telegram one 4,096 characters)."""
    lines = [_("直播话术 #{id}「{title}」").format(id=track.session_id, title=track.title or "—")]
    n = 0
    for s in track.sections:
        if s.kind == "product":
            n += 1
            label = _("商品{n}·{name}").format(n=n, name=s.name)
        else:
            label = _(LABELS[s.kind])
        lines.append(f"【{label}】{s.text}")
    chunks = [lines[0]]
    for line in lines[1:]:
        if len(chunks[-1]) + 1 + len(line) > CHUNK:
            chunks.append(line)
        else:
            chunks[-1] += "\n" + line
    return chunks


@command("talk", keywords=("话术", "直播话术"), private=True, creator=True, args=session_arg,
         help=N_("/talk [编号] · 话术 — 直播话术（开场、商品讲解、福利、收尾）"))
def cmd_talk(ctx: Context, cmd: Command) -> list[Reply]:
    creator = ctx.creator
    session_id = cmd.value
    if session_id is None:
        session = live_content.next_session(creator)
        if session is None:
            return text(_("你还没有预告中的直播。发送「直播 12-08 20:00 标题」预告一场，再发送「话术」生成直播话术。"))
        session_id = session.id
    try:
        facts = live_content.talk_facts(session_id, ctx.settings.LIVE_TIMEZONE, creator=creator)
    except DomainError as exc:
        found = ERRORS.get(exc.code)
        if found is None:
            raise
        return text(_(found))
    track = live_tracks.talk_track(facts, ai=ctx.ai, settings=ctx.settings, creator_id=creator.id)
    return [Reply(text=chunk) for chunk in render(track)]
