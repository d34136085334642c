"""models.inbox: incoming updates stored once, claimed with a lease, finished fenced by the
attempt, retried after a backoff, and WeChat messages left unanswered found again."""

from __future__ import annotations

import datetime as dt

from models import inbox
from models.chat import BotUpdate
from models.db import utcnow


def state(key: str, platform: str = inbox.TELEGRAM) -> tuple[str, int]:
    row = BotUpdate.get((BotUpdate.platform == platform) & (BotUpdate.update_key == key))
    return row.state, row.attempts


def test_the_reply_key_names_the_platform_update_and_position() -> None:
    assert inbox.reply_key("telegram", "77", 2) == "reply:telegram:77:2"


def test_a_finish_by_an_attempt_that_lost_its_lease_is_refused(conn) -> None:  # noqa: ANN001
    # given an update claimed by a processor that then stalled past its lease, and claimed again
    inbox.store_telegram_update({"update_id": 1})
    t = utcnow()
    (slow,) = inbox.claim(now=t)
    (fresh,) = inbox.claim(now=t + dt.timedelta(seconds=inbox.LEASE_S + 1))
    # when the slow processor finishes, then nothing changes; the current attempt's finish counts
    assert inbox.finish(slow, "done") is False
    assert state("1") == ("queued", 2)
    assert inbox.finish(fresh, "done") is True
    assert state("1") == ("done", 2)


def test_retry_later_holds_the_row_for_its_backoff_then_fails_it_after_the_last_attempt(conn) -> None:  # noqa: ANN001
    # given an update whose first attempt failed
    inbox.store_telegram_update({"update_id": 5})
    (row,) = inbox.claim()
    # when it is put back, then it waits the first backoff and no claim takes it before
    delay = inbox.retry_later(row, "boom")
    assert delay == inbox.RETRY_DELAYS_S[0]
    assert inbox.claim(now=utcnow() + dt.timedelta(seconds=delay - 2)) == []
    (again,) = inbox.claim(now=utcnow() + dt.timedelta(seconds=delay + 1))
    assert again.attempts == 2
    # and an attempt that was the last one is failed instead
    last = inbox.Claimed(again.id, again.update_key, again.payload, inbox.MAX_ATTEMPTS)
    BotUpdate.update(attempts=inbox.MAX_ATTEMPTS).where(BotUpdate.id == again.id).execute()
    assert inbox.retry_later(last, "boom again") is None
    assert state("5") == ("failed", inbox.MAX_ATTEMPTS)


def test_a_wechat_message_is_stored_once_and_only_a_stale_unanswered_one_is_claimed(conn) -> None:  # noqa: ANN001
    # given a message stored twice (a retry) and another one answered
    message = {"platform": "wechat", "chat_id": "oA", "text": "加入"}
    inbox.store_wechat_message("msg:1", message)
    inbox.store_wechat_message("msg:1", {**message, "text": "again"})
    inbox.store_wechat_message("msg:2", message)
    inbox.mark_wechat_done("msg:2")
    assert BotUpdate.select().count() == 2 and state("msg:2", inbox.WECHAT) == ("done", 0)
    # when the recovery looks while WeChat may still retry, then it claims nothing
    assert inbox.claim_stale_wechat(10) == []
    # and later it claims the unanswered one only, as first stored, and no Telegram update
    inbox.store_telegram_update({"update_id": 9})
    later = utcnow() + dt.timedelta(seconds=inbox.STALE_AFTER_S + 1)
    (row,) = inbox.claim_stale_wechat(10, now=later)
    assert (row.update_key, row.payload, row.attempts) == ("msg:1", message, 1)
    assert inbox.queued_exists(inbox.TELEGRAM) and inbox.queued_exists(inbox.WECHAT)
