"""`qianxing groups ...`: community-group auto-reply rules and per-group config."""

from __future__ import annotations

import re

import click

from qianxing.cli.boot import boot


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
    boot()
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
    boot()
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
    boot()
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
    boot()
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
