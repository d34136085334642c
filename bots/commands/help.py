"""Help, and the answers to what is no command: an unknown slash word, a stale button."""

from __future__ import annotations

from bots.commands.i18n import N_, _
from bots.commands.registry import Command, Context, MenuPlace, command, help_text, menu
from bots.commands.replies import creator_of, help_hint, text
from bots.types import Reply

_HELP_LABEL = N_("帮助")


@command("help", slash=("help", "menu"), keywords=("帮助", "菜单"), help=N_("/help · 帮助 — 本说明"),
         menu=(MenuPlace("join", 0, 2, _HELP_LABEL), MenuPlace("wechat", 2, 4, _HELP_LABEL)))
def cmd_help(ctx: Context, cmd: Command) -> list[Reply]:
    return text(help_text(), buttons=menu("main") if creator_of(ctx) else menu("join"))


@command("stale_button", callback_only=True)
def cmd_stale(ctx: Context, cmd: Command) -> list[Reply]:
    return text(_("这个按钮已失效。{hint}").format(hint=help_hint()))


@command("unknown", callback_only=True)
def cmd_unknown(ctx: Context, cmd: Command) -> list[Reply]:
    word = cmd.args[0] if cmd.args else ""
    shown = "".join(ch for ch in word if ch.isalnum() or ch in "_-")[:32]
    if shown:
        return text(_("没有 /{word} 这个命令。{hint}").format(word=shown, hint=help_hint()))
    return text(_("没有这个命令。{hint}").format(hint=help_hint()))
