"""Dead pooled PostgreSQL connections are replaced transparently (issue 10, finding 6): every
backend of this test run's own scratch database is terminated with pg_terminate_backend (never
another database: other runs share the server), then requests through the real app and jobs
still succeed. PostgreSQL only."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import psycopg2
import pytest
import requests

from models.db import db, is_connection_lost, is_postgres
from models.orders import Order, Status
from models.users import User
from tests.factories import api_pay, api_place

ORDERS = "/api/v1/orders"


@pytest.fixture
def pg(rt):  # noqa: ANN001, ANN201
    if not is_postgres():
        pytest.skip("PostgreSQL only: SQLite has no server to close connections")
    return rt


@pytest.fixture
def admin(settings):  # noqa: ANN001, ANN201
    """A connection of our own to the scratch database, outside the pool, to kill the others."""
    conn = psycopg2.connect(settings.DATABASE_URL)
    conn.autocommit = True
    yield conn
    conn.close()


def scratch_name(settings) -> str:  # noqa: ANN001
    name = urlparse(settings.DATABASE_URL).path.lstrip("/")
    assert name.startswith("qx_test_"), name  # never terminate anything but our scratch database
    return name


def backends(admin, name: str) -> int:  # noqa: ANN001
    with admin.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,))
        return cur.fetchone()[0]


def terminate_all(admin, settings, wait: bool = True) -> int:  # noqa: ANN001
    """pg_terminate_backend on every other connection of the scratch database."""
    name = scratch_name(settings)
    with admin.cursor() as cur:
        cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        killed = cur.fetchone()[0]
    deadline = time.monotonic() + 10
    while wait and backends(admin, name) and time.monotonic() < deadline:
        time.sleep(0.02)
    return killed


def fill_pool(n: int = 6) -> None:
    """n connections checked out at once and given back: n idle connections in the pool."""
    barrier = threading.Barrier(n)

    def hold() -> None:
        with db.connection_context():
            db.execute_sql("SELECT 1")
            barrier.wait(timeout=10)

    with ThreadPoolExecutor(n) as pool:
        list(pool.map(lambda _: hold(), range(n)))


def status_of(order_id: int) -> str:
    with db.connection_context():
        return Order.get_by_id(order_id).status


@pytest.mark.parametrize("wait", [True, False], ids=["dead-before-use", "racing-the-kill"])
def test_a_purchase_after_every_connection_was_terminated_succeeds(
        pg, admin, settings, client, login, shop, fake_pay, run_jobs, wait):  # noqa: ANN001
    # given a shopper, a warm pool (the app's threads and the test's) and a SKU
    sku = shop.card_sku(keys=3)
    auth = login("reconnect-buyer")
    fill_pool()
    # when the server terminates every connection of our database while they sit in the pool
    assert terminate_all(admin, settings, wait=wait) >= 1
    # then ordering, paying (WeChat Pay's notify over HTTP) and reading answer as usual
    order = api_place(client, auth, sku, key="reconnect-1")
    api_pay(client, fake_pay, auth, order)
    assert client.get(f"{ORDERS}/{order['id']}", headers=auth).status_code == 200
    # and when every connection is terminated again before the delivery job runs,
    # the job (models.db.connection(), as every job) still delivers the order
    fill_pool()
    terminate_all(admin, settings, wait=wait)
    run_jobs()
    assert status_of(order["id"]) == Status.DELIVERED


def test_two_rounds_of_termination_then_concurrent_requests_all_succeed(
        pg, admin, settings, login, shop, fake_pay, run_jobs, live_port):  # noqa: ANN001
    # given a warm pool in the real HTTP server's threads
    sku = shop.card_sku(keys=20)
    base = f"http://127.0.0.1:{live_port}"
    auths = [login(f"round-buyer-{i}") for i in range(8)]

    def order(i: int, round_: int) -> requests.Response:
        return requests.post(f"{base}{ORDERS}", json={"sku": sku.code, "quantity": 1},
                             headers={**auths[i], "Idempotency-Key": f"round-{round_}-{i}"}, timeout=30)

    with ThreadPoolExecutor(8) as pool:
        assert {r.status_code for r in pool.map(lambda i: order(i, 0), range(8))} == {201}
    fill_pool()
    # when every connection is terminated, and again after the pool refilled
    terminate_all(admin, settings)
    with ThreadPoolExecutor(8) as pool:
        first = list(pool.map(lambda i: requests.get(f"{base}/api/v1/products", timeout=30), range(8)))
    fill_pool()
    terminate_all(admin, settings, wait=False)
    # then every request afterwards succeeds: reads, orders, notifications
    with ThreadPoolExecutor(8) as pool:
        second = list(pool.map(lambda i: order(i, 1), range(8)))
    assert [r.status_code for r in first] == [200] * 8
    assert [r.status_code for r in second] == [201] * 8, [r.text for r in second]
    for i, r in enumerate(second):
        assert requests.post(f"{base}{ORDERS}/{r.json()['id']}/pay", headers=auths[i],
                             timeout=30).status_code == 200
        assert fake_pay.notify_acknowledged(fake_pay.pay(r.json()["no"]))
    run_jobs()
    with db.connection_context():
        assert Order.select().where(Order.status == Status.DELIVERED).count() == 8


def test_a_connection_lost_inside_a_transaction_fails_it_cleanly_and_the_next_one_works(
        pg, admin, settings):  # noqa: ANN001
    # given a transaction that already wrote on its connection
    with db.connection_context():
        with pytest.raises(Exception) as caught, db.atomic():
            User.create(openid="lost-in-transaction")
            # when the server terminates the connection in the middle of it
            terminate_all(admin, settings)
            User.select().count()
        # then the error says the connection was lost (not masked by a failed ROLLBACK),
        # and nothing of the transaction was committed
        assert is_connection_lost(caught.value), repr(caught.value)
    with db.connection_context():
        assert User.select().where(User.openid == "lost-in-transaction").count() == 0
        # and the next transaction runs on a fresh connection
        with db.atomic():
            User.create(openid="after-the-loss")
        assert User.select().where(User.openid == "after-the-loss").count() == 1


def kill_mid_transaction(admin, settings, times: int):  # noqa: ANN001, ANN201
    """A query hook that has the server terminate our connections right after an INSERT inside
    a transaction, `times` times (a fault injected from the server side, as an operator's
    pg_terminate_backend would)."""
    left = {"n": times}

    def hook(event) -> None:  # noqa: ANN001
        if left["n"] and db.in_transaction() and "INSERT" in event.sql.upper():
            left["n"] -= 1
            terminate_all(admin, settings)

    hook.left = left  # type: ignore[attr-defined]
    return hook


def login_with(client, fake_wechat, hook, code: str, openid: str):  # noqa: ANN001, ANN201
    fake_wechat.register_code(code, openid)
    db.obj.query_hooks.append(hook)
    try:
        return client.post("/api/v1/auth/login", json={"code": code})
    finally:
        db.obj.query_hooks.remove(hook)


def users_named(openid: str) -> int:
    with db.connection_context():
        return User.select().where(User.openid == openid).count()


def test_a_login_whose_transaction_loses_its_connection_runs_it_once_more(
        pg, admin, settings, client, fake_wechat):  # noqa: ANN001
    # given a first login (it creates the user in a transaction) whose connection the server
    # terminates right after the INSERT
    hook = kill_mid_transaction(admin, settings, times=1)
    # when the login runs
    resp = login_with(client, fake_wechat, hook, "mid-code-1", "mid-once-user")
    # then the spent WeChat code is not wasted: the user is created on a fresh connection
    assert hook.left["n"] == 0, "the fault was never injected"
    assert resp.status_code == 200, resp.json
    assert users_named("mid-once-user") == 1


def test_a_request_whose_connection_keeps_dying_gets_a_clean_503_not_a_500(
        pg, admin, settings, client, login, fake_wechat):  # noqa: ANN001
    # given a login whose transaction loses its connection on every attempt
    hook = kill_mid_transaction(admin, settings, times=2)
    # when the login runs
    resp = login_with(client, fake_wechat, hook, "mid-code-2", "mid-twice-user")
    # then it is answered 503 with Retry-After and the usual error shape, never a 500
    assert hook.left["n"] == 0, "the fault was never injected twice"
    assert resp.status_code == 503, resp.json
    assert resp.json["error"]["code"] == "database_unavailable"
    assert resp.headers["Retry-After"] == "1"
    # and nothing of the lost transactions was committed, and the next request works
    assert users_named("mid-twice-user") == 0
    assert client.get("/api/v1/orders", headers=login("after-503")).status_code == 200
