"""models.inbox and tasks.chat_updates: stored Telegram updates are claimed with a lease, retried after a crash,
given up after MAX_ATTEMPTS without blocking the rows behind them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from models.chat import BotUpdate
from models.db import connection, utcnow
from models.inbox import LEASE_S, MAX_ATTEMPTS, RETRY_DELAYS_S, claim, store_telegram_update, store_telegram_updates
from tasks import chat_updates


def update(update_id: int, text: str = "你好") -> dict[str, Any]:
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": 1_700_000_000, "chat": {"id": 1001, "type": "private"},
        "from": {"id": 1001, "is_bot": False, "first_name": "小明"}, "text": text}}


def later(seconds: float) -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=seconds)


def rows() -> dict[str, tuple[str, int]]:
    return {u.update_key: (u.state, u.attempts) for u in BotUpdate.select()}


def test_storing_skips_update_ids_seen_before(rt) -> None:  # noqa: ANN001
    with connection():
        first = store_telegram_updates([update(1), update(2)])
        again = store_telegram_updates([update(2), update(3)])
        assert len(first) == 2 and len(again) == 1
        assert store_telegram_update(update(3)) is None
        assert sorted(rows()) == ["1", "2", "3"]


def test_unstorable_text_is_refused(rt) -> None:  # noqa: ANN001
    with connection(), pytest.raises(ValueError):
        store_telegram_update(update(1, "\ud800"))


def test_claims_come_in_order_and_a_claimed_row_is_leased(rt) -> None:  # noqa: ANN001
    with connection():
        store_telegram_updates([update(i) for i in (1, 2, 3)])
        # when two processors claim in turn
        a, b = claim(2), claim(2)
        # then they got disjoint rows in update order, each on its first attempt
        assert [(c.update_key, c.attempts) for c in a] == [("1", 1), ("2", 1)]
        assert [(c.update_key, c.attempts) for c in b] == [("3", 1)]
        assert a[0].payload == update(1)
        # and nothing is claimable while the leases last
        assert claim(10) == []


def test_rows_of_a_processor_that_died_are_claimed_again_after_the_lease(rt) -> None:  # noqa: ANN001
    with connection():
        store_telegram_updates([update(1), update(2)])
        claimed = claim(10)  # ... and the processor dies here
        assert len(claimed) == 2
        # before the lease runs out nobody takes them; after it the next drain does
        assert claim(10, now=later(LEASE_S - 5)) == []
        again = claim(10, now=later(LEASE_S + 1))
        assert [(c.update_key, c.attempts) for c in again] == [("1", 2), ("2", 2)]


def test_an_update_that_keeps_killing_its_processor_is_failed_and_blocks_nothing(rt) -> None:  # noqa: ANN001
    with connection():
        store_telegram_update(update(1))
        t = utcnow()
        # given MAX_ATTEMPTS claims that never finished
        for i in range(MAX_ATTEMPTS):
            assert [c.update_key for c in claim(10, now=t + dt.timedelta(seconds=i * (LEASE_S + 1)))] == ["1"]
        store_telegram_update(update(2))
        # when the next drain comes after the last lease
        nxt = claim(10, now=t + dt.timedelta(seconds=MAX_ATTEMPTS * (LEASE_S + 1)))
        # then the poison row is failed with a reason and the row behind it is claimed
        assert [c.update_key for c in nxt] == ["2"]
        assert rows()["1"] == ("failed", MAX_ATTEMPTS)
        assert "gave up" in BotUpdate.get(BotUpdate.update_key == "1").last_error


def test_other_platforms_rows_are_not_claimed(rt) -> None:  # noqa: ANN001
    with connection():
        BotUpdate.create(platform="wechat", update_key="m1", payload={"MsgId": "m1"})
        assert claim(10) == []


def test_the_drain_without_a_bot_token_leaves_rows_queued(rt, settings, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(rt, "settings", settings.model_copy(update={"TELEGRAM_BOT_TOKEN": None}))
    with connection():
        store_telegram_update(update(1))
    assert chat_updates.process_updates() == 0
    with connection():
        assert rows() == {"1": ("queued", 0)}


GROUP_TEAM = {"update_id": 70, "message": {
    "message_id": 1, "date": 1_700_000_000, "chat": {"id": -100900, "type": "supergroup", "title": "群"},
    "from": {"id": 1001, "is_bot": False, "first_name": "小明"}, "text": "/help@qianxing_test_bot",
    "entities": [{"type": "bot_command", "offset": 0, "length": 23}]}}


def _rewind(seconds: float) -> None:
    """Time passes: the row's lease or backoff started `seconds` earlier than recorded."""
    with connection():
        for row in BotUpdate.select():
            BotUpdate.update(processed_at=row.processed_at - dt.timedelta(seconds=seconds)).where(
                BotUpdate.id == row.id).execute()


def test_a_failing_update_is_retried_with_backoff_then_failed(rt, settings, monkeypatch, run_jobs,  # noqa: ANN001
                                                              telegram) -> None:  # noqa: ANN001
    # given the Bot API is unreachable, so the mention check (getMe) of a group command fails
    dead = settings.model_copy(update={"TELEGRAM_API_BASE_URL": "http://127.0.0.1:9"})
    monkeypatch.setattr(rt, "settings", dead)
    with connection():
        store_telegram_update(GROUP_TEAM)
    # when the drain runs
    assert chat_updates.process_updates() == 1
    # then the row stays queued with the error, and a delayed drain is scheduled for the retry
    with connection():
        row = BotUpdate.get()
        assert (row.state, row.attempts) == ("queued", 1) and "Telegram" in (row.last_error or "")
    assert len(rt.queue.scheduled_job_registry.get_job_ids()) == 1
    assert chat_updates.process_updates() == 0  # not yet due: the backoff holds it
    # when every retry fails too
    for _ in range(MAX_ATTEMPTS - 1):
        _rewind(max(RETRY_DELAYS_S) + 1)
        assert chat_updates.process_updates() == 1
    # then it is failed for good, with the last error kept
    with connection():
        row = BotUpdate.get()
        assert (row.state, row.attempts) == ("failed", MAX_ATTEMPTS) and row.last_error


def test_a_retried_update_succeeds_once_the_api_is_back(rt, settings, monkeypatch, run_jobs, telegram) -> None:  # noqa: ANN001
    monkeypatch.setattr(rt, "settings", settings.model_copy(update={"TELEGRAM_API_BASE_URL": "http://127.0.0.1:9"}))
    with connection():
        store_telegram_update(GROUP_TEAM)
    chat_updates.process_updates()
    # when the API is back and the backoff has passed
    monkeypatch.setattr(rt, "settings", settings)
    _rewind(max(RETRY_DELAYS_S) + 1)
    run_jobs()  # the scheduled retry drain
    # then the command was answered in the group, once
    with connection():
        assert rows() == {"70": ("done", 2)}
    assert len(telegram.sent_to(-100900)) == 1
