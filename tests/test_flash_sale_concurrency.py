"""200 concurrent buyers for 100 keys against a real gunicorn server and a real RQ worker,
then 10 concurrent duplicate payment notifications per order. Runs on whichever database the
suite runs on (SQLite file or PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from models.db import db
from models.delivery import Voucher
from models.orders import Order
from models.vault import CardKey
from qianxing.processes import stop_all
from tests.conftest import APP_SECRET, APPID, MCH_ID, PAY_KEY, free_port

BUYERS, KEYS, DUPLICATES = 200, 100, 10


@pytest.fixture
def server(rt, fake_wechat, fake_pay, database_url, redis_url) -> Iterator[str]:  # noqa: ANN001
    port = free_port()
    env = {
        **os.environ,
        "QIANXING_ENV": "test", "DATABASE_URL": database_url, "REDIS_URL": redis_url,
        "WECHAT_APPID": APPID, "WECHAT_SECRET": APP_SECRET,
        "WECHAT_API_BASE_URL": fake_wechat.base_url, "PAYMENT_PROVIDER": "wechatpay",
        "WECHATPAY_MCH_ID": MCH_ID, "WECHATPAY_API_KEY": PAY_KEY,
        "WECHATPAY_API_BASE_URL": fake_pay.base_url,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_WORKERS": "2", "WEB_THREADS": "16", "MAX_UNPAID_PER_IP": "100000",
        "LOGIN_RATE_PER_IP": "0",  # 200 shoppers log in from one address here
        "NOTIFY_CHANNELS": "wxa_subscribe", "LOG_LEVEL": "WARNING",
    }
    cmd = [sys.executable, "-m", "qianxing.cli"]
    procs = [subprocess.Popen([*cmd, "web"], env=env),
             subprocess.Popen([*cmd, "worker", "--no-cron"], env=env)]
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90  # gunicorn on a loaded CI host
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        yield base
    finally:
        stop_all(procs)


def test_flash_sale_never_oversells_and_duplicate_notifications_deliver_once(
        server, shop, fake_wechat, fake_pay):  # noqa: ANN001
    # given 100 keys and 200 shoppers logged in through jscode2session
    sku = shop.card_sku(keys=KEYS, price=990, code="FLASH")
    tokens = []
    for i in range(BUYERS):
        fake_wechat.register_code(f"flash-code-{i}", f"flash-buyer-{i}")
        resp = requests.post(f"{server}/api/v1/auth/login", json={"code": f"flash-code-{i}"}, timeout=10)
        assert resp.status_code == 200, resp.text
        tokens.append(resp.json()["token"])
    start = threading.Barrier(BUYERS)

    def buy(i: int) -> requests.Response:
        start.wait()
        return requests.post(f"{server}/api/v1/orders", json={"sku": sku.code, "quantity": 1},
                             headers={"Authorization": f"Bearer {tokens[i]}",
                                      "Idempotency-Key": f"flash-{i:04d}"}, timeout=60)

    # when all 200 order at the same moment
    with ThreadPoolExecutor(BUYERS) as pool:
        answers = list(pool.map(buy, range(BUYERS)))
    # then exactly 100 get an order and the rest a clean out-of-stock refusal
    created = [(i, r.json()) for i, r in enumerate(answers) if r.status_code == 201]
    refused = [r for r in answers if r.status_code == 409]
    assert len(created) == KEYS, {r.status_code for r in answers}
    assert len(refused) == BUYERS - KEYS
    assert all(r.json()["error"]["code"] == "out_of_stock" for r in refused)

    # when each order is paid and WeChat Pay sends its notification 10 times concurrently
    for i, order in created:
        pay = requests.post(f"{server}/api/v1/orders/{order['id']}/pay",
                            headers={"Authorization": f"Bearer {tokens[i]}"}, timeout=30)
        assert pay.status_code == 200, pay.text
    notifications = [(order["no"], fake_pay.build_notify_xml(order["no"]))
                     for _, order in created for _ in range(DUPLICATES)]
    notify_url = f"{server}/webhooks/wechatpay/notify"

    def notify(item: tuple[str, bytes]) -> requests.Response:
        return requests.post(notify_url, data=item[1], timeout=60)

    with ThreadPoolExecutor(50) as pool:
        acks = list(pool.map(notify, notifications))
    # then every notification is acknowledged
    assert all(r.status_code == 200 and b"SUCCESS" in r.content for r in acks)

    # and the worker delivers each order exactly once: 100 orders, 100 distinct keys
    deadline = time.monotonic() + 90
    while True:
        with db.connection_context():
            delivered = Order.select().where(Order.status == "delivered").count()
        if delivered == KEYS or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    with db.connection_context():
        assert delivered == KEYS
        vouchers = list(Voucher.select())
        assert len(vouchers) == KEYS
        assert len({v.card_key_id for v in vouchers}) == KEYS
        assert len({v.order_id for v in vouchers}) == KEYS
        assert CardKey.select().where(CardKey.state == "sold").count() == KEYS
        assert CardKey.select().where(CardKey.state == "available").count() == 0
    deadline = time.monotonic() + 30
    while len([m for m in fake_wechat.subscribe_messages if m["touser"].startswith("flash-buyer-")]) < KEYS:
        assert time.monotonic() < deadline, "notices not all sent"
        time.sleep(0.5)
    sent = [m["touser"] for m in fake_wechat.subscribe_messages if m["touser"].startswith("flash-buyer-")]
    assert len(sent) == len(set(sent)) == KEYS
