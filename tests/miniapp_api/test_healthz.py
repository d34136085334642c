"""GET /healthz: 200 with every dependency up, 503 naming what is down, nothing secret in it.
Redis is made unreachable by pointing a second app at a port nobody listens on: the session's
shared Redis is never stopped."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from miniapp_api import create_app
from qianxing import wiring
from tests.conftest import free_port


def test_healthz_answers_200_when_the_database_and_redis_are_up(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json == {"status": "ok", "database": "ok", "redis": "ok"}


@pytest.fixture(params=["refused", "hung"])
def dead_redis(request) -> Iterator[str]:  # noqa: ANN001
    """A Redis URL nobody answers on: a closed port, or a listener that never says a word."""
    if request.param == "refused":
        yield f"redis://:s3cret-pass@127.0.0.1:{free_port()}/0"
        return
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # connections complete in the backlog; nothing is ever read or sent
        yield f"redis://:s3cret-pass@127.0.0.1:{listener.getsockname()[1]}/0"


def test_healthz_answers_503_naming_redis_when_redis_is_unreachable(rt, settings, dead_redis):
    # given an app whose Redis does not answer (its password must not leak)
    dead = dead_redis
    wiring.reset()
    try:
        app = create_app(settings.model_copy(update={"REDIS_URL": dead}))
        # when the probe asks
        began = time.monotonic()
        resp = app.test_client().get("/healthz")
        took = time.monotonic() - began
    finally:
        wiring.reset()
        wiring.bootstrap(settings)
    # then it answers 503 and names Redis, not the database, without the URL or its password
    assert resp.status_code == 503
    assert resp.json["status"] == "down"
    assert resp.json["database"] == "ok"
    assert resp.json["redis"].startswith("unreachable: ")
    assert "s3cret" not in resp.get_data(as_text=True) and str(dead) not in resp.get_data(as_text=True)
    # and it answers within about a second instead of hanging the probe
    assert took < 5, took


def test_healthz_answers_503_naming_the_database_when_it_is_unreachable(rt, settings):
    # given an app whose database is a PostgreSQL port nobody listens on
    port = free_port()
    dead = f"postgresql://qx:s3cret-pass@127.0.0.1:{port}/nowhere"
    wiring.reset()
    try:
        app = create_app(settings.model_copy(update={"DATABASE_URL": dead}))
        # when the probe asks
        resp = app.test_client().get("/healthz")
    finally:
        wiring.reset()
        wiring.bootstrap(settings)  # the session's database again
    # then it answers 503 naming the database; Redis is fine; no URL or password in it
    assert resp.status_code == 503
    assert resp.json["status"] == "down" and resp.json["redis"] == "ok"
    assert resp.json["database"].startswith("unreachable: ")
    assert "s3cret" not in resp.get_data(as_text=True) and str(port) not in resp.get_data(as_text=True)
