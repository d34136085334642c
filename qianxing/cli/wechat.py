"""`qianxing wechat ...`: the official account's setup through wechatpy."""

from __future__ import annotations

import json

import click

from qianxing.cli.boot import boot


@click.group()
def wechat() -> None:
    """The WeChat official account (WECHAT_OA_APPID / WECHAT_OA_SECRET)."""


@wechat.command("menu")
@click.option("--dry-run", is_flag=True, help="print the menu JSON without creating it")
def wechat_menu(dry_run: bool) -> None:
    """Create the account's menu, generated from the chat command registry (the `wechat` menu
    places of bots/commands/): each button sends a command key (CMD_POSTER, CMD_TEAM,
    CMD_EARNINGS, CMD_PRODUCTS, CMD_VOUCHERS, ...) that runs the same command as its keyword."""
    from bots.wechat_oa import MENU, menu_keys

    if dry_run:
        click.echo(json.dumps(MENU, ensure_ascii=False, indent=2))
        return
    settings = boot()
    if not settings.WECHAT_OA_SECRET:
        raise click.ClickException("WECHAT_OA_SECRET is not set: no official account to configure")
    from wechatpy.exceptions import WeChatClientException

    from qianxing.wiring import runtime

    try:
        runtime().oa.menu.create(MENU)
    except WeChatClientException as exc:
        raise click.ClickException(f"WeChat refused the menu: {exc.errcode} {exc.errmsg}") from None
    except OSError as exc:  # requests' connection errors
        raise click.ClickException(f"cannot reach the WeChat API: {exc}") from None
    click.echo(f"menu created for {settings.WECHAT_OA_APPID}: {', '.join(menu_keys())}")
