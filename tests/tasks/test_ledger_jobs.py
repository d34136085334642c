"""The ledger verification job (tasks/ledger.py): one at a time under a fixed job id, even when
two requests queue it at the same moment; the result (ok or the problems, truncated, with who
asked and when) kept in Redis for a week; a run whose job vanished shows as interrupted."""

from __future__ import annotations

import threading
import time

import pytest

from models import ledger
from models.db import db, execute
from models.errors import Conflict
from tasks import ledger as verification
from tests.factories import earn, named


def unbalanced(n: int) -> None:
    """n transactions whose single entry does not balance (written behind the services' back)."""
    with db.connection_context(), db.atomic():
        for i in range(n):
            execute("INSERT INTO ledger_transaction (key, kind, memo, created_at) VALUES (%s, %s, %s, %s)",
                    (f"broken:{i:03d}", "test", "", "2025-01-01 00:00:00"))
            txn = execute("SELECT id FROM ledger_transaction WHERE key = %s", (f"broken:{i:03d}",)).fetchone()[0]
            execute("INSERT INTO posting (txn_id, account, amount_fen) VALUES (%s, %s, %s)", (txn, ledger.SALES, 1))


def test_a_healthy_ledger_is_verified_ok_and_the_result_is_kept_a_week(rt, run_jobs):
    # given a healthy (empty) ledger and a verification queued by someone
    began = int(time.time())
    assert verification.queue_verification("fin-1") == verification.JOB_ID
    assert verification.verification_status()["state"] == "queued"
    # when the worker runs it
    assert run_jobs() == 1
    # then the result says OK, who asked and when, and expires in a week
    status = verification.verification_status()
    assert (status["state"], status["ok"], status["by"], status["unbalanced"], status["problems"]) == (
        "done", True, "fin-1", [], [])
    assert began <= status["queued_at"] <= status["started_at"] <= status["finished_at"] <= time.time()
    assert 0 < rt.redis.ttl(verification.RESULT_KEY) <= verification.RESULT_TTL_S


def test_problems_are_kept_truncated_with_their_counts(rt, run_jobs):
    # given more unbalanced transactions than the result keeps, and a settlement mismatch
    unbalanced(verification.SHOWN + 7)
    earn(named("orphan-earning"), 5_000)
    # when the verification runs
    verification.queue_verification("fin-2")
    run_jobs()
    # then the first SHOWN keys are kept, with the true count, and the settlement problem
    status = verification.verification_status()
    assert status["state"] == "done" and status["ok"] is False
    assert len(status["unbalanced"]) == verification.SHOWN and status["unbalanced_count"] == verification.SHOWN + 7
    assert set(status["unbalanced"]) <= {f"broken:{i:03d}" for i in range(verification.SHOWN + 7)}
    assert "commission expense 5000 fen, but live commission lines sum to 0" in status["problems"]
    assert status["problem_count"] == len(status["problems"]) >= 1


def test_two_requests_at_the_same_moment_queue_one_verification(rt):
    # given many requests to verify arriving at once
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def click(i: int) -> None:
        start.wait()
        try:
            verification.queue_verification(f"op-{i}")
            outcomes.append("queued")
        except Conflict:
            outcomes.append("refused")

    threads = [threading.Thread(target=click, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then exactly one was queued, the rest refused
    assert sorted(outcomes) == ["queued"] + ["refused"] * 7
    assert rt.queue.job_ids == [verification.JOB_ID]
    # and while it waits, a later request is refused too
    with pytest.raises(Conflict) as refused:
        verification.queue_verification("late")
    assert refused.value.code == "verify_running"
    assert rt.queue.count == 1


def test_a_verification_whose_job_vanished_shows_interrupted_and_may_be_queued_again(rt, run_jobs):
    # given a queued verification whose job record is lost (a flushed queue, a dead worker)
    verification.queue_verification("fin-3")
    rt.queue.empty()
    rt.redis.delete(f"rq:job:{verification.JOB_ID}")
    # then its state is interrupted
    assert verification.verification_status()["state"] == "interrupted"
    # and a new one can be queued and runs
    verification.queue_verification("fin-4")
    assert run_jobs() == 1
    status = verification.verification_status()
    assert (status["state"], status["ok"], status["by"]) == ("done", True, "fin-4")
