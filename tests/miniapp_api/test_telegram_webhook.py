"""POST /webhooks/telegram: the secret token first, then the body, then a durable row before
the 200; duplicates by update_id are answered and ignored; one drain job, not one per update."""

from __future__ import annotations

import datetime as dt
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from models import inbox, network
from models.chat import BotUpdate
from models.db import connection, utcnow
from models.identities import identity_of
from models.network import Creator
from qianxing import wiring
from qianxing.settings import Settings
from tasks import queues
from tests.conftest import TG_SECRET
from tests.factories import creator

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


def test_without_a_configured_secret_the_route_does_not_exist(client, settings: Settings,  # noqa: ANN001
                                                             monkeypatch) -> None:  # noqa: ANN001
    # given a deployment without TELEGRAM_WEBHOOK_SECRET
    wiring.reset()
    monkeypatch.setitem(client.application.extensions, "qianxing",
                        wiring.bootstrap(settings.model_copy(update={"TELEGRAM_WEBHOOK_SECRET": None})))
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
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(rt, "redis", dead)
    monkeypatch.setattr(rt.queue, "connection", dead)
    yield


def test_with_redis_down_the_update_is_still_stored_and_acknowledged(client, redis_down) -> None:  # noqa: ANN001
    # when Redis cannot be reached for the drain signal
    resp = post(client, update(11))
    # then the update is durable anyway (the next drain claims queued rows from the database)
    assert resp.status_code == 200
    assert [k for _, k, _ in stored()] == ["11"]



JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(
    st.binary(max_size=200),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.text(max_size=8), JSON, max_size=4).map(
        lambda d: json.dumps({**d, "update_id": len(d)}).encode()),
))
def test_whatever_a_client_sends_the_answer_is_200_or_400_never_500(client, body: bytes) -> None:  # noqa: ANN001
    resp = post(client, body, raw=True)
    assert resp.status_code in (200, 400), (resp.status_code, body[:100])
    assert resp.is_json

# ---- end to end: webhook -> drain job -> core -> sender -> the fake Bot API ----------------------

GROUP = {"id": -100777, "type": "supergroup", "title": "千星福利群"}


def start_link(update_id: int, code: str, user_id: int = 1001) -> dict[str, Any]:
    text = f"/start {code}"
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": 1_700_000_000, "chat": {"id": user_id, "type": "private"},
        "from": {"id": user_id, "is_bot": False, "first_name": "小明"}, "text": text,
        "entities": [{"type": "bot_command", "offset": 0, "length": 6}]}}


def states() -> dict[str, str]:
    with connection():
        return {u.update_key: u.state for u in BotUpdate.select()}


def code_owner(name: str = "阿星") -> Creator:
    return creator(f"owner-{name}", name=name)


def test_start_with_a_deep_link_binds_the_new_creator_to_the_code_owner(client, run_jobs, telegram) -> None:  # noqa: ANN001
    # given a creator whose invite link is t.me/<bot>?start=<code>
    owner = code_owner()
    # when a Telegram user opens it: Telegram posts "/start <code>" to the webhook
    assert post(client, start_link(100, owner.code)).status_code == 200
    # and the drain job runs
    run_jobs()
    # then the user is now a creator bound to the owner
    with connection():
        ident = identity_of("telegram", "1001")
        assert ident is not None
        me = network.creator_of(ident.user)
        assert me.parent_id == owner.id
    # and the reply reached the user's chat at the (fake) Bot API
    texts = [s.text for s in telegram.sent_to(1001)]
    assert any("绑定成功" in t and owner.code in t for t in texts), texts
    assert states() == {"100": "done"}


def test_a_duplicate_update_is_processed_once(client, run_jobs, telegram) -> None:  # noqa: ANN001
    owner = code_owner()
    # given Telegram delivers the same update twice (before and after the first drain)
    post(client, start_link(5, owner.code))
    post(client, start_link(5, owner.code))
    run_jobs()
    post(client, start_link(5, owner.code))
    run_jobs()
    # then it was answered once
    assert len(telegram.sent_to(1001)) == 1
    assert states() == {"5": "done"}


def test_an_update_whose_drain_job_was_lost_is_processed_by_the_next_drain(client, rt, run_jobs, telegram) -> None:  # noqa: ANN001
    owner = code_owner()
    # given an update acknowledged (stored) whose drain job died with its worker
    post(client, start_link(1, owner.code, user_id=2001))
    rt.queue.empty()
    rt.redis.delete(queues.CHAT_UPDATES_FLAG)  # the flag expires after the dead run
    assert states() == {"1": "queued"} and telegram.sent == []
    # when the next update arrives and its drain runs
    post(client, start_link(2, owner.code, user_id=2002))
    run_jobs()
    # then both were processed
    assert states() == {"1": "done", "2": "done"}
    assert telegram.sent_to(2001) and telegram.sent_to(2002)


def test_an_update_claimed_by_a_processor_that_was_killed_is_processed_after_the_lease(
        client, rt, run_jobs, telegram) -> None:  # noqa: ANN001
    owner = code_owner()
    post(client, start_link(1, owner.code))
    rt.queue.empty()
    # given a processor claimed the update and was killed before handling it
    with connection():
        assert [c.update_key for c in inbox.claim()] == ["1"]
    run_jobs()  # nothing to do: the row is leased
    queues.drain_chat_updates()
    run_jobs()
    assert states() == {"1": "queued"} and telegram.sent == []
    # when the lease has run out (time passes) and a drain runs
    with connection():
        BotUpdate.update(processed_at=utcnow() - dt.timedelta(seconds=inbox.LEASE_S + 1)).execute()
    queues.drain_chat_updates()
    run_jobs()
    # then it was processed, on its second attempt, and answered once
    with connection():
        row = BotUpdate.get()
        assert (row.state, row.attempts) == ("done", 2)
    assert len(telegram.sent_to(1001)) == 1


def test_an_unreadable_update_is_failed_and_the_next_one_is_answered(client, run_jobs, telegram) -> None:  # noqa: ANN001
    owner = code_owner()
    post(client, {"update_id": 1, "message": "not a message"})
    post(client, start_link(2, owner.code))
    run_jobs()
    assert states() == {"1": "failed", "2": "done"}
    assert len(telegram.sent_to(1001)) == 1


def test_a_button_press_is_answered_and_handled(client, run_jobs, telegram) -> None:  # noqa: ANN001
    # given a press on the "help" button under an earlier bot message
    press = {"update_id": 9, "callback_query": {
        "id": "cbq-77", "from": {"id": 1001, "is_bot": False, "first_name": "小明"}, "chat_instance": "c",
        "data": "CMD_HELP", "message": {"message_id": 3, "date": 1_700_000_000,
                                        "chat": {"id": 1001, "type": "private"}, "text": "菜单"}}}
    assert post(client, press).status_code == 200
    run_jobs()
    # then the query was answered (the spinner stops) and the help text was sent
    assert [a["callback_query_id"] for a in telegram.callback_answers] == ["cbq-77"]
    assert telegram.sent_to(1001) and states() == {"9": "done"}


def joined_message(update_id: int, members: list[dict[str, Any]]) -> dict[str, Any]:
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": 1_700_000_000, "chat": GROUP, "from": members[0],
        "new_chat_members": members}}


def test_a_group_join_gets_one_welcome_even_when_telegram_reports_it_twice(client, run_jobs, telegram) -> None:  # noqa: ANN001
    newcomer = {"id": 3003, "is_bot": False, "first_name": "王", "last_name": "五"}
    # given the service message and, the bot being an admin, the chat_member update of one join
    post(client, joined_message(20, [newcomer]))
    post(client, {"update_id": 21, "chat_member": {
        "chat": GROUP, "from": newcomer, "date": 1_700_000_000,
        "old_chat_member": {"status": "left", "user": newcomer},
        "new_chat_member": {"status": "member", "user": newcomer}}})
    run_jobs()
    # then the group got one welcome naming the newcomer
    welcomes = [s.text for s in telegram.sent_to(-100777)]
    assert len(welcomes) == 1 and "王 五" in welcomes[0], welcomes
    assert states() == {"20": "done", "21": "done"}


def test_a_429_during_the_reply_is_retried_by_the_sender(client, run_jobs, telegram) -> None:  # noqa: ANN001
    owner = code_owner()
    # given the Bot API answers the next send with 429 retry_after=1
    telegram.fail_next(429, retry_after=1)
    post(client, start_link(1, owner.code))
    run_jobs()
    # then the reply arrived once anyway
    assert len(telegram.sent_to(1001)) == 1
    assert any(r.path.endswith("/sendMessage") for r in telegram.requests)
    assert len([r for r in telegram.requests if r.path.endswith("/sendMessage")]) == 2
