"""models.outbox: outgoing messages written once per key, claimed with a lease, every try
recorded, and the state machine's retries and failures."""

from __future__ import annotations

import datetime as dt

import pytest

from models import outbox
from models.chat import OutboundAttempt, OutboundMessage
from models.db import utcnow

TG = "telegram"


def message(key: str, chat: str = "1001", **kw) -> outbox.NewMessage:  # noqa: ANN003
    return outbox.NewMessage(key, TG, chat, "private", outbox.encode_payload({"text": key}), **kw)


def row(key: str) -> OutboundMessage:
    return OutboundMessage.get(OutboundMessage.key == key)


def tried(claimed: outbox.Claimed, outcome: str, *, status: str = "200", retry_after: float | None = None,
          at: dt.datetime | None = None) -> outbox.Try:
    return outbox.Try(claimed.id, claimed.token, claimed.attempts + 1, outcome, status,
                      None if outcome == "sent" else f"{status} error", retry_after, at or utcnow())


def test_a_key_is_written_once(conn) -> None:  # noqa: ANN001
    assert outbox.write([message("notice:1"), message("notice:2")]) == 2
    assert outbox.write([message("notice:1"), message("notice:3")]) == 1
    assert outbox.states(["notice:1", "notice:3", "never"]) == {"notice:1": "pending", "notice:3": "pending"}
    with pytest.raises(ValueError, match="idempotency key"):
        outbox.write([message("")])


def test_a_private_message_may_not_go_to_a_group() -> None:
    with pytest.raises(ValueError, match="private chat"):
        outbox.check("-100", "group", {"text": "卡密", "private": True})
    assert outbox.check("1", "private", {"text": "卡密", "private": True}) == {"text": "卡密", "private": True}


def test_a_claimed_row_is_not_claimed_again_until_its_lease_runs_out(conn) -> None:  # noqa: ANN001
    # given a claimed message
    outbox.write([message("a")])
    (first,) = outbox.claim(TG, 10)
    # when another sender claims, then it gets nothing while the lease holds
    assert outbox.claim(TG, 10) == []
    # and once the lease ran out (the first sender died) it is claimed again, and the dead
    # claim's record is refused
    OutboundMessage.update(claimed_at=utcnow() - dt.timedelta(seconds=outbox.LEASE_S + 1)).execute()
    (second,) = outbox.claim(TG, 10)
    assert second.id == first.id and second.token != first.token
    statements, _ = outbox.plan_record([tried(first, "sent")], [], [5])
    outbox.apply(statements)
    assert (row("a").state, row("a").attempts) == ("sending", 0)


def test_recording_sends_retries_failures_and_deferrals(conn) -> None:  # noqa: ANN001
    # given four claimed messages
    outbox.write([message(k, chat=str(i)) for i, k in enumerate(["ok", "slow", "gone", "later"])])
    claimed = {c.key: c for c in outbox.claim(TG, 10)}
    at = utcnow()
    # when one was sent, one hit a 429, one a permanent error and one was deferred untried
    tries = [tried(claimed["ok"], "sent", at=at), tried(claimed["slow"], "retry_after", status="429",
                                                       retry_after=3.0, at=at),
             tried(claimed["gone"], "permanent", status="403", at=at)]
    due = at + dt.timedelta(seconds=1)
    statements, states = outbox.plan_record(tries, [(claimed["later"].id, claimed["later"].token, due)], [5, 30])
    outbox.apply(statements)
    # then each is in its next state, with an attempt per try and none for the deferred one
    assert states == ["sent", "pending", "failed"]
    assert outbox.states(list(claimed)) == {"ok": "sent", "slow": "pending", "gone": "failed", "later": "pending"}
    assert row("slow").not_before == at + dt.timedelta(seconds=3) and row("slow").attempts == 1
    assert row("later").attempts == 0 and row("later").not_before == due
    assert OutboundAttempt.select().count() == 3
    assert outbox.next_due(TG) == min(due, at + dt.timedelta(seconds=3))


def test_the_next_state_of_a_failed_try() -> None:
    assert outbox.next_state("retry_after", 1, 2.5, [5]) == ("pending", 2.5)
    assert outbox.next_state("transient", 2, None, [5, 30]) == ("pending", 30.0)
    assert outbox.next_state("transient", 3, None, [5, 30]) == ("failed", 0.0)  # the backoff ran out
    assert outbox.next_state("retry_after", outbox.MAX_ATTEMPTS, 1.0, [5]) == ("failed", 0.0)
    assert outbox.next_state("permanent", 1, None, [5]) == ("failed", 0.0)
