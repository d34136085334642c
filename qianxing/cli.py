"""The `qianxing` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from qianxing.settings import Settings, SettingsError, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _boot() -> Settings:
    from qianxing.wiring import bootstrap

    settings = _settings()
    bootstrap(settings)
    return settings


@click.group()
def main() -> None:
    """千星 Qianxing: social-commerce service."""


@main.command()
def migrate() -> None:
    """Apply pending schema migrations."""
    _boot()
    from models.migrations import migrate as run

    applied = run()
    click.echo("applied: " + ", ".join(applied) if applied else "schema is up to date")


@main.command("seed-demo")
@click.option("--keys", default=50, show_default=True, help="card keys per demo SKU")
def seed_demo(keys: int) -> None:
    """Create the demo catalog and vault (skips if present)."""
    _boot()
    from models.db import connection
    from qianxing.demo import demo_summary
    from qianxing.demo import seed_demo as run

    with connection():
        done = run(keys)
        summary = demo_summary()
    click.echo("\n".join(done) if done else "demo data already present")
    click.echo("\n".join(summary))


@main.command()
def web() -> None:
    """Serve the Flask app with gunicorn (WEB_BIND, WEB_WORKERS, WEB_THREADS)."""
    from qianxing.server import serve

    serve(_settings())


@main.command()
@click.option("--burst", is_flag=True, help="process what is queued, then exit")
@click.option("--no-cron", is_flag=True, help="do not run the periodic-job scheduler")
def worker(burst: bool, no_cron: bool) -> None:
    """Run an RQ worker with the scheduler and the periodic jobs."""
    from tasks.worker import run_worker

    run_worker(_settings(), burst=burst, with_cron=not no_cron)


@main.command()
@click.option("--no-seed", is_flag=True)
def run(no_seed: bool) -> None:
    """Development: migrate, seed demo data, start web and worker; Ctrl-C stops all."""
    from qianxing.devserver import run_all

    run_all(_settings(), seed=not no_seed)


# ---- vault --------------------------------------------------------------------------------


@main.group()
def vault() -> None:
    """Card-key vault."""


@vault.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--sku", required=True, help="SKU code")
def vault_import(file: Path, sku: str) -> None:
    """Import card keys from a CSV file (first column)."""
    s = _boot()
    from models import catalog, inventory
    from models import vault as v
    from models.db import connection
    from models.errors import DomainError

    with connection():
        try:
            target = catalog.get_sku(sku, active_only=False)
            report = v.import_keys(target, v.parse_csv(file.read_text(encoding="utf-8-sig")))
        except DomainError as exc:
            raise click.ClickException(exc.message) from None
        inventory.check_low_stock(target.id, s.LOW_STOCK_THRESHOLD)
    click.echo(f"imported {report.imported} keys into {sku}; rejected {report.rejected}")
    for label, lines in (("duplicate in file", report.duplicate_in_file),
                         ("already in pool", report.duplicate_in_pool), ("invalid", report.invalid)):
        if lines:
            click.echo(f"  {label}: lines {', '.join(map(str, lines[:50]))}"
                       + (" ..." if len(lines) > 50 else ""))


@vault.command("rotate-key")
def vault_rotate() -> None:
    """Re-encrypt every stored key with the first VOUCHER_KEY entry."""
    _boot()
    from models import vault as v
    from models.db import connection

    with connection():
        n = v.rotate_key()
    click.echo(f"re-encrypted {n} secrets with key {v.cipher().current_id}")


@vault.command("status")
@click.option("--sku", required=True)
def vault_status(sku: str) -> None:
    """Key counts by state for a SKU."""
    _boot()
    from models import catalog
    from models import vault as v
    from models.db import connection

    with connection():
        click.echo(json.dumps(v.key_counts(catalog.get_sku(sku, active_only=False))))


# ---- orders -------------------------------------------------------------------------------


@main.group()
def orders() -> None:
    """Operator actions on orders."""


@orders.command("show")
@click.argument("order_id", type=int)
def orders_show(order_id: int) -> None:
    _boot()
    from models import events
    from models.db import connection
    from models.failures import of_item
    from models.orders import get_order

    with connection():
        o = get_order(order_id)
        click.echo(f"{o.id} {o.no} {o.sku.code} x{o.quantity} {o.amount_fen} fen {o.status}")
        for f in of_item(o.id):
            if f.resolved_at is not None:
                state = f"recovered {f.resolved_at:%Y-%m-%d %H:%M:%S}"
            elif f.next_retry_at is not None:
                state = f"SET ASIDE, next try {f.next_retry_at:%Y-%m-%d %H:%M:%S} UTC"
            else:
                state = "SET ASIDE, retries over: fix the cause, then `qianxing orders redeliver`"
            click.echo(f"  {f.job} failed {f.attempts}x since {f.first_failed_at:%Y-%m-%d %H:%M:%S}: "
                       f"{f.error} [{state}]")
        for e in events.events_for(o.subject):
            click.echo(f"  {e.created_at:%Y-%m-%d %H:%M:%S} {e.topic} by {e.actor} {e.payload}")


@orders.command("mark-paid")
@click.argument("order_id", type=int)
@click.option("--reference", default="", help="bank or offline payment reference")
def orders_mark_paid(order_id: int, reference: str) -> None:
    """Record an offline payment and run the normal delivery pipeline (idempotent)."""
    _boot()
    from models.db import connection
    from models.errors import DomainError
    from models.orders import get_order
    from models.payments import confirm_payment
    from tasks.maintenance import dispatch_payment

    with connection():
        order = get_order(order_id)
        try:
            oid, outcome = confirm_payment(order.no, reference or f"manual-{order.no}",
                                           order.amount_fen, source="operator:cli")
        except DomainError as exc:
            raise click.ClickException(exc.message) from None
    dispatch_payment(oid, outcome)
    click.echo(f"order {order_id}: {outcome.value}")


@orders.command("redeliver")
@click.argument("order_id", type=int)
def orders_redeliver(order_id: int) -> None:
    """Run delivery again and re-send notices that did not go out (never a second voucher)."""
    _boot()
    from models.db import connection
    from models.notifications import Notification
    from models.orders import get_order
    from tasks import queues
    from tasks.delivery import deliver_order

    with connection():
        order = get_order(order_id)
        Notification.update(state="pending").where(
            (Notification.order_id == order.id) & (Notification.state == "failed")).execute()
    # Delivered here and now, also when the order was set aside after failed batches.
    outcome = deliver_order(order_id) if order.status == "paid" else order.status
    from qianxing.wiring import runtime

    for notifier in runtime().notifiers:
        queues.notify(order_id, notifier.channel)
    click.echo(f"order {order_id}: {outcome}; notices queued")


@orders.command("refund")
@click.argument("order_id", type=int)
@click.option("--reason", default="operator refund")
def orders_refund(order_id: int, reason: str) -> None:
    """Refund a paid order in full."""
    s = _boot()
    from models.db import connection
    from models.errors import DomainError
    from models.payments import refund_order
    from qianxing.wiring import runtime

    with connection():
        try:
            refund = refund_order(order_id, runtime().gateway, actor="operator:cli", reason=reason,
                                  revoke_unrevealed=s.REFUND_UNREVEALED_KEYS == "revoke")
        except DomainError as exc:
            raise click.ClickException(exc.message) from None
    if refund.state == "succeeded":
        from tasks import queues

        queues.reverse_refunded()  # take back its commission
    click.echo(f"order {order_id}: refund {refund.refund_no} {refund.state}")


@orders.command("hold")
@click.argument("order_id", type=int)
@click.option("--reason", default="")
@click.option("--release", is_flag=True, help="lift the hold instead")
def orders_hold(order_id: int, reason: str, release: bool) -> None:
    """Risk hold: the order's commission stays pending until the hold is lifted."""
    _boot()
    from models.db import connection
    from models.errors import DomainError
    from models.settlement import hold

    with connection():
        try:
            changed = hold(order_id, held=not release, actor="operator:cli", reason=reason)
        except DomainError as exc:
            raise click.ClickException(exc.message) from None
    state = "released" if release else "held"
    click.echo(f"order {order_id}: {state}" + ("" if changed else " (already)"))


@orders.command("fraud")
@click.argument("order_id", type=int)
@click.option("--reason", required=True)
def orders_fraud(order_id: int, reason: str) -> None:
    """A fraud finding: hold the order and reverse (or claw back) its commission."""
    _boot()
    from models.db import connection
    from models.errors import DomainError
    from models.settlement import flag_fraud

    with connection():
        try:
            done = flag_fraud(order_id, actor="operator:cli", reason=reason)
        except DomainError as exc:
            raise click.ClickException(exc.message) from None
    click.echo(f"order {order_id}: commission reversed {done['reversed']}, "
               f"clawed back {done['clawed_back']}")


@orders.command("expire")
def orders_expire() -> None:
    """Expire overdue unpaid orders now (the worker also does this every 30 s)."""
    _boot()
    from tasks.maintenance import expire_unpaid_orders

    click.echo(f"expired {expire_unpaid_orders()} orders")


# ---- ledger, bench ------------------------------------------------------------------------


@main.group()
def ledger() -> None:
    """The double-entry ledger."""


@ledger.command("verify")
def ledger_verify() -> None:
    """Prove every transaction balances, and that commission lines, settlement states and
    creators' balances agree with the ledger."""
    _boot()
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


@main.group()
def bench() -> None:
    """Benchmarks; the last line printed is one JSON object."""


@bench.command("flash-sale")
@click.option("--clients", default=64, show_default=True)
@click.option("--keys", default=20000, show_default=True)
@click.option("--duration", default=20.0, show_default=True, help="seconds per phase")
def bench_flash_sale(clients: int, keys: int, duration: float) -> None:
    """Concurrent buyers create and pay orders against a pool of keys."""
    from qianxing.bench.flash_sale import run as run_bench

    result = run_bench(_settings(), clients=clients, keys=keys, duration=duration)
    click.echo(json.dumps(result))


def _register_subcommands() -> None:
    """The command groups that live in their own modules (imported after `main` and `bench`
    exist: their commands import helpers from this module when they run)."""
    from qianxing.bench.fanout import bench_fanout
    from qianxing.bench.faults import bench_faults
    from qianxing.bench.webhook import bench_webhook
    from qianxing.cli_chat import register as register_chat
    from qianxing.cli_network import register as register_network
    from qianxing.cli_settle import bench_settle, settle
    from qianxing.cli_tgbot import tgbot
    from qianxing.cli_wechat import wechat
    from qianxing.cli_withdrawals import withdrawals

    for command in (settle, withdrawals, wechat, tgbot):
        main.add_command(command)
    register_network(main)
    register_chat(main)
    for command in (bench_settle, bench_webhook, bench_fanout, bench_faults):
        bench.add_command(command)


_register_subcommands()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
