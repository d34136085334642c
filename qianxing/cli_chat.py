"""`qianxing chat` (the console chat) and `qianxing groups ...` (community-group rules and config).

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

OPERATOR = "operator:cli"


def _boot() -> None:
    from qianxing.cli import _boot as boot

    boot()


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
    _boot()
    from bots.core import handle
    from qianxing.settings import VAR_DIR

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
        buttons = _render(handle(Incoming("console", chat_id, kind, me, joined=(me,))), images)
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
        buttons = _render(handle(incoming), images)


# ---- groups -----------------------------------------------------------------------------------


@click.group("groups")
def groups_cli() -> None:
    """Community groups: auto-reply rules and per-group config."""


@groups_cli.group("rules")
def rules() -> None:
    """Keyword auto-reply rules (exact, contains, regex; the highest priority wins)."""


def _fail(exc: Exception) -> click.ClickException:
    from models.errors import DomainError

    return click.ClickException(exc.message if isinstance(exc, DomainError) else str(exc))


@rules.command("add")
@click.option("--scope", default="*", show_default=True, help="a group's chat key (telegram:-100123) or *")
@click.option("--match", "match", type=click.Choice(["exact", "contains", "regex"]), required=True)
@click.option("--pattern", required=True)
@click.option("--reply", required=True, help="the answer; {name} is the asker's name")
@click.option("--priority", default=0, show_default=True, type=int)
def rules_add(scope: str, match: str, pattern: str, reply: str, priority: int) -> None:
    """Add a rule (a regex that could run slowly is refused)."""
    _boot()
    from bots.groups import save_rule
    from models.db import connection
    from models.errors import DomainError

    with connection():
        try:
            rule = save_rule(scope, match, pattern, reply, priority)
        except DomainError as exc:
            raise _fail(exc) from None
    click.echo(f"rule {rule.id}: {rule.scope} {rule.match} {rule.pattern!r} priority {rule.priority}")


@rules.command("list")
@click.option("--scope", default=None, help="only this scope")
def rules_list(scope: str | None) -> None:
    """Rules by scope, highest priority first."""
    _boot()
    from bots.groups import list_rules
    from models.db import connection

    with connection():
        found = list_rules(scope)
    for r in found:
        click.echo(f"{r.id} {'on ' if r.active else 'off'} {r.scope} {r.match} {r.pattern!r} "
                   f"priority {r.priority} -> {r.reply[:60]!r}")
    if not found:
        click.echo("no rules")


@rules.command("disable")
@click.argument("rule_id", type=int)
def rules_disable(rule_id: int) -> None:
    """Switch a rule off (rules are kept, never deleted)."""
    _set_active(rule_id, False)


@rules.command("enable")
@click.argument("rule_id", type=int)
def rules_enable(rule_id: int) -> None:
    """Switch a rule back on."""
    _set_active(rule_id, True)


def _set_active(rule_id: int, active: bool) -> None:
    _boot()
    from bots.groups import set_rule_active
    from models.db import connection
    from models.errors import DomainError

    with connection():
        try:
            rule = set_rule_active(rule_id, active)
        except DomainError as exc:
            raise _fail(exc) from None
    click.echo(f"rule {rule.id}: {'on' if rule.active else 'off'}")


@groups_cli.command("config")
@click.argument("chat_key")
@click.option("--title", default=None)
@click.option("--welcome", default=None, help="welcome text; {name} is the newcomers' names")
@click.option("--coupon", default=None, help="coupon text shown in the welcome")
@click.option("--promo-ref", default=None, help="creator invite code for the welcome's shop link ('' clears)")
@click.option("--banned-words", default=None, help="comma-separated ('' clears)")
@click.option("--rate", type=click.IntRange(0, 1000), default=None,
              help="replies per minute (0: the TELEGRAM_RATE_PER_GROUP_PER_MIN setting)")
@click.option("--ai-fallback/--no-ai-fallback", default=None, help="answer unmatched questions offline")
@click.option("--active/--inactive", default=None, help="an inactive group is ignored")
def groups_config(chat_key: str, title: str | None, welcome: str | None, coupon: str | None,
                  promo_ref: str | None, banned_words: str | None, rate: int | None,
                  ai_fallback: bool | None, active: bool | None) -> None:
    """Create or change a group's config, then print it."""
    _boot()
    from bots.groups import configure
    from models.db import connection
    from models.errors import DomainError

    changes: dict = {"title": title, "welcome_text": welcome, "coupon_text": coupon, "promo_ref": promo_ref,
                     "ai_fallback": ai_fallback, "active": active}
    if banned_words is not None:
        changes["banned_words"] = [w for w in re.split(r"[,，]", banned_words) if w.strip()]
    if rate is not None:
        changes["replies_per_minute"] = rate or None
    with connection():
        try:
            cfg = configure(chat_key, **changes)
        except DomainError as exc:
            raise _fail(exc) from None
    click.echo(f"{cfg.chat_key}: {'active' if cfg.active else 'inactive'}, "
               f"rate {cfg.replies_per_minute or 'default'}/min, ai_fallback {'on' if cfg.ai_fallback else 'off'}, "
               f"promo_ref {cfg.promo_ref or '-'}, banned words {len(cfg.banned_words or [])}")
    if cfg.welcome_text:
        click.echo(f"welcome: {cfg.welcome_text}")
    if cfg.coupon_text:
        click.echo(f"coupon: {cfg.coupon_text}")


def register(main: click.Group) -> None:
    main.add_command(chat)
    main.add_command(groups_cli)
