"""Paid orders are delivered in batches by one drain job, and nothing falls through."""

from __future__ import annotations

from bots.notify import LogNotifier, build_notifiers
from models.db import db
from models.delivery import fulfil_order
from models.notifications import Notification, send_notice
from models.orders import Status
from tasks import delivery as jobs
from tasks import maintenance, queues
from tests.factories import paid, sent_to, status, vouchers


def test_many_payments_make_one_drain_job_that_delivers_them_all(rt, shop, run_jobs, fake_wechat):
    # given 30 keys and 12 orders paid in a burst
    sku = shop.card_sku(keys=30)
    orders = [paid(sku, f"batch-{i}") for i in range(12)]
    # then a single RQ job was queued for all of them
    assert rt.queue.count == 1
    assert rt.redis.llen(queues.DELIVERY_LIST) == 12
    # when the worker runs
    run_jobs()
    # then every order is delivered with one voucher and one notice, and the flag is cleared
    assert all(status(o.id) == Status.DELIVERED for o in orders)
    assert all(len(vouchers(o.id)) == 1 for o in orders)
    assert all(len(sent_to(fake_wechat, f"batch-{i}")) == 1 for i in range(12))
    assert rt.redis.llen(queues.DELIVERY_LIST) == 0
    assert not rt.redis.exists(queues.DELIVERY_FLAG)


def test_an_order_pushed_after_the_drain_job_emptied_the_list_is_not_stranded(rt, shop, run_jobs):
    # given a drain that has finished (flag cleared) and a payment that arrives afterwards
    sku = shop.card_sku(keys=5)
    first = paid(sku, "late-1")
    run_jobs()
    second = paid(sku, "late-2")
    # then the new payment scheduled a new drain, which delivers it
    assert rt.queue.count == 1
    run_jobs()
    assert status(first.id) == status(second.id) == Status.DELIVERED


def test_a_batch_lost_with_its_worker_is_delivered_by_the_sweep(rt, shop, run_jobs):
    # given paid orders whose ids were popped by a worker that then died
    sku = shop.card_sku(keys=5)
    orders = [paid(sku, f"lost-{i}") for i in range(3)]
    rt.redis.delete(queues.DELIVERY_LIST, queues.DELIVERY_FLAG)
    rt.queue.empty()
    run_jobs()
    assert all(status(o.id) == Status.PAID for o in orders)
    # when the sweep runs
    assert maintenance.sweep_undelivered(older_than_s=0) == 3
    run_jobs()
    # then each is delivered exactly once
    assert all(status(o.id) == Status.DELIVERED and len(vouchers(o.id)) == 1 for o in orders)


def test_a_delivered_order_whose_notice_never_went_out_is_notified_by_the_sweep(
        rt, shop, run_jobs, fake_wechat):
    # given an order delivered by a worker that died before sending the notice
    sku = shop.card_sku(keys=2)
    order = paid(sku, "unsent-1", dispatch=False)
    with db.connection_context():
        from models.delivery import fulfil_order

        fulfil_order(order.id)
    assert sent_to(fake_wechat, "unsent-1") == []
    # when the sweep runs twice
    maintenance.sweep_undelivered(older_than_s=0)
    run_jobs()
    maintenance.sweep_undelivered(older_than_s=0)
    run_jobs()
    # then exactly one notice went out and is recorded as sent
    assert len(sent_to(fake_wechat, "unsent-1")) == 1
    with db.connection_context():
        assert Notification.get(Notification.order_id == order.id).state == "sent"


def test_the_sweep_looks_for_each_channels_own_notice(rt, shop, run_jobs, fake_wechat, monkeypatch):
    # given two channels, and a delivered order whose notice went out on the log channel only
    monkeypatch.setattr(rt, "notifiers", build_notifiers(
        ["log", "wxa_subscribe"], rt.wechat, rt.settings.WECHAT_SUBSCRIBE_TEMPLATE_ID))
    sku = shop.card_sku(keys=3)
    order = paid(sku, "one-channel-1", dispatch=False)
    other = paid(sku, "one-channel-2", dispatch=False)
    with db.connection_context():
        fulfil_order(order.id)
        fulfil_order(other.id)
        send_notice(order.id, LogNotifier())
    # when the sweep runs
    assert maintenance.sweep_undelivered(older_than_s=0) == 3
    run_jobs()
    # then the missing subscribe notice of the first order and both of the second went out
    assert len(sent_to(fake_wechat, "one-channel-1")) == 1
    assert len(sent_to(fake_wechat, "one-channel-2")) == 1
    with db.connection_context():
        sent = {(n.order_id, n.channel) for n in Notification.select().where(Notification.state == "sent")}
    assert sent == {(o.id, ch) for o in (order, other) for ch in ("log", "wxa_subscribe")}
    # and a second sweep finds nothing left
    assert maintenance.sweep_undelivered(older_than_s=0) == 0


def test_one_broken_order_does_not_stop_its_batch(rt, shop, run_jobs):
    # given a batch holding an id that does not exist next to a real paid order
    sku = shop.card_sku(keys=2)
    good = paid(sku, "good-1", dispatch=False)
    rt.redis.rpush(queues.DELIVERY_LIST, 999_999, good.id)
    # when the drain runs
    assert jobs.deliver_pending() == 2
    # then the real order is delivered
    assert status(good.id) == Status.DELIVERED
