"""The model call log (models/ai_calls.py): rows written and read back, a database failure that
never raises, the retention prune in batches (with the prune job), and the usage figures the
admin shows (per Beijing day, by outcome and purpose; top creators; yuan from milli-fen)."""

from __future__ import annotations

import datetime as dt

import pytest

from models import ai_calls
from models.ai_calls import AICall, CallRow
from models.db import db, utcnow
from tasks import ai_calls as ai_call_jobs
from tasks.periodic import PERIODIC, resolve
from tests.factories import ai_call, ai_call_rows


@pytest.fixture(autouse=True)
def empty_log(rt):  # noqa: ANN001, ANN201
    yield


def test_a_row_is_written_and_read_back(rt):
    # given one call's figures
    row = CallRow(kind="chat", outcome="ok", model="m", purpose="script", creator_id=7, latency_ms=120,
                  prompt_tokens=300, completion_tokens=80, cost_mfen=4600)
    # when recorded without an open connection (the provider's case in a bot thread)
    assert db.is_closed()
    assert ai_calls.record(row) is True
    # then it is stored as given, and the connection it opened was closed again
    assert db.is_closed()
    (stored,) = ai_call_rows()
    assert (stored.kind, stored.outcome, stored.model, stored.purpose, stored.creator_id) == (
        "chat", "ok", "m", "script", 7)
    assert (stored.latency_ms, stored.prompt_tokens, stored.completion_tokens, stored.cost_mfen) == (120, 300, 80, 4600)
    assert isinstance(stored.cost_mfen, int)


def test_long_labels_are_clipped_and_negative_figures_floored(rt):
    # given a purpose and model name longer than the columns, and nonsense negative figures
    ai_call(purpose="p" * 100, model="m" * 300, latency_ms=-5, cost_mfen=-1)
    # then the row is stored clipped and floored at zero
    (stored,) = ai_call_rows()
    assert stored.purpose == "p" * ai_calls.PURPOSE_MAX and len(stored.model) == ai_calls.MODEL_MAX
    assert stored.latency_ms == 0 and stored.cost_mfen == 0


def test_inside_a_failed_caller_transaction_the_row_goes_with_it_but_nothing_raises(rt):
    # given a caller's transaction in which the call is logged, then rolled back by the caller
    with db.connection_context():
        with db.atomic() as tx:
            assert ai_calls.record(CallRow(kind="chat", outcome="ok")) is True
            tx.rollback()
        # when the caller goes on in the same connection
        ai_calls.record(CallRow(kind="embed", outcome="ok"))
    # then only the row logged outside the rolled-back transaction remains
    assert [r.kind for r in ai_call_rows()] == ["embed"]


def test_a_database_that_refuses_the_row_does_not_raise(rt, caplog):
    # given a row the database refuses (a creator id beyond a 64-bit integer)
    bad = CallRow(kind="chat", outcome="ok", creator_id=2**70)
    # when recorded / then False and a warning, never an exception; the next row is fine
    assert ai_calls.record(bad) is False
    assert "ai call log: row not written" in caplog.text
    assert ai_calls.record(CallRow(kind="chat", outcome="ok")) is True
    assert len(ai_call_rows()) == 1


def test_creator_key():
    assert ai_calls.creator_key(7) == 7
    assert ai_calls.creator_key("12") == 12
    assert ai_calls.creator_key("tg:12") is None
    assert ai_calls.creator_key(None) is None
    assert ai_calls.creator_key(True) is None


def test_prune_deletes_old_rows_in_batches_and_twice_changes_nothing(rt):
    # given 5 rows 100 days old, one 89 days old and one today
    now = utcnow()
    for _ in range(5):
        ai_call(at=now - dt.timedelta(days=100))
    ai_call(at=now - dt.timedelta(days=89), purpose="recent")
    ai_call(at=now, purpose="today")
    # when pruned at 90 days, 2 rows per transaction
    with db.connection_context():
        deleted = ai_calls.prune(90, now=now, batch=2)
        again = ai_calls.prune(90, now=now, batch=2)
    # then the 5 old rows went (in 3 batches) and the others stay; a second run deletes nothing
    assert (deleted, again) == (5, 0)
    assert sorted(r.purpose for r in ai_call_rows()) == ["recent", "today"]


def test_prune_refuses_nonsense():
    with pytest.raises(ValueError):
        ai_calls.prune(0)


def test_the_daily_job_prunes_with_the_settings(rt, monkeypatch):
    # given the job among the periodic ones, a keep of 30 days, and rows of 31 and 29 days ago
    assert ("tasks.ai_calls.prune_calls", 86400) in PERIODIC
    assert resolve("tasks.ai_calls.prune_calls") is ai_call_jobs.prune_calls
    monkeypatch.setattr(rt.settings, "AI_CALL_KEEP_DAYS", 30)
    now = utcnow()
    ai_call(at=now - dt.timedelta(days=31), purpose="old")
    ai_call(at=now - dt.timedelta(days=29), purpose="kept")
    # when the job runs / then only the old row is gone
    assert ai_call_jobs.prune_calls(now=now) == 1
    assert [r.purpose for r in ai_call_rows()] == ["kept"]


def test_usage_per_beijing_day_by_outcome_purpose_and_kind(rt):
    # given calls at 23:30 and 00:30 Beijing time on either side of midnight (15:30 / 16:30 UTC)
    day = dt.date(2026, 3, 1)
    start, _ = ai_calls.day_bounds(day)
    assert start == dt.datetime(2026, 2, 28, 16, 0)
    before, after = start - dt.timedelta(minutes=30), start + dt.timedelta(minutes=30)
    ai_call(at=before, purpose="answer", prompt_tokens=10, cost_mfen=5)
    ai_call(at=after, purpose="answer", prompt_tokens=100, completion_tokens=20, cost_mfen=1500)
    ai_call(at=after, purpose="answer", outcome="cached")
    ai_call(at=after, purpose="answer", outcome="cached")
    ai_call(at=after, purpose="script", outcome="timeout")
    ai_call(at=after, kind="embed", purpose="hook", prompt_tokens=40, cost_mfen=40)
    # when the two days are read
    with db.connection_context():
        prev, this = ai_calls.usage_by_day([day - dt.timedelta(days=1), day])
    # then each call is counted on its Beijing day
    assert (prev.calls, prev.prompt_tokens, prev.cost_mfen) == (1, 10, 5)
    assert this.calls == 5 and this.prompt_tokens == 140 and this.completion_tokens == 20
    assert this.cost_mfen == 1540
    assert this.by_outcome == {"ok": 2, "cached": 2, "timeout": 1}
    assert this.by_purpose == {"answer": 3, "script": 1, "hook": 1}
    assert this.by_kind == {"chat": 4, "embed": 1}
    assert this.cache_hit_bp == 6666  # 2 cached of 3 answered chat calls (the embedding is not one)
    assert ai_calls.DayUsage(day).cache_hit_bp is None


def test_top_creators_count_quota_calls_of_the_day(rt):
    # given creator 1 with 3 model calls and 1 cached answer today, creator 2 with 1 call, and
    # creator 3 with calls only yesterday, and a call without a creator
    now = utcnow()
    for _ in range(3):
        ai_call(creator_id=1, cost_mfen=100)
    ai_call(creator_id=1, outcome="cached")
    ai_call(creator_id=2, outcome="quota")
    ai_call(creator_id=3, at=now - dt.timedelta(days=2))
    ai_call(creator_id=None)
    # when today's top creators are read / then creator 1 first, then 2; cached and old ones not counted
    with db.connection_context():
        top = ai_calls.top_creators(ai_calls.beijing_day(now))
    assert top == [(1, 3, 300), (2, 1, 0)]


@pytest.mark.parametrize(("mfen", "yuan"), [(0, "0.00"), (1, "0.01"), (1000, "0.01"), (1001, "0.02"),
                                              (123_456, "1.24"), (100_000, "1.00")])
def test_yuan_from_milli_fen_rounds_up_to_the_fen(mfen, yuan):
    assert ai_calls.mfen_to_yuan(mfen) == yuan


def test_no_prompt_column():
    # the log has no column that could hold a prompt or an answer
    assert not {"prompt", "messages", "content", "answer", "key"} & set(AICall._meta.columns)
