"""Delivery jobs: fulfil paid orders, push notices, run top-ups, refund what cannot be done."""

from __future__ import annotations

import logging

from models import delivery, inventory, payments
from models.db import connection
from models.delivery import Fulfilment, TopupFailed, TopupUnavailable
from models.notifications import send_notice
from qianxing.wiring import runtime
from tasks import queues

log = logging.getLogger(__name__)


def deliver_order(order_id: int) -> str:
    """Turn a paid order into vouchers (once) and queue its notices."""
    with connection():
        outcome = delivery.fulfil_order(order_id)
        if outcome == Fulfilment.NEEDS_TOPUP:
            queues.topup(order_id)
        elif outcome == Fulfilment.DELIVERED:
            _after_delivery(order_id)
    return outcome.value


def _after_delivery(order_id: int) -> None:
    rt = runtime()
    for notifier in rt.notifiers:
        queues.notify(order_id, notifier.channel)
    for item in inventory.items_of(order_id):  # a count per SKU: cheaper inline than a job
        inventory.check_low_stock(item.sku_id, rt.settings.LOW_STOCK_THRESHOLD)


def notify_order(order_id: int, channel: str) -> str:
    """Push the delivery notice on one channel; a transient failure raises so RQ retries."""
    notifier = next(n for n in runtime().notifiers if n.channel == channel)
    with connection():
        return send_notice(order_id, notifier)


def topup_order(order_id: int) -> str:
    """Call the top-up provider; retry on the configured schedule, refund after the last try."""
    rt = runtime()
    schedule = rt.settings.intervals("TOPUP_RETRY_INTERVALS")
    with connection():
        try:
            outcome = delivery.run_topup(order_id, rt.topup)
        except (TopupFailed, TopupUnavailable) as exc:
            attempts = delivery.TopupRequest.get(delivery.TopupRequest.order == order_id).attempts
            if isinstance(exc, TopupUnavailable) and attempts <= len(schedule):
                queues.topup(order_id, delay_s=schedule[attempts - 1])
                return "retry_scheduled"
            if delivery.give_up_topup(order_id, exc.message):
                queues.refund(order_id, f"top-up failed: {exc.message}")
            return "failed"
        if outcome == Fulfilment.DELIVERED:
            _after_delivery(order_id)
        return outcome.value


def refund_order(order_id: int, reason: str) -> str:
    """Automatic refund (failed top-up, payment after the stock was gone). Idempotent."""
    rt = runtime()
    with connection():
        refund = payments.refund_order(
            order_id, rt.gateway, actor="system:worker", reason=reason,
            revoke_unrevealed=rt.settings.REFUND_UNREVEALED_KEYS == "revoke",
        )
        return refund.state


def check_low_stock(sku_ids: list[int]) -> int:
    threshold = runtime().settings.LOW_STOCK_THRESHOLD
    with connection():
        return sum(inventory.check_low_stock(sku_id, threshold) for sku_id in sku_ids)
