"""Delivery jobs: fulfil paid orders, push notices, run top-ups, refund what cannot be done."""

from __future__ import annotations

import logging
import time

from redis import RedisError

from models import delivery, failures, groupbuy, inventory, live_dashboard, live_orders, payments
from models.db import connection
from models.delivery import Fulfilment, TopupFailed, TopupUnavailable
from models.notifications import send_notice, send_notices
from tasks import group_notices, queues
from tasks.context import runtime

log = logging.getLogger(__name__)


def deliver_pending(batch: int = 200) -> int:
    """Drain the delivery list (tasks.queues.deliver) in batches, holding the drain's lease
    (tasks.queues: renewed each batch, dropped when the list is empty or the run fails, so a
    run that dies blocks nobody for more than DRAIN_LEASE_S). If a batch fails its ids go back
    on the list and the job fails (RQ retries it after 1 s, queues.DRAIN_RETRY); ids popped by a
    run that is killed are found by the worker's recovery run or the sweep."""
    rt = runtime()
    redis, done, linger = rt.redis, 0, rt.settings.DELIVERY_LINGER_MS / 1000
    try:
        while True:
            pipe = redis.pipeline(transaction=False)
            queues.hold(queues.DELIVERY_FLAG, pipe)
            pipe.lpop(queues.DELIVERY_LIST, batch)
            ids = pipe.execute()[1]
            if ids and len(ids) < batch and linger:
                # A short wait turns a trickle into batches: a batch costs about the same few
                # statements whatever its size, so this is what keeps up with a flash sale.
                time.sleep(linger)
                ids += redis.lpop(queues.DELIVERY_LIST, batch - len(ids)) or []
            if not ids:
                if queues.release(queues.DELIVERY_FLAG, queues.DELIVERY_LIST):
                    continue
                return done
            try:
                deliver_orders(sorted({int(i) for i in ids}))
            except BaseException:
                redis.rpush(queues.DELIVERY_LIST, *ids)
                raise
            done += len(ids)
    except BaseException:
        queues.drop(queues.DELIVERY_FLAG)
        raise


def deliver_order(order_id: int) -> str:
    """Deliver one order now (operators' redeliver, tests), also one that was set aside; the
    normal path is the batched drain."""
    return deliver_orders([order_id], retry_set_aside=True)[order_id].value


def deliver_orders(order_ids: list[int], *, retry_set_aside: bool = False) -> dict[int, Fulfilment]:
    """Turn paid orders into vouchers (once each), send their notices (retries are jobs) and
    hand top-ups to their job.

    One order that cannot be fulfilled never holds back the others: `failures.isolate` finds it
    by splitting the batch, sets it aside with its reason (FAILED here) and delivers the rest.
    Orders set aside are skipped by later batches and retried alone by `retry_set_aside`
    (or with `retry_set_aside=True`: the retry job, an operator's redeliver).

    Group-buy orders waiting for their team (`group_hold`) go to `groupbuy.advance` instead (one
    transaction per team): the members of a team that succeeds are delivered in this same
    pass, late payments for a failed or full team are refunded (tasks/groupbuy.py), and the
    teams' cards and success notices follow (tasks/group_notices.py)."""
    rt = runtime()
    ids = sorted(set(order_ids))
    outcomes = {order_id: Fulfilment.NOOP for order_id in ids}
    with connection():
        if not retry_set_aside:
            skipped = failures.parked(failures.DELIVERY, ids)
            ids = [i for i in ids if i not in skipped]
        ids = _advance_teams(ids, rt.settings.intervals("ITEM_RETRY_INTERVALS"))
        outcomes.update({i: outcomes.get(i, Fulfilment.NOOP) for i in ids})
        set_aside = failures.isolate(
            failures.DELIVERY, ids, lambda batch: outcomes.update(delivery.fulfil_orders(batch)),
            intervals=rt.settings.intervals("ITEM_RETRY_INTERVALS"))
        outcomes.update(dict.fromkeys(set_aside, Fulfilment.FAILED))
        if retry_set_aside:
            failures.resolve(failures.DELIVERY, [i for i in ids if i not in set_aside])
        for order_id, outcome in outcomes.items():
            if outcome == Fulfilment.NEEDS_TOPUP:
                queues.topup(order_id)
        _after_delivery([o for o, outcome in outcomes.items() if outcome == Fulfilment.DELIVERED])
        _count_live_sales(ids)
    return outcomes


def _advance_teams(ids: list[int], intervals: list[int]) -> list[int]:
    """The drain's group-buy step: held orders advance their teams (a failing team's orders are
    set aside like any failing delivery); returns the ids to fulfil now (the others, plus the
    members of teams that just succeeded)."""
    waiting = groupbuy.held(ids)
    if not waiting:
        return ids
    done: list[groupbuy.Advanced] = []
    failures.isolate(failures.DELIVERY, waiting, lambda batch: done.append(groupbuy.advance(batch)),
                     intervals=intervals)
    deliverable = {o for a in done for o in a.deliverable}
    refund = sorted({o for a in done for o in a.refund})
    if refund:
        queues.refund_members(refund)
    for a in done:  # a team's own close job at its expiry, from its first payment on
        for team_id, expires_at in a.open_until.items():
            queues.close_team_at(team_id, expires_at)
    group_notices.enqueue("progress", [t for a in done for t in a.progressed])
    group_notices.enqueue("succeeded", [t for a in done for t in a.succeeded])
    return sorted((set(ids) - set(waiting)) | deliverable)


def _count_live_sales(order_ids: list[int]) -> None:
    """The live dashboard counts each paid order of a live session once (a set of counted ids
    in Redis: this batch may run again). Redis away: the dashboard rebuilds from the database."""
    try:
        live_dashboard.orders_paid(runtime().redis, order_ids)
    except RedisError as exc:
        log.warning("live dashboard: paid orders not counted, Redis unavailable: %s", exc)


def retry_set_aside(limit: int = 100) -> dict[str, int]:
    """Periodic: retry, one at a time, the orders that delivery set aside and whose next try is
    due (models/failures.py). Each either delivers, or is set aside again for the next interval."""
    with connection():
        due = failures.due(failures.DELIVERY, limit=limit)
    counts = {"retried": len(due), "recovered": 0, "failed": 0}
    for order_id in due:
        outcome = deliver_orders([order_id], retry_set_aside=True)[order_id]
        counts["failed" if outcome == Fulfilment.FAILED else "recovered"] += 1
    return counts


def _after_delivery(order_ids: list[int]) -> None:
    if not order_ids:
        return
    rt = runtime()
    groupbuy.delivered(order_ids)  # deliverable group-buy members -> delivered
    for notifier in rt.notifiers:
        for order_id, (state, _) in send_notices(order_ids, notifier).items():
            if state == "retry":
                queues.notify(order_id, notifier.channel, first_delay=True)
    for sku_id in inventory.skus_of(order_ids):
        # Counting a SKU's available keys costs more than delivering a small batch; during a
        # sale each SKU is counted at most once per LOW_STOCK_CHECK_S across all workers.
        if rt.redis.set(f"qianxing:lowstock:checked:{sku_id}", 1, nx=True,
                        ex=rt.settings.LOW_STOCK_CHECK_S):
            inventory.check_low_stock(sku_id, rt.settings.LOW_STOCK_THRESHOLD)


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
            _after_delivery([order_id])
        return outcome.value


def refund_order(order_id: int, reason: str) -> str:
    """Automatic refund (failed top-up, payment after the stock was gone). Idempotent."""
    rt = runtime()
    with connection():
        refund = payments.refund_order(
            order_id, rt.gateway, actor="system:worker", reason=reason,
            revoke_unrevealed=rt.settings.REFUND_UNREVEALED_KEYS == "revoke",
            restore_coupons=rt.settings.COUPON_RESTORE_ON_REFUND,
        )
        if refund.state == "succeeded":
            live_orders.reopen_gates(rt.redis, [order_id])  # a live order's place is for sale again
    if refund.state == "succeeded":
        queues.reverse_refunded()  # take back its commission
    return refund.state

