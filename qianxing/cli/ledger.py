"""`qianxing ledger verify`: the double-entry ledger checks."""

from __future__ import annotations

import click

from qianxing.cli.boot import boot


@click.group()
def ledger() -> None:
    """The double-entry ledger."""


@ledger.command("verify")
def ledger_verify() -> None:
    """Prove every transaction balances, and that commission lines, settlement states and
    creators' balances agree with the ledger."""
    boot()
    from models import ledger as lg
    from models import settlement
    from models.db import connection

    with connection():
        bad = lg.unbalanced_transactions()
        problems = settlement.verify()
    if bad:
        raise click.ClickException(f"{len(bad)} unbalanced transactions: {bad[:10]}")
    if problems:
        raise click.ClickException("settlement does not match the ledger:\n  " + "\n  ".join(problems))
    click.echo("ledger balanced")
