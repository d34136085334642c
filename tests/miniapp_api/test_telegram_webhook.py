"""POST /webhooks/telegram: the secret token first, then the body, then a durable row before
the 200; duplicates by update_id are answered and ignored; one drain job, not one per update."""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest

from models.chat import BotUpdate
from models.db import connection
from qianxing import wiring
from qianxing.settings import Settings
from tests.conftest import TG_SECRET

URL = "/webhooks/telegram"
HEADER = "X-Telegram-Bot-Api-Secret-Token"


def update(update_id: int = 1, text: str = "你好") -> dict[str, Any]:
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": 1_700_000_000, "chat": {"id": 1001, "type": "private"},
        "from": {"id": 1001, "is_bot": False, "first_name": "小明"}, "text": text}}


def post(client, body: Any, secret: str | None = TG_SECRET, raw: bool = False):  # noqa: ANN001, ANN201
    headers = {HEADER: secret} if secret is not None else {}
    data = body if raw else json.dumps(body, ensure_ascii=False).encode()
    return client.post(URL, data=data, headers=headers, content_type="application/json")


def stored() -> list[tuple[str, str, Any]]:
    with connection():
        return [(u.platform, u.update_key, u.payload) for u in BotUpdate.select().order_by(BotUpdate.id)]


def test_a_valid_update_is_stored_before_the_200_and_one_drain_is_queued(client, rt) -> None:  # noqa: ANN001
    # when Telegram posts an update with the right secret
    resp = post(client, update(42))
    # then it is answered 200, stored as it came, and one drain job is queued
    assert resp.status_code == 200 and resp.json == {"ok": True, "duplicate": False}
    assert stored() == [("telegram", "42", update(42))]
    assert [j.func_name for j in rt.queue.jobs] == ["tasks.chat_updates.process_updates"]


def test_many_updates_queue_one_drain_job_not_one_each(client, rt) -> None:  # noqa: ANN001
    for i in range(1, 8):
        assert post(client, update(i)).status_code == 200
    assert len(stored()) == 7
    assert rt.queue.count == 1


def test_a_duplicate_update_id_is_answered_200_and_ignored(client, rt) -> None:  # noqa: ANN001
    # given an update already stored
    assert post(client, update(7, "first")).status_code == 200
    # when Telegram resends the same update_id (even with another body)
    again = post(client, update(7, "second"))
    # then it is acknowledged, nothing new is stored, nothing more is queued
    assert again.status_code == 200 and again.json["duplicate"] is True
    assert [(k, p["message"]["text"]) for _, k, p in stored()] == [("7", "first")]
    assert rt.queue.count == 1


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", TG_SECRET[:-1], TG_SECRET + "x", "秘密"])
def test_a_missing_or_wrong_secret_is_refused_and_nothing_is_stored(client, rt, secret) -> None:  # noqa: ANN001
    resp = post(client, update(1), secret=secret)
    assert resp.status_code == 403 and resp.json["error"]["code"] == "forbidden"
    assert stored() == [] and rt.queue.count == 0


def test_the_secret_is_compared_in_constant_time(client, monkeypatch) -> None:  # noqa: ANN001
    # given a spy on the standard library's constant-time comparison
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):  # noqa: ANN001, ANN202
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    # when a wrong and a right secret arrive
    post(client, update(1), secret="wrong")
    post(client, update(2))
    # then both went through compare_digest against the configured secret
    assert calls == [(b"wrong", TG_SECRET.encode()), (TG_SECRET.encode(), TG_SECRET.encode())]


def test_the_secret_is_checked_before_the_body_is_read(client) -> None:  # noqa: ANN001
    # given bodies that would be refused for their size or shape
    huge = b"{" + b" " * (1024 * 1024) + b"}"
    # when they come without the right secret
    # then the answer is about the secret, not the body
    assert post(client, huge, secret="nope", raw=True).status_code == 403
    assert post(client, b"garbage", secret=None, raw=True).status_code == 403


def test_without_a_configured_secret_the_route_does_not_exist(client, settings: Settings) -> None:  # noqa: ANN001
    # given a deployment without TELEGRAM_WEBHOOK_SECRET
    wiring.reset()
    wiring.bootstrap(settings.model_copy(update={"TELEGRAM_WEBHOOK_SECRET": None}))
    try:
        # then even the "right" secret finds nothing
        resp = post(client, update(1))
        assert resp.status_code == 404 and resp.json["error"]["code"] == "not_found"
        assert stored() == []
    finally:
        wiring.reset()
        wiring.bootstrap(settings)


NESTED = b'{"update_id": 1, "message": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b"null", b"42", b'"text"', b'{"message": {}}',
    b'{"update_id": "1"}', b'{"update_id": 1.0}', b'{"update_id": true}', b'{"update_id": null}',
    b'{"update_id": -1}', b'{"update_id": 9007199254740992}', b'{"update_id": 1' + b"0" * 5000 + b"}",
    b'{"update_id": NaN}', b'{"update_id": 1, "x": Infinity}', b"\xff\xfe\x00garbage",
    b'{"update_id": 1, "message": {"text": "\\ud800"}}', NESTED,
], ids=lambda b: repr(b[:24]))
def test_malformed_bodies_are_400_and_nothing_is_stored(client, rt, body: bytes) -> None:  # noqa: ANN001
    resp = post(client, body, raw=True)
    assert resp.status_code == 400, resp.data[:200]
    assert resp.json["error"]["code"] == "invalid_update"
    assert stored() == [] and rt.queue.count == 0


def test_oversized_bodies_are_413_but_long_updates_fit(client, rt) -> None:  # noqa: ANN001
    # given an update longer than the app-wide body limit but within the webhook's
    long = update(5, "长" * 20_000)  # ~60 KB of UTF-8
    assert post(client, long).status_code == 200
    # when a body beyond the webhook's limit arrives
    too_big = update(6, "x" * (300 * 1024))
    resp = post(client, too_big)
    # then it is refused with 413, and only the first was stored
    assert resp.status_code == 413
    assert [k for _, k, _ in stored()] == ["5"]


def test_other_methods_are_405(client) -> None:  # noqa: ANN001
    assert client.get(URL, headers={HEADER: TG_SECRET}).status_code == 405


@pytest.fixture
def redis_down(rt: wiring.Runtime, monkeypatch) -> Iterator[None]:  # noqa: ANN001
    """Redis unreachable for the signal and the enqueue (the database is fine)."""
    from redis import Redis

    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    monkeypatch.setattr(rt, "redis", dead)
    monkeypatch.setattr(rt.queue, "connection", dead)
    yield


def test_with_redis_down_the_update_is_still_stored_and_acknowledged(client, redis_down) -> None:  # noqa: ANN001
    # when Redis cannot be reached for the drain signal
    resp = post(client, update(11))
    # then the update is durable anyway (the next drain claims queued rows from the database)
    assert resp.status_code == 200
    assert [k for _, k, _ in stored()] == ["11"]
