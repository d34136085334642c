"""The `qianxing` command: `main`, with the commands of this package's modules registered on it.

One module per area (admin, service, vault, orders, ledger, settle, withdrawals, network, chat, groups,
tgbot, wechat, bench, live); each imports `qianxing.cli.boot` for the settings and the booted
runtime, never this module. `python -m qianxing.cli ...` runs `main` (see __main__.py).
"""

from __future__ import annotations

import click

from qianxing.cli import (
    admin,
    bench,
    chat,
    groups,
    ledger,
    live,
    network,
    orders,
    service,
    settle,
    tgbot,
    vault,
    wechat,
    withdrawals,
)

__all__ = ["main"]


@click.group()
def main() -> None:
    """千星 Qianxing: social-commerce service."""


for _command in (
    service.migrate, service.seed_demo, service.web, service.worker, service.run,
    vault.vault, orders.orders, ledger.ledger, bench.bench,
    settle.settle, withdrawals.withdrawals, wechat.wechat, tgbot.tgbot,
    *network.COMMANDS, chat.chat, groups.groups_cli, admin.admin, live.live,
):
    main.add_command(_command)
