"""Delivery jobs through RQ (in-process worker), the fake WeChat API and the fake WeChat Pay."""

from __future__ import annotations

import datetime as dt

from models import delivery, inventory, payments, vault
from models.catalog import Kind, Sku
from models.db import db, utcnow
from models.delivery import TopupRequest, Voucher
from models.events import Event
from models.failures import ItemFailure
from models.notifications import Notification, NotificationAttempt
from models.orders import Order, Status
from models.vault import CardKey, KeyState
from tasks import delivery as jobs
from tasks import maintenance
from tests.factories import api_paid, buyer, paid, sent_to, status, vouchers


def test_a_serial_sku_gives_every_buyer_the_same_code(shop, run_jobs):
    # given a serial SKU with 5 units
    sku = shop.counter_sku(Kind.SERIAL, stock=5, serial="SHARED-SERIAL-778899")
    # when two buyers pay and the worker runs
    first, second = paid(sku, "s1"), paid(sku, "s2", quantity=2)
    run_jobs()
    # then both are delivered and every voucher reveals the same code to its owner
    assert status(first.id) == status(second.id) == Status.DELIVERED
    assert len(vouchers(first.id)) == 1 and len(vouchers(second.id)) == 2
    with db.connection_context():
        codes = {delivery.reveal(buyer("s1"), v.id).secret for v in vouchers(first.id)}
        codes |= {delivery.reveal(buyer("s2"), v.id).secret for v in vouchers(second.id)}
        assert codes == {"SHARED-SERIAL-778899"}
        assert Sku.get_by_id(sku.id).stock == 2


def test_a_topup_is_credited_through_the_provider(shop, run_jobs, fake_wechat):
    # given a top-up SKU
    sku = shop.counter_sku(Kind.TOPUP, stock=3, price=3000)
    # when a buyer pays for a top-up of her account
    order = paid(sku, "t1", account="13800000001")
    run_jobs()
    # then the provider credited it once and the voucher carries its reference
    assert status(order.id) == Status.DELIVERED
    [voucher] = vouchers(order.id)
    assert voucher.kind == Kind.TOPUP and voucher.topup_ref == f"TP{order.no}"
    with db.connection_context():
        request = TopupRequest.get(TopupRequest.order == order.id)
        assert (request.state, request.attempts, request.account) == ("succeeded", 1,
                                                                      "13800000001")
        assert Sku.get_by_id(sku.id).stock == 2
    assert len(sent_to(fake_wechat, "t1")) == 1


def test_a_flaky_topup_succeeds_on_retry(shop, run_jobs):
    sku = shop.counter_sku(Kind.TOPUP, stock=3)
    order = paid(sku, "t2", account="flaky-13800000002")
    run_jobs()
    assert status(order.id) == Status.DELIVERED
    with db.connection_context():
        request = TopupRequest.get(TopupRequest.order == order.id)
        assert request.state == "succeeded" and request.attempts == 2
        assert Event.select().where(Event.topic == "topup.attempt_failed").count() == 1
    assert len(vouchers(order.id)) == 1


def test_a_failing_topup_is_refunded_after_its_retries(client, login, fake_pay, shop, run_jobs,
                                                       rt):
    # given a top-up SKU with 3 units, paid through WeChat Pay for an account the provider refuses
    sku = shop.counter_sku(Kind.TOPUP, stock=3, price=3000)
    order = api_paid(client, login, fake_pay, sku, "t3", account="fail-13800000003")
    # when the worker runs (the first try and every scheduled retry)
    run_jobs()
    # then after 1 + len(TOPUP_RETRY_INTERVALS) attempts the order was refunded in full
    tries = 1 + len(rt.settings.intervals("TOPUP_RETRY_INTERVALS"))
    assert status(order["id"]) == Status.REFUNDED
    assert [r.refund_fee for r in fake_pay.refunds if r.out_trade_no == order["no"]] == [3000]
    with db.connection_context():
        request = TopupRequest.get(TopupRequest.order == order["id"])
        assert request.state == "failed" and request.attempts == tries
        # and the unit is back on the shelf, nothing was delivered
        assert Sku.get_by_id(sku.id).stock == 3
        assert Voucher.select().count() == 0
        assert Event.select().where(Event.topic == "order.refunded").count() == 1


def test_a_transient_notification_failure_is_retried_and_sent_once(shop, run_jobs,
                                                                   fake_wechat):
    # given WeChat answering "system error" to the next two message sends
    sku = shop.card_sku(keys=3)
    fake_wechat.fail_next(2, errcode=-1)
    # when an order is paid and the worker runs, retries included
    order = paid(sku, "n1")
    run_jobs()
    # then the notice went out exactly once, after three attempts, and one voucher exists
    assert len(sent_to(fake_wechat, "n1")) == 1
    assert fake_wechat.pending_failures == 0
    with db.connection_context():
        note = Notification.get(Notification.order_id == order.id)
        assert note.state == "sent" and note.attempts == 3
        attempts = list(NotificationAttempt.select().where(
            NotificationAttempt.notification == note).order_by(NotificationAttempt.number))
        assert [(a.number, a.ok) for a in attempts] == [(1, False), (2, False), (3, True)]
        assert "-1" in attempts[0].error
    assert len(vouchers(order.id)) == 1


def test_a_permanent_notification_failure_is_not_retried(shop, run_jobs, fake_wechat):
    # given a buyer who refused subscribe messages (errcode 43101)
    sku = shop.card_sku(keys=3)
    fake_wechat.fail_next(1, errcode=43101)
    order = paid(sku, "n2")
    run_jobs()
    # then the notification is failed after one attempt and the order still delivered
    with db.connection_context():
        note = Notification.get(Notification.order_id == order.id)
        assert note.state == "failed" and note.attempts == 1
        assert NotificationAttempt.select().where(
            NotificationAttempt.notification == note).count() == 1
    # (a retry would have succeeded and sent it)
    assert fake_wechat.pending_failures == 0
    assert sent_to(fake_wechat, "n2") == []
    assert status(order.id) == Status.DELIVERED


def test_delivering_twice_creates_no_second_voucher(shop, run_jobs, fake_wechat):
    # given a paid order whose delivery job was queued twice (retry, sweep, operator)
    sku = shop.card_sku(keys=3)
    order = paid(sku, "d1", quantity=2)
    maintenance.dispatch_payment(order.id, payments.Outcome.PAID)
    run_jobs()
    # when delivery runs once more directly
    assert jobs.deliver_order(order.id) == "noop"
    run_jobs()
    # then there are exactly two vouchers on two distinct keys, and one notice
    vs = vouchers(order.id)
    assert len(vs) == 2 and len({v.card_key_id for v in vs}) == 2
    with db.connection_context():
        assert CardKey.select().where(CardKey.state == KeyState.SOLD).count() == 2
    assert len(sent_to(fake_wechat, "d1")) == 1


def test_low_stock_is_reported_once_and_rearmed_after_import(shop, run_jobs, settings, rt):
    # given a pool of 4 keys with a low-stock threshold of 2
    sku = shop.card_sku(keys=4, code="LOW")
    with db.connection_context():
        Sku.update(low_stock_threshold=2).where(Sku.id == sku.id).execute()

    def low_events() -> list[Event]:
        with db.connection_context():
            return list(Event.select().where((Event.topic == "stock.low")
                                             & (Event.subject == f"sku:{sku.id}")))

    def later() -> None:
        """As if LOW_STOCK_CHECK_S had passed: deliveries may count the stock again."""
        rt.redis.delete(f"qianxing:lowstock:checked:{sku.id}")

    # when keys are sold one by one
    paid(sku, "l1")
    paid(sku, "l2")
    run_jobs()
    assert low_events() == []  # 2 left: not under 2
    later()
    paid(sku, "l3")
    run_jobs()
    # then one event fires when the pool falls under the threshold ...
    [event] = low_events()
    assert event.payload["available"] == 1 and event.payload["threshold"] == 2
    later()
    paid(sku, "l4")
    run_jobs()
    assert len(low_events()) == 1  # ... and not again while it stays low
    # when new keys are imported and the stock check runs (as `vault import` does)
    with db.connection_context():
        vault.import_keys(sku, [(i, f"LOW-NEW-{i:04d}-ABCDEF") for i in range(1, 4)])
        assert inventory.check_low_stock(sku.id, settings.LOW_STOCK_THRESHOLD) is False
    # then it is re-armed and fires again on the next fall
    later()
    paid(sku, "l5")
    paid(sku, "l6")
    run_jobs()
    assert len(low_events()) == 2


def test_stock_is_counted_at_most_once_per_window_during_a_sale(shop, run_jobs, rt):
    # given a pool of 3 keys with threshold 2, and a delivery that just counted it (2 left)
    sku = shop.card_sku(keys=3, code="WIN")
    with db.connection_context():
        Sku.update(low_stock_threshold=2).where(Sku.id == sku.id).execute()
    paid(sku, "window-1")
    run_jobs()
    # when another order is delivered inside the LOW_STOCK_CHECK_S window
    paid(sku, "window-2")
    run_jobs()
    # then no count ran (no event yet, though only 1 is left) ...
    with db.connection_context():
        assert not Event.select().where(Event.topic == "stock.low").exists()
    # ... and the first delivery after the window reports it
    rt.redis.delete(f"qianxing:lowstock:checked:{sku.id}")
    paid(sku, "window-3")
    run_jobs()
    with db.connection_context():
        assert Event.select().where(Event.topic == "stock.low").count() == 1


def test_sweep_requeues_a_paid_order_whose_delivery_was_lost(shop, run_jobs, fake_wechat):
    # given a paid order whose delivery job was never queued, paid a few minutes ago
    sku = shop.card_sku(keys=2)
    order = paid(sku, "w1", dispatch=False)
    done = paid(sku, "window-2")
    run_jobs()
    assert status(order.id) == Status.PAID
    with db.connection_context():
        Order.update(paid_at=utcnow() - dt.timedelta(minutes=5)).where(
            Order.id.in_([order.id, done.id])).execute()
    # when the sweep runs
    assert maintenance.sweep_undelivered() == 1
    run_jobs()
    # then it is delivered and notified, and a second sweep finds nothing
    assert status(order.id) == Status.DELIVERED and len(vouchers(order.id)) == 1
    assert len(sent_to(fake_wechat, "w1")) == 1
    assert maintenance.sweep_undelivered() == 0


def test_the_sweep_leaves_recent_payments_to_their_own_job(shop, run_jobs):
    sku = shop.card_sku(keys=2)
    paid(sku, "w3", dispatch=False)
    assert maintenance.sweep_undelivered(older_than_s=60) == 0


def test_reconcile_picks_up_a_payment_whose_notification_never_arrived(client, login, shop,
                                                                       fake_pay, run_jobs):
    # given an order paid at WeChat Pay whose notification was lost, three minutes ago
    sku = shop.card_sku(keys=2, price=1500)
    auth = login("r1")
    order = client.post("/api/v1/orders", json={"sku": sku.code, "quantity": 1},
                        headers=auth).json
    assert client.post(f"/api/v1/orders/{order['id']}/pay", headers=auth).status_code == 200
    fake_pay.mark_paid(order["no"])
    unpaid = client.post("/api/v1/orders", json={"sku": sku.code, "quantity": 1},
                         headers=login("r2")).json
    with db.connection_context():
        Order.update(created_at=utcnow() - dt.timedelta(minutes=3)).execute()
    assert status(order["id"]) == Status.PENDING
    # when reconciliation runs
    counts = maintenance.reconcile_payments()
    run_jobs()
    # then it confirmed the payment with WeChat Pay's transaction id and delivery followed
    assert counts == {"checked": 1, "paid": 1}
    assert status(order["id"]) == Status.DELIVERED
    with db.connection_context():
        payment = payments.Payment.get(payments.Payment.order == order["id"])
        assert payment.transaction_id == fake_pay.order(order["no"]).transaction_id
        assert payment.amount_fen == 1500
    # and the order without a provider-side payment was left alone; a rerun is a no-op
    assert status(unpaid["id"]) == Status.PENDING
    assert maintenance.reconcile_payments() == {"checked": 0, "paid": 0}


# -- one order that cannot be fulfilled never holds back the others ---------------------------

def test_an_order_that_cannot_be_delivered_is_set_aside_and_the_batch_is_delivered(
        shop, run_jobs, rt, cli):
    # given a delivered order, and three paid orders waiting for one batch, where the key
    # reserved for the middle one is already in a live voucher of the delivered order (a
    # corrupt row: its voucher insert will violate the one-live-voucher-per-key index)
    sku = shop.card_sku(keys=5)
    done = paid(sku, "d0")
    run_jobs()
    batch = [paid(sku, f"d{i}", dispatch=False) for i in (1, 2, 3)]
    bad = batch[1]
    with db.connection_context():
        stolen = CardKey.get(CardKey.order_id == bad.id)
        Voucher.create(order=done.id, user=done.user_id, sku=sku.id, seq=9, kind="card_key",
                       card_key=stolen.id)
    # when the batch is delivered
    outcomes = jobs.deliver_orders([o.id for o in batch])
    # then the two others are delivered and the bad one is set aside with its reason
    assert [status(o.id) for o in batch] == [Status.DELIVERED, Status.PAID, Status.DELIVERED]
    assert outcomes[bad.id] == delivery.Fulfilment.FAILED
    with db.connection_context():
        failure = ItemFailure.get((ItemFailure.job == "delivery") & (ItemFailure.item_id == bad.id))
    assert "IntegrityError" in failure.error and failure.resolved_at is None
    # and the operator sees it in `orders show`, with the event in the history
    shown = cli("orders", "show", str(bad.id)).output
    assert "delivery failed 1x" in shown and "SET ASIDE, next try" in shown and "delivery.failed" in shown
    # and the drain and the sweep skip it until its retry is due
    assert jobs.deliver_orders([bad.id])[bad.id] == delivery.Fulfilment.NOOP
    assert jobs.retry_set_aside() == {"retried": 0, "recovered": 0, "failed": 0}
    # when the operator revokes the stray voucher and the retry comes due
    with db.connection_context():
        Voucher.update(revoked_at=utcnow()).where((Voucher.order == done.id) & (Voucher.seq == 9)).execute()
        ItemFailure.update(next_retry_at=utcnow()).where(ItemFailure.id == failure.id).execute()
    assert jobs.retry_set_aside() == {"retried": 1, "recovered": 1, "failed": 0}
    # then it is delivered with its own key, once, and the failure is closed
    assert status(bad.id) == Status.DELIVERED
    assert [v.card_key_id for v in vouchers(bad.id)] == [stolen.id]
    with db.connection_context():
        assert ItemFailure.get_by_id(failure.id).resolved_at is not None
    assert "recovered" in cli("orders", "show", str(bad.id)).output


def test_redeliver_delivers_an_order_that_was_set_aside(shop, run_jobs, rt, cli):
    # given a paid order whose delivery failed and was set aside
    sku = shop.card_sku(keys=2)
    done = paid(sku, "r0")
    run_jobs()
    bad = paid(sku, "r1", dispatch=False)
    with db.connection_context():
        key = CardKey.get(CardKey.order_id == bad.id)
        stray = Voucher.create(order=done.id, user=done.user_id, sku=sku.id, seq=9, kind="card_key",
                               card_key=key.id)
    assert jobs.deliver_orders([bad.id])[bad.id] == delivery.Fulfilment.FAILED
    # when the operator redelivers while the cause is still there, it fails again and says so
    assert "failed" in cli("orders", "redeliver", str(bad.id)).output
    # when the cause is fixed and the operator redelivers
    with db.connection_context():
        Voucher.update(revoked_at=utcnow()).where(Voucher.id == stray.id).execute()
    out = cli("orders", "redeliver", str(bad.id)).output
    # then it is delivered at once, without waiting for the retry schedule
    assert "delivered" in out and status(bad.id) == Status.DELIVERED
    with db.connection_context():
        assert ItemFailure.get(ItemFailure.item_id == bad.id).resolved_at is not None
