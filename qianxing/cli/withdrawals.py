"""`qianxing withdrawals ...`: operators list, approve and reject withdrawals and run payouts."""

from __future__ import annotations

import json

import click

from models.withdrawals import WithdrawalState
from qianxing.cli.boot import OPERATOR, boot


@click.group()
def withdrawals() -> None:
    """Creator withdrawals (approval above WITHDRAW_REVIEW_ABOVE_FEN, T+1 payouts)."""


@withdrawals.command("list")
@click.option("--state", type=click.Choice([s.value for s in WithdrawalState]), default=None,
              help="only withdrawals in this state")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
def withdrawals_list(state: str | None, limit: int) -> None:
    """Withdrawals, newest first: id, no, creator, method, amount, fee, state, due."""
    boot()
    from models.db import connection
    from models.withdrawals import find_withdrawals

    with connection():
        found = find_withdrawals(state, limit)
    for w in found:
        click.echo(f"{w.id} {w.no} creator:{w.creator_id} {w.method} {w.amount_fen} fen "
                   f"fee {w.fee_fen} {w.state} due {w.due_at:%Y-%m-%d %H:%M}"
                   + (f" ({w.last_error})" if w.last_error else ""))
    if not found:
        click.echo("no withdrawals")


@withdrawals.command("approve")
@click.argument("withdrawal_id", type=int)
def withdrawals_approve(withdrawal_id: int) -> None:
    """Let a withdrawal under review be paid at its payout time. Above
    WITHDRAW_SECOND_APPROVAL_ABOVE_FEN it takes two different approvers: the command line
    counts as one (operator:cli), the other approves in the admin."""
    second_above = boot().WITHDRAW_SECOND_APPROVAL_ABOVE_FEN
    from models.db import connection
    from models.errors import DomainError
    from models.payouts import approve

    with connection():
        try:
            w = approve(withdrawal_id, OPERATOR, second_above_fen=second_above)
        except DomainError as exc:
            raise click.ClickException(exc.message) from None
    if w.state == WithdrawalState.REVIEW:
        click.echo(f"withdrawal {w.id}: approval by {OPERATOR} recorded; above {second_above} fen a "
                   "second, different operator must approve it too")
        return
    click.echo(f"withdrawal {w.id}: {w.state}, due {w.due_at:%Y-%m-%d %H:%M} UTC")


@withdrawals.command("reject")
@click.argument("withdrawal_id", type=int)
@click.option("--reason", required=True, help="told to the creator and kept in the audit event")
def withdrawals_reject(withdrawal_id: int, reason: str) -> None:
    """Refuse a withdrawal not yet paid; the money returns to the creator's available balance."""
    boot()
    from models.db import connection
    from models.errors import DomainError
    from models.payouts import reject

    with connection():
        try:
            w = reject(withdrawal_id, OPERATOR, reason)
        except DomainError as exc:
            raise click.ClickException(exc.message) from None
    click.echo(f"withdrawal {w.id}: {w.state}")


@withdrawals.command("pay-due")
def withdrawals_pay_due() -> None:
    """Pay due wallet withdrawals now (the worker also does this every 10 minutes)."""
    boot()
    from tasks.withdrawals import pay_due_withdrawals

    click.echo(json.dumps(pay_due_withdrawals()))
