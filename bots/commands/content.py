"""Content: short-video scripts (/script, 文案) and the creator's style (/style, 风格).

    /script [15|30|60] [SKU] [主题]      a script (the 30 s variant by default) from the catalog's
                                         facts and the creator's style (content_ai/scripts.py)
    /script [15|30|60] #编号             another variant of one of my kept scripts
    /script 字幕 #编号 [15|30|60]        its subtitles as SRT text
    /style 亲切                          remember my style (at most 20 characters)

A creator's script for a SKU is kept (the mini-program lists it and submits it for review), and
the reply's buttons show its other variants and subtitles; anyone else gets the script with the
commands for the other variants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bots.commands.i18n import N_, _
from bots.commands.links import product_path
from bots.commands.parsing import ChatInputError
from bots.commands.registry import Command, Context, MenuPlace, command
from bots.commands.replies import creator_of, text
from bots.types import Button, Reply
from content_ai import scripts as content
from content_ai.script_facts import clean, facts_of
from models import scripts
from models.catalog import Sku

SRT_WORDS = ("srt", "字幕")
CALLBACK_MAX = 64  # bytes of a button's callback data (Telegram)


@dataclass(frozen=True)
class ScriptArgs:
    duration: int = 30
    srt: bool = False
    script_id: int | None = None
    sku: Sku | None = None
    topic: str = ""


def script_args(typed: str) -> ScriptArgs:
    """'[字幕] [15|30|60] [#编号 | SKU] [主题]', the leading words in any order."""
    rest, found = typed.strip(), {}
    while rest:
        word = rest.split(None, 1)[0]
        if word.lower() in SRT_WORDS and "srt" not in found:
            found["srt"] = True
        elif word.isdigit() and len(word) <= 3 and "duration" not in found:
            if int(word) not in content.DURATIONS:
                raise ChatInputError(_("时长只能是 15、30 或 60 秒，例如：/script 15 商品编码 主题"),
                                     code="invalid_duration")
            found["duration"] = int(word)
        elif re.fullmatch(r"#\d{1,18}", word) and "script_id" not in found and "sku" not in found:
            found["script_id"] = int(word[1:])
        elif "sku" not in found and "script_id" not in found and (
                sku := Sku.get_or_none((Sku.code == word[:64]) & Sku.active)) is not None:
            found["sku"] = sku
        else:
            break
        rest = rest[len(word):].strip()
    topic = clean(rest, 10 * content.TOPIC_MAX)
    if len(topic) > content.TOPIC_MAX:
        raise ChatInputError(_("主题太长了，请控制在 {n} 个字以内。").format(n=content.TOPIC_MAX),
                             code="topic_too_long")
    if found.get("srt") and "script_id" not in found:
        raise ChatInputError(_("请发送：/script 字幕 #编号，例如「文案 字幕 #12 15」。"), code="script_id_required")
    return ScriptArgs(topic=topic, **found)


def _fits(data: str) -> bool:
    return len(data.encode()) <= CALLBACK_MAX


def _kept(ctx: Context, args: ScriptArgs) -> list[Reply]:
    creator = creator_of(ctx)
    row = scripts.get(args.script_id or 0, creator.id if creator else -1)
    if args.srt:
        body = content.srt_text(row.data, args.duration)
        return text(_("文案 #{id} 的字幕（SRT，{d}秒版），复制后保存为 .srt 文件：").format(id=row.id, d=args.duration)
                    + "\n\n" + body)
    return _show(row.data, args.duration, row.id)


def _show(data: dict, duration: int, script_id: int | None, *, again: str = "", link: str = "") -> list[Reply]:
    body = content.chat_text(data, duration)
    if link:
        body += "\n" + _("下单链接：{link}").format(link=link)
    others = [d for d in content.DURATIONS if d != duration]
    if script_id is not None:
        body += "\n\n" + _("文案编号 #{id}。发送「/script {d} #{id}」看 {d} 秒版，「/script 字幕 #{id}」取字幕（SRT）；"
                           "在小程序「我的文案」提交审核后发布。").format(id=script_id, d=others[0])
        buttons = tuple(Button(_("{d}秒版").format(d=d), f"script:{d} #{script_id}") for d in others)
        buttons += (Button(_("字幕 SRT"), f"script:srt #{script_id} {duration}"),)
        return text(body, buttons=(buttons,))
    body += "\n\n" + _("发送「{command}」看 {d} 秒版。").format(command=f"/script {others[0]} {again}".strip(),
                                                              d=others[0])
    buttons = tuple(Button(_("{d}秒版").format(d=d), f"script:{d} {again}".strip()) for d in others
                    if _fits(f"script:{d} {again}".strip()))
    return text(body, buttons=(buttons,) if buttons else ())


@command("script", keywords=("文案",), args=script_args,
         help=N_("/script [15|30|60] [商品编码] [主题] · 文案 — 带货短视频文案（含字幕）"),
         menu=MenuPlace("wechat", 0, 2, N_("带货文案")))
def cmd_script(ctx: Context, cmd: Command) -> list[Reply]:
    args: ScriptArgs = cmd.value
    if args.script_id is not None:
        return _kept(ctx, args)
    creator = creator_of(ctx)
    name = (creator.name if creator else "") or ctx.display_name or _("千星创作者")
    if args.sku is not None and creator is not None:
        row = content.create_script(creator, args.sku.code, args.topic, ai=ctx.ai, settings=ctx.settings)
        return _show(row.data, args.duration, row.id, link=product_path(args.sku.code, creator.code))
    facts = facts_of(args.sku, None) if args.sku is not None else None
    made = content.generate(facts, topic=args.topic, style=scripts.style_of(creator), creator_name=name, ai=ctx.ai,
                            creator_id=creator.id if creator else None, settings=ctx.settings)
    again = " ".join(x for x in (args.sku.code if args.sku else "", args.topic) if x)
    return _show(made.script.model_dump(), args.duration, None, again=again)


@command("style", keywords=("风格",), args=True, creator=True,
         help=N_("/style 风格 · 风格 亲切 — 设置我的文案风格（20 字以内）"))
def cmd_style(ctx: Context, cmd: Command) -> list[Reply]:
    assert ctx.creator is not None
    if not cmd.rest.strip():
        current = scripts.style_of(ctx.creator)
        if current:
            return text(_("你的文案风格是「{style}」。发送「风格 新风格」修改，例如：风格 专业").format(style=current))
        return text(_("还没有设置文案风格。发送「风格 亲切」（或 专业、搞笑，20 字以内）设置。"))
    style = scripts.set_style(ctx.creator, cmd.rest)
    if not style:
        return text(_("文案风格已清除，之后按默认的亲切风格生成。"))
    return text(_("文案风格已设为「{style}」，之后生成的文案都会用这个风格。").format(style=style))
