"""`qianxing chat`: the console chat.

The console chat drives exactly `bots.core.handle` with platform "console": each line read from
stdin is one message; `#N` presses button N of the last answer; `!join NAME` (with --group)
makes NAME join the group. With --group the chat opens with the account joining the group, so
the group's welcome is the first thing shown. Images are written under var/chat/ (or --images)
and their path is printed. End of input ends the chat with status 0, so it also runs with no stdin at all.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from bots.types import Button, Incoming, Member, Reply
from qianxing.cli.boot import boot


def _render(replies: list[Reply], images: Path) -> list[Button]:
    """Print the replies; returns the buttons, numbered from 1 in print order."""
    buttons: list[Button] = []
    if not replies:
        click.echo("（机器人没有回复）")
    for reply in replies:
        prefix = "[私聊] " if reply.private else ""
        if reply.text:
            click.echo(f"bot> {prefix}{reply.text}")
        if reply.image is not None:
            images.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_-]", "", reply.image_key or "")[:64] or f"image-{len(buttons)}"
            path = images / f"{name}.png"
            path.write_bytes(reply.image)
            click.echo(f"  [图片] {path}")
        if reply.link:
            click.echo(f"  [链接] {reply.link}")
        for row in reply.buttons:
            shown = []
            for button in row:
                buttons.append(button)
                shown.append(f"#{len(buttons)} {button.text}" + (f" ({button.url})" if button.url else ""))
            click.echo("  [按钮] " + "   ".join(shown))
    return buttons


@click.command("chat")
@click.option("--as", "as_user", required=True, help="the console account to talk as (any name)")
@click.option("--group", "group", default=None, help="talk inside this group chat instead of privately")
@click.option("--name", default=None, help="display name (default: the account)")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="where images are saved (default var/chat)")
def chat(as_user: str, group: str | None, name: str | None, images: Path | None) -> None:
    """Talk to the bot from the terminal: one message per line, #N presses a button."""
    boot()
    from bots.core import handle
    from qianxing.settings import VAR_DIR
    from qianxing.wiring import runtime

    rt = runtime()  # what the core needs (settings, Redis, withdrawal policy), given to it

    images = images or VAR_DIR / "chat"
    me = Member(external_id=as_user.strip(), name=(name or as_user).strip())
    chat_id = group if group else me.external_id
    kind = "group" if group else "private"
    if sys.stdin is None:  # started with stdin closed: nothing to read, like EOF
        return
    stdin = click.get_text_stream("stdin")
    interactive = stdin.isatty()
    buttons: list[Button] = []
    if group:  # entering the group: the account joins it and gets its welcome
        buttons = _render(handle(Incoming("console", chat_id, kind, me, joined=(me,)), rt), images)
    while True:
        if interactive:
            click.echo("> ", nl=False)
        line = stdin.readline()
        if not line:
            break
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        pressed = re.fullmatch(r"#(\d{1,4})", line.strip())
        joined = re.fullmatch(r"!join\s+(\S{1,56})", line.strip())
        if pressed:
            n = int(pressed.group(1))
            if not 1 <= n <= len(buttons):
                click.echo(f"没有按钮 #{n}")
                continue
            button = buttons[n - 1]
            if button.data is None:
                click.echo(f"  [链接] {button.url}")
                continue
            incoming = Incoming("console", chat_id, kind, me, callback=button.data)
        elif joined and group:
            newcomer = Member(joined.group(1), joined.group(1))
            incoming = Incoming("console", chat_id, kind, newcomer, joined=(newcomer,))
        else:
            incoming = Incoming("console", chat_id, kind, me, text=line)
        buttons = _render(handle(incoming, rt), images)


# ---- groups -----------------------------------------------------------------------------------
