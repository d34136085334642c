"""POST /api/v1/orders/{id}/sandbox-pay pays in-process through the WeChat Pay notify code
(issue 10, finding 8): no HTTP call to ourselves, so it works whatever PUBLIC_BASE_URL and
WEB_BIND say, and stays fast with many buyers at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from werkzeug.serving import make_server

from miniapp_api import create_app
from models.db import db
from models.delivery import Voucher
from models.events import Event
from models.orders import Order, Status
from models.payments import Payment
from qianxing import wiring
from tests.conftest import free_port, make_settings
from tests.factories import api_login, api_place
from tests.miniapp_api.asserts import assert_error

ORDERS = "/api/v1/orders"


@pytest.fixture
def sandbox_app(rt, database_url, redis_url, fake_wechat, fake_pay, settings):  # noqa: ANN001, ANN201
    """The app with the sandbox payment provider, its own server moved off :8000 and
    PUBLIC_BASE_URL pointing at a port where nothing listens."""
    sandbox = make_settings(database_url, redis_url, fake_wechat, fake_pay, PAYMENT_PROVIDER="sandbox",
                            WEB_BIND=f"127.0.0.1:{free_port()}",
                            PUBLIC_BASE_URL=f"http://127.0.0.1:{free_port()}")
    try:
        yield create_app(sandbox)
    finally:
        wiring.reset()
        wiring.bootstrap(settings)


@pytest.fixture
def sandbox_server(sandbox_app) -> Iterator[str]:  # noqa: ANN001
    """The sandbox app served over real HTTP by a threaded server."""
    port = free_port()
    server = make_server("127.0.0.1", port, sandbox_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


def test_sandbox_pay_pays_through_the_notify_path_without_calling_our_own_url(
        sandbox_app, shop, fake_wechat, run_jobs):  # noqa: ANN001
    # given a pending order and a PUBLIC_BASE_URL where nothing listens
    client = sandbox_app.test_client()
    sku = shop.card_sku(keys=2)
    auth = api_login(client, fake_wechat, "sandbox-buyer")
    order = api_place(client, auth, sku, key="sandbox-1")
    # when the buyer pays with the sandbox
    resp = client.post(f"{ORDERS}/{order['id']}/sandbox-pay", headers=auth)
    # then the order is paid at once, as a WeChat Pay notification would have paid it
    assert resp.status_code == 200, resp.json
    assert resp.json["status"] == Status.PAID
    with db.connection_context():
        payment = Payment.get(Payment.order == order["id"])
        assert (payment.provider, payment.transaction_id) == ("sandbox", "sbx" + order["no"])
        assert Event.select().where((Event.topic == "order.paid")
                                    & (Event.subject == f"order:{order['id']}")).count() == 1
    # and delivery follows
    run_jobs()
    with db.connection_context():
        assert Order.get_by_id(order["id"]).status == Status.DELIVERED
        assert Voucher.select().where(Voucher.order == order["id"]).count() == 1
    # and paying again is refused cleanly
    assert_error(client.post(f"{ORDERS}/{order['id']}/sandbox-pay", headers=auth), 409, "order_not_payable")


def test_twenty_buyers_paying_at_once_are_all_answered_quickly(sandbox_server, shop, fake_wechat):  # noqa: ANN001
    # given 20 buyers with a pending order each, on a real HTTP server
    sku = shop.card_sku(keys=20)
    buyers = []
    for i in range(20):
        fake_wechat.register_code(f"sb-load-{i}", f"sb-load-buyer-{i}")
        resp = requests.post(f"{sandbox_server}/api/v1/auth/login", json={"code": f"sb-load-{i}"}, timeout=10)
        assert resp.status_code == 200, resp.text
        auth = {"Authorization": f"Bearer {resp.json()['token']}"}
        placed = requests.post(f"{sandbox_server}{ORDERS}", json={"sku": sku.code, "quantity": 1},
                               headers={**auth, "Idempotency-Key": f"sb-load-{i}"}, timeout=10)
        assert placed.status_code == 201, placed.text
        buyers.append((auth, placed.json()))
    start = threading.Barrier(20)

    def pay(item: tuple[dict, dict]) -> tuple[int, float, dict]:
        auth, order = item
        start.wait()
        began = time.monotonic()
        resp = requests.post(f"{sandbox_server}{ORDERS}/{order['id']}/sandbox-pay", headers=auth, timeout=30)
        return resp.status_code, time.monotonic() - began, resp.json()

    # when all 20 pay at the same moment
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(pay, buyers))
    # then every one is answered 200 and paid, none waits seconds
    assert [status for status, _, _ in answers] == [200] * 20, [body for _, _, body in answers]
    assert all(body["status"] == Status.PAID for _, _, body in answers)
    assert max(elapsed for _, elapsed, _ in answers) < 5, [round(e, 2) for _, e, _ in answers]
    with db.connection_context():
        assert Order.select().where(Order.status == Status.PAID).count() == 20
        assert Payment.select().where(Payment.state == "paid").count() == 20


def test_sandbox_pay_is_refused_where_the_real_gateway_runs(client, login, shop):  # noqa: ANN001
    # given the app with WeChat Pay (the test suite's default)
    auth = login("real-gateway-buyer")
    order = api_place(client, auth, shop.card_sku(keys=1), key="sandbox-1")
    # then sandbox-pay is switched off
    assert_error(client.post(f"{ORDERS}/{order['id']}/sandbox-pay", headers=auth), 403, "sandbox_disabled")
