"""`qianxing settle`: commission settlement from the operator shell."""

from __future__ import annotations

import click

from qianxing.cli.boot import boot


@click.command()
@click.option("--live", "live_id", type=int, default=None, help="only the orders of this live session")
@click.option("--release", is_flag=True, help="also move commission past the refund window to available")
@click.option("--reverse-refunds", is_flag=True, help="also reverse or claw back refunded orders' commission")
@click.option("--retry-set-aside", is_flag=True,
              help="also retry now the orders a failed batch set aside (after fixing their cause)")
def settle(live_id: int | None, release: bool, reverse_refunds: bool, retry_set_aside: bool) -> None:
    """Settle every paid, unsettled order (safe to run again, and beside the worker's jobs)."""
    s = boot()
    from models import reversals, settlement
    from models.db import connection
    from qianxing.wiring import runtime

    policy = runtime().payout
    with connection():
        todo = settlement.unsettled_count(live_id=live_id)
        with click.progressbar(length=todo, label="settling", show_pos=True, file=None) as bar:
            result = settlement.settle(policy, live_id=live_id, batch=s.SETTLE_BATCH, progress=bar.update,
                                       retry_intervals=s.intervals("ITEM_RETRY_INTERVALS"))
        parts = [f"settled {result.orders} orders: {result.lines} commission lines, "
                 f"{result.paid_fen} fen pending, {result.batches} batches"]
        if retry_set_aside:
            from models import failures

            aside = sorted(failures.parked_all(failures.SETTLEMENT))
            again = settlement.settle(policy, order_ids=aside, retry_set_aside=True,
                                      retry_intervals=s.intervals("ITEM_RETRY_INTERVALS"))
            still = failures.parked(failures.SETTLEMENT, aside)
            parts.append(f"retried {len(aside)} set-aside orders: {again.orders} settled, "
                         f"{len(still)} still failing")
        if release:
            parts.append(f"released {settlement.release_due(policy, batch=s.SETTLE_BATCH)} orders")
        if reverse_refunds:
            parts.append(f"reversed {reversals.reverse_refunded()} refunded orders")
    click.echo("; ".join(parts))
