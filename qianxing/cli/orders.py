"""`qianxing orders ...`: operator actions on orders."""

from __future__ import annotations

import click

from qianxing.cli.boot import boot


@click.group()
def orders() -> None:
    """Operator actions on orders."""


@orders.command("show")
@click.argument("order_id", type=int)
def orders_show(order_id: int) -> None:
    boot()
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
    boot()
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
    boot()
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
    s = boot()
    from models.db import connection
    from models.errors import DomainError
    from models.payments import refund_order
    from qianxing.wiring import runtime

    with connection():
        try:
            refund = refund_order(order_id, runtime().gateway, actor="operator:cli", reason=reason,
                                  revoke_unrevealed=s.REFUND_UNREVEALED_KEYS == "revoke",
                                  restore_coupons=s.COUPON_RESTORE_ON_REFUND)
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
    boot()
    from models.db import connection
    from models.errors import DomainError
    from models.reversals import hold

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
    boot()
    from models.db import connection
    from models.errors import DomainError
    from models.reversals import flag_fraud

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
    boot()
    from tasks.maintenance import expire_unpaid_orders

    click.echo(f"expired {expire_unpaid_orders()} orders")
