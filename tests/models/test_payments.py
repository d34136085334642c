"""Payments: confirmation (idempotent, amount-checked, late payments) and refunds through the
real wechatpy client against the fake WeChat Pay."""

from __future__ import annotations

import datetime as dt

import peewee as pw
import pytest

from models import ledger, orders, payments, vault
from models.db import db, utcnow
from models.delivery import Voucher
from models.errors import InvalidState, PaymentRejected
from models.events import Event
from models.ledger import LedgerTransaction, Posting
from models.orders import Order, Status
from models.payments import Outcome, Payment, Refund
from models.vault import CardKey, KeyState
from tests.factories import api_order


def get(order_id: int) -> Order:
    with db.connection_context():
        return Order.get_by_id(order_id)


def key_states(order_id: int) -> list[str]:
    with db.connection_context():
        return sorted(k.state for k in CardKey.select().where(CardKey.order_id == order_id))


def expire_now(order_id: int) -> None:
    with db.connection_context():
        Order.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(
            Order.id == order_id).execute()
        orders.expire_due()


def paid_and_delivered(client, auth, sku, fake_pay, run_jobs, quantity: int = 1) -> dict:  # noqa: ANN001
    order = api_order(client, auth, sku, quantity)
    assert fake_pay.notify_acknowledged(fake_pay.pay(order["no"]))
    run_jobs()
    assert get(order["id"]).status == Status.DELIVERED
    return order


# ---- confirm_payment ---------------------------------------------------------------------------


def test_confirm_payment_is_idempotent(client, login, shop):
    # given a pending order
    sku = shop.card_sku(keys=3, price=1990)
    order = api_order(client, login(), sku)
    # when the same payment is confirmed twice
    with db.connection_context():
        first = payments.confirm_payment(order["no"], "tx-1", 1990, source="wechatpay")
        second = payments.confirm_payment(order["no"], "tx-1", 1990, source="wechatpay")
        # then the second is a duplicate, and there is one payment, one ledger transaction
        assert first == (order["id"], Outcome.PAID)
        assert second == (order["id"], Outcome.DUPLICATE)
        assert Payment.get(Payment.order == order["id"]).state == "paid"
        assert LedgerTransaction.select().count() == 1
        assert ledger.balance(ledger.SALES) == -1990
        assert ledger.balance(ledger.CASH_WECHATPAY) == 1990
        assert Event.select().where(Event.topic == "order.paid").count() == 1


def test_a_second_transaction_for_a_paid_order_is_recorded_not_booked(client, login, shop):
    sku = shop.card_sku(keys=3, price=1990)
    order = api_order(client, login(), sku)
    with db.connection_context():
        payments.confirm_payment(order["no"], "tx-1", 1990, source="wechatpay")
        assert payments.confirm_payment(order["no"], "tx-2", 1990, source="wechatpay")[1] \
            == Outcome.DUPLICATE
        assert Event.select().where(Event.topic == "payment.second_transaction").count() == 1
        assert LedgerTransaction.select().count() == 1


def test_a_wrong_amount_is_rejected_and_writes_nothing(client, login, shop):
    # given a pending order of 19.90
    sku = shop.card_sku(keys=3, price=1990)
    order = api_order(client, login(), sku)
    with db.connection_context():
        events_before = Event.select().count()
        # when a payment of 0.01 arrives
        with pytest.raises(PaymentRejected) as err:
            payments.confirm_payment(order["no"], "tx-1", 1, source="wechatpay")
        # then it is refused and nothing changed
        assert err.value.code == "amount_mismatch"
        assert Order.get_by_id(order["id"]).status == Status.PENDING
        assert Payment.get(Payment.order == order["id"]).state == "prepared"
        assert LedgerTransaction.select().count() == 0 and Posting.select().count() == 0
        assert Event.select().count() == events_before
        with pytest.raises(PaymentRejected):
            payments.confirm_payment("QXNOSUCHORDER", "tx-2", 1990, source="wechatpay")


def test_a_late_payment_revives_the_order_when_stock_remains(client, login, shop, fake_pay,
                                                              run_jobs):
    # given an order that expired unpaid, its key back on the shelf
    sku = shop.card_sku(keys=2)
    order = api_order(client, login(), sku)
    expire_now(order["id"])
    assert key_states(order["id"]) == []
    # when WeChat Pay notifies a payment for it anyway
    assert fake_pay.notify_acknowledged(fake_pay.pay(order["no"]))
    run_jobs()
    # then the order is reserved again, paid and delivered, with no refund
    assert get(order["id"]).status == Status.DELIVERED
    assert key_states(order["id"]) == [KeyState.SOLD]
    assert not [r for r in fake_pay.refunds if r.out_trade_no == order["no"]]
    with db.connection_context():
        paid = Event.get((Event.topic == "order.paid") & (Event.subject == f"order:{order['id']}"))
        assert paid.payload["late"] is True


def test_a_late_payment_without_stock_is_refunded_through_wechat_pay(client, login, shop,
                                                                     fake_pay, run_jobs):
    # given an order that expired and whose key was then sold to someone else
    sku = shop.card_sku(keys=1, price=990)
    order = api_order(client, login("late"), sku)
    expire_now(order["id"])
    other = paid_and_delivered(client, login("quick"), sku, fake_pay, run_jobs)
    # when the late buyer's payment arrives
    resp = fake_pay.pay(order["no"])
    assert fake_pay.notify_acknowledged(resp)
    run_jobs()
    # then the refund job refunded it in full through WeChat Pay
    refunds = [r for r in fake_pay.refunds if r.out_trade_no == order["no"]]
    assert len(refunds) == 1 and refunds[0].refund_fee == 990
    assert get(order["id"]).status == Status.REFUNDED
    assert get(other["id"]).status == Status.DELIVERED
    with db.connection_context():
        assert Voucher.select().where(Voucher.order == order["id"]).count() == 0
        assert Refund.get(Refund.order == order["id"]).state == "succeeded"
        assert ledger.unbalanced_transactions() == []
        assert ledger.balance(ledger.SALES) == -990  # only the other buyer's sale remains


def test_a_late_paid_order_waiting_for_its_refund_is_not_delivered_by_the_sweep(
        client, login, shop, fake_pay, fake_wechat, run_jobs, rt):
    # given a late payment whose stock is gone, and WeChat Pay refusing refunds for now
    from tasks import maintenance

    sku = shop.card_sku(keys=1, price=990)
    order = api_order(client, login("late"), sku)
    expire_now(order["id"])
    paid_and_delivered(client, login("quick"), sku, fake_pay, run_jobs)
    sent_before = len(fake_wechat.subscribe_messages)
    fake_pay.fail_next(6, err_code="NOTENOUGH", endpoint="refund")
    fake_pay.pay(order["no"])
    run_jobs()
    assert get(order["id"]).status == Status.PAID
    # when the sweep for paid-but-undelivered orders runs
    assert maintenance.sweep_undelivered(older_than_s=0) == 1
    run_jobs()
    # then the order is not "delivered" with nothing in it, and no delivery notice went out
    assert get(order["id"]).status == Status.PAID
    assert len(fake_wechat.subscribe_messages) == sent_before
    with db.connection_context():
        assert Refund.get(Refund.order == order["id"]).state == "failed"
        # and the operator's retry of the refund then succeeds
        refund = payments.refund_order(order["id"], rt.gateway, actor="operator:test",
                                       reason="retry")
    assert refund.state == "succeeded" and get(order["id"]).status == Status.REFUNDED


# ---- refund_order ------------------------------------------------------------------------------


def test_refund_returns_unrevealed_keys_revokes_revealed_ones_and_reverses_the_ledger(
        client, login, shop, fake_pay, run_jobs, rt):
    # given a delivered order of 2 keys, one of which the buyer revealed
    sku = shop.card_sku(keys=3, price=1000)
    auth = login("alice")
    order = paid_and_delivered(client, auth, sku, fake_pay, run_jobs, quantity=2)
    vouchers = client.get("/api/v1/vouchers", headers=auth).json["vouchers"]
    revealed = client.get(f"/api/v1/vouchers/{vouchers[0]['id']}", headers=auth).json
    with db.connection_context():
        assert ledger.balance(ledger.SALES) == -2000
        # when the order is refunded
        refund = payments.refund_order(order["id"], rt.gateway, actor="operator:test",
                                       reason="customer asked")
        # then WeChat Pay refunded 20.00 once
        assert refund.state == "succeeded" and refund.amount_fen == 2000
        assert [r.refund_fee for r in fake_pay.refunds if r.out_trade_no == order["no"]] == [2000]
        # and the revealed key is revoked (still tied to the order), the other is back on sale
        keys = {vault.plaintext_of(k): k for k in CardKey.select().where(CardKey.sku == sku.id)}
        revealed_key = keys[revealed["secret"]]
        assert revealed_key.state == KeyState.REVOKED and revealed_key.order_id == order["id"]
        states = sorted(k.state for k in keys.values())
        assert states == [KeyState.AVAILABLE, KeyState.AVAILABLE, KeyState.REVOKED]
        back = [k for k in keys.values() if k.state == KeyState.AVAILABLE]
        assert all(k.order_id is None and k.sold_at is None for k in back)
        # and the order is refunded, its vouchers revoked, an event written for clawback
        assert Order.get_by_id(order["id"]).status == Status.REFUNDED
        assert all(v.revoked_at for v in Voucher.select().where(Voucher.order == order["id"]))
        refunded = Event.get((Event.topic == "order.refunded")
                             & (Event.subject == f"order:{order['id']}"))
        assert refunded.payload["amount_fen"] == 2000
        # and the ledger is reversed and balanced
        assert ledger.unbalanced_transactions() == []
        assert ledger.balance(ledger.SALES) == 0 and ledger.balance(ledger.CASH_WECHATPAY) == 0
    # and the buyer can no longer reveal either voucher
    assert client.get(f"/api/v1/vouchers/{vouchers[0]['id']}", headers=auth).status_code == 404
    assert client.get(f"/api/v1/vouchers/{vouchers[1]['id']}", headers=auth).status_code == 404


def test_refund_can_revoke_unrevealed_keys_too(client, login, shop, fake_pay, run_jobs, rt):
    sku = shop.card_sku(keys=2)
    order = paid_and_delivered(client, login(), sku, fake_pay, run_jobs, quantity=2)
    with db.connection_context():
        payments.refund_order(order["id"], rt.gateway, actor="operator:test", reason="fraud",
                              revoke_unrevealed=True)
    assert key_states(order["id"]) == [KeyState.REVOKED, KeyState.REVOKED]


def test_refund_of_a_paid_but_undelivered_order_returns_its_reservation(
        client, login, shop, fake_pay, rt):
    # given a paid order whose delivery has not run yet
    sku = shop.card_sku(keys=2)
    order = api_order(client, login(), sku, 2)
    fake_pay.pay(order["no"])
    assert get(order["id"]).status == Status.PAID
    # when it is refunded
    with db.connection_context():
        payments.refund_order(order["id"], rt.gateway, actor="operator:test", reason="oops")
        # then both keys are available again and nobody holds them
        assert CardKey.select().where(CardKey.state == KeyState.AVAILABLE).count() == 2
        assert not CardKey.select().where(CardKey.order_id.is_null(False)).exists()


def test_refund_is_idempotent(client, login, shop, fake_pay, run_jobs, rt):
    # given a refunded order
    sku = shop.card_sku(keys=2, price=500)
    order = paid_and_delivered(client, login(), sku, fake_pay, run_jobs)
    with db.connection_context():
        first = payments.refund_order(order["id"], rt.gateway, actor="operator:test", reason="a")
        # when it is refunded again
        second = payments.refund_order(order["id"], rt.gateway, actor="operator:test", reason="b")
        # then it is the same refund; money, keys and ledger moved once
        assert first.id == second.id and second.state == "succeeded"
        assert Refund.select().count() == 1
        assert LedgerTransaction.select().where(LedgerTransaction.kind == "refund").count() == 1
        assert Event.select().where(Event.topic == "order.refunded").count() == 1
        assert CardKey.select().where(CardKey.state == KeyState.AVAILABLE).count() == 2
        assert ledger.balance(ledger.SALES) == 0
    assert len([r for r in fake_pay.refunds if r.out_trade_no == order["no"]]) == 1


def test_a_failed_refund_stays_retryable_and_changes_nothing(client, login, shop, fake_pay,
                                                             run_jobs, rt):
    # given a delivered order and WeChat Pay failing the next refund call
    from models.payments import GatewayError

    sku = shop.card_sku(keys=2, price=500)
    order = paid_and_delivered(client, login(), sku, fake_pay, run_jobs)
    fake_pay.fail_next(1, http_status=503, endpoint="refund")
    with db.connection_context():
        with pytest.raises(GatewayError):
            payments.refund_order(order["id"], rt.gateway, actor="operator:test", reason="a")
        # then nothing moved but the refund's state
        assert Order.get_by_id(order["id"]).status == Status.DELIVERED
        assert Refund.get(Refund.order == order["id"]).state == "failed"
        assert ledger.balance(ledger.SALES) == -500
        # and a retry completes it
        assert payments.refund_order(order["id"], rt.gateway, actor="operator:test",
                                     reason="a").state == "succeeded"
        assert ledger.balance(ledger.SALES) == 0


def test_only_paid_orders_can_be_refunded(client, login, shop, rt):
    sku = shop.card_sku(keys=1)
    order = api_order(client, login(), sku)
    with db.connection_context(), pytest.raises(InvalidState):
        payments.refund_order(order["id"], rt.gateway, actor="operator:test", reason="x")
    with db.connection_context():
        assert Refund.select().count() == 0


def test_a_key_a_refund_returned_is_sold_and_delivered_again_with_every_other_order(
        client, login, shop, fake_pay, run_jobs, rt):
    # given alice's delivered, never revealed order of the only key of a SKU, refunded
    sku = shop.card_sku(keys=1, price=800)
    other = shop.card_sku(keys=3, price=300)
    alice = login("alice")
    first = paid_and_delivered(client, alice, sku, fake_pay, run_jobs)
    alice_voucher = client.get("/api/v1/vouchers", headers=alice).json["vouchers"][0]
    with db.connection_context():
        payments.refund_order(first["id"], rt.gateway, actor="operator:test", reason="changed mind")
        assert CardKey.get(CardKey.sku == sku.id).state == KeyState.AVAILABLE
    # when bob buys that key again and carol buys another SKU, both paid before delivery runs
    bob, carol = login("bob"), login("carol")
    again = api_order(client, bob, sku)
    beside = api_order(client, carol, other, 2)
    assert fake_pay.notify_acknowledged(fake_pay.pay(again["no"]))
    assert fake_pay.notify_acknowledged(fake_pay.pay(beside["no"]))
    run_jobs()
    # then both orders are delivered (the returned key no longer blocks the batch)
    assert get(again["id"]).status == Status.DELIVERED
    assert get(beside["id"]).status == Status.DELIVERED
    # and bob reveals the very key alice returned; the reveal says it is revealed now
    bob_voucher = client.get("/api/v1/vouchers", headers=bob).json["vouchers"][0]
    revealed = client.get(f"/api/v1/vouchers/{bob_voucher['id']}", headers=bob).json
    assert revealed["secret"] == f"{sku.code}-KEY-000001-SECRET" and revealed["revealed"] is True
    # and alice's refunded voucher keeps its history (same key, revoked) and stays hidden
    with db.connection_context():
        history = Voucher.get_by_id(alice_voucher["id"])
        assert history.revoked_at is not None and history.card_key_id == CardKey.get(
            CardKey.sku == sku.id).id
        assert CardKey.get(CardKey.sku == sku.id).state == KeyState.SOLD
    assert client.get(f"/api/v1/vouchers/{alice_voucher['id']}", headers=alice).status_code == 404
    # and the key can never be in two live vouchers at once
    with db.connection_context(), pytest.raises(pw.IntegrityError), db.atomic():
        Voucher.create(order=first["id"], user=history.user_id, sku=sku.id, seq=7,
                       kind=history.kind, card_key=history.card_key_id)
