"""Drain flags are short leases that never outlive their run, and the sweep and the recovery
run re-queue everything due in one pass, in bounded chunks (in-process worker, real Redis and
database)."""

from __future__ import annotations

from models.db import db
from models.delivery import fulfil_order
from models.notifications import Notification
from models.orders import Status
from tasks import maintenance, queues
from tests.factories import paid, sent_to, status, vouchers


def test_a_payment_takes_a_lease_of_seconds_that_the_drain_gives_back(rt, shop, run_jobs):
    # given a paid order
    sku = shop.card_sku(keys=2)
    order = paid(sku, "lease-1")
    # then its drain's flag is a lease of DRAIN_LEASE_S seconds, not a minute
    assert 0 < rt.redis.ttl(queues.DELIVERY_FLAG) <= rt.settings.DRAIN_LEASE_S
    # and the drain job is retried when it fails: at once, then with backoff
    (job,) = rt.queue.get_jobs()
    assert job.func_name == "tasks.delivery.deliver_pending"
    assert job.retries_left == 5 and job.retry_intervals[0] == 1
    # when the drain runs, then the order is delivered and no lease is left behind
    run_jobs()
    assert status(order.id) == Status.DELIVERED
    assert not rt.redis.exists(queues.DELIVERY_FLAG)


def test_an_outbound_drain_lease_is_short_too(rt):
    # when an outbound drain is asked for
    queues.drain_outbound("telegram")
    # then its flag lasts seconds (it was 300 s) and the job is retried when it fails
    assert 0 < rt.redis.ttl(queues.OUTBOUND_FLAG.format("telegram")) <= rt.settings.DRAIN_LEASE_S
    (job,) = rt.queue.get_jobs()
    assert job.func_name == "tasks.chat.drain_outbound" and job.retries_left == 5


def test_a_chat_update_signal_takes_a_short_lease(rt):
    queues.chat_update(1)
    assert 0 < rt.redis.ttl(queues.CHAT_UPDATES_FLAG) <= rt.settings.DRAIN_LEASE_S
    (job,) = rt.queue.get_jobs()
    assert job.func_name == "tasks.chat_updates.process_updates" and job.retries_left == 5


def test_the_sweep_requeues_everything_due_in_one_pass_in_bounded_chunks(rt, shop, run_jobs, fake_wechat,
                                                                        monkeypatch):
    # given 11 paid orders whose delivery signals were lost, and 3 delivered orders whose
    # notices never went out, with the sweep reading 4 ids at a time
    monkeypatch.setattr(maintenance, "SWEEP_CHUNK", 4)
    sku = shop.card_sku(keys=20)
    lost = [paid(sku, f"lease-sweep-{i}", dispatch=False) for i in range(11)]
    unsent = [paid(sku, f"lease-unsent-{i}", dispatch=False) for i in range(3)]
    with db.connection_context():
        for order in unsent:
            fulfil_order(order.id)
    # when the sweep runs once (nothing waits for an age)
    assert maintenance.sweep_undelivered(older_than_s=0) == 14
    # then every lost order is on the delivery list, with one drain job for them
    assert rt.redis.llen(queues.DELIVERY_LIST) == 11
    run_jobs()
    assert all(status(o.id) == Status.DELIVERED and len(vouchers(o.id)) == 1 for o in lost)
    assert all(len(sent_to(fake_wechat, f"lease-unsent-{i}")) == 1 for i in range(3))
    with db.connection_context():
        assert Notification.select().where(Notification.state == "sent").count() == 14
    # and a second sweep finds nothing left
    assert maintenance.sweep_undelivered(older_than_s=0) == 0


def test_the_recovery_run_requeues_orders_paid_a_moment_ago_and_twice_is_harmless(rt, shop, run_jobs,
                                                                                  fake_wechat):
    # given orders paid just now whose signals were lost (a Redis that lost its data), and one
    # whose id is still on the list
    sku = shop.card_sku(keys=5)
    lost = [paid(sku, f"lease-recover-{i}", dispatch=False) for i in range(3)]
    queued = paid(sku, "lease-recover-queued")
    # when the worker's recovery run runs twice before the drain
    maintenance.recover()
    maintenance.recover()
    run_jobs()
    # then each order is delivered once, with one notice
    for order in [*lost, queued]:
        assert status(order.id) == Status.DELIVERED and len(vouchers(order.id)) == 1
    assert all(len(sent_to(fake_wechat, f"lease-recover-{i}")) == 1 for i in range(3))
    assert not rt.redis.exists(queues.DELIVERY_FLAG)
