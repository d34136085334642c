"""The ledger checks (`qianxing ledger verify`) as a job, with the latest result in Redis for the
admin page.

Like the key rotation (tasks/vault.py): the admin's button calls `queue_verification`, the
worker runs `verify_ledger`, which runs `models.ledger_reading.verify` and writes the outcome
(ok, the first problems found and how many there were, who asked, when it was queued, started
and finished) to one Redis hash kept for a week; `verification_status` reads it back together
with what RQ says about the job, so a run whose worker died shows as interrupted. One
verification at a time: the job has a fixed id, and queueing takes a short lock so two clicks
at the same moment cannot both pass the "is one running?" check. The CLI stays synchronous.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from models import ledger_reading
from models.db import connection
from tasks import singleton

log = logging.getLogger(__name__)

JOB = "tasks.ledger.verify_ledger"
JOB_ID = "ledger-verify"
RESULT_KEY = "qianxing:ledger:verify"
RESULT_TTL_S = 7 * 24 * 3600
TIMEOUT_S = 3600
SHOWN = 50  # problems of each kind kept in the result
TEXT_MAX = 300  # characters kept of each problem


def _write(**fields: object) -> None:
    singleton.write_state(RESULT_KEY, RESULT_TTL_S, "ledger verify", **fields)


def queue_verification(requested_by: str) -> str:
    """Queue the verification job; returns its id. Raises Conflict when one is already queued or
    running (or being queued by another click this very moment), RedisError when Redis is down."""
    return singleton.queue_once(
        JOB, JOB_ID, requested_by, who=requested_by, state_key=RESULT_KEY,
        write_queued=lambda: _write(state="queued", by=requested_by, queued_at=int(time.time())),
        timeout_s=TIMEOUT_S, ttl_s=RESULT_TTL_S, busy="a ledger verification is already queued or running",
        code="verify_running")


def _kept(items: list[str]) -> str:
    return json.dumps([str(i)[:TEXT_MAX] for i in items[:SHOWN]], ensure_ascii=False)


def verify_ledger(requested_by: str) -> bool:
    """The job: the checks of `qianxing ledger verify` (every transaction balances; commission
    lines, settlement states and creators' balances agree with the ledger). Stores the outcome
    and returns whether the ledger is OK."""
    _write(state="running", by=requested_by, started_at=int(time.time()), error="")
    try:
        with connection():
            result = ledger_reading.verify()
    except Exception as exc:
        _write(state="failed", finished_at=int(time.time()), error=type(exc).__name__)
        raise
    _write(state="done", finished_at=int(time.time()), ok=int(result.ok),
           unbalanced=_kept(result.unbalanced), unbalanced_count=len(result.unbalanced),
           problems=_kept(result.problems), problem_count=len(result.problems))
    log.info("ledger verify for %s: %s (%d unbalanced, %d problems)", requested_by,
             "ok" if result.ok else "PROBLEMS", len(result.unbalanced), len(result.problems))
    return result.ok


def verification_status() -> dict[str, Any]:
    """The latest verification as the admin shows it: state (none, queued, running, done, failed,
    interrupted, or unknown when Redis cannot be read), who asked, the times (epoch seconds, 0 =
    not yet), and once done: ok, the first unbalanced keys and problems, and their counts."""
    data = singleton.read_state(RESULT_KEY, JOB_ID)
    if data is None:
        return {"state": "unknown", "ok": False, "unbalanced": [], "problems": [], "unbalanced_count": 0,
                "problem_count": 0, "by": "", "queued_at": 0, "started_at": 0, "finished_at": 0, "error": ""}
    state = data["state"]
    return {"state": state, "ok": state == "done" and data.get("ok") == "1",
            "unbalanced": json.loads(data.get("unbalanced") or "[]"),
            "problems": json.loads(data.get("problems") or "[]"),
            "unbalanced_count": int(data.get("unbalanced_count") or 0),
            "problem_count": int(data.get("problem_count") or 0), "by": data.get("by", ""),
            "queued_at": int(data.get("queued_at") or 0), "started_at": int(data.get("started_at") or 0),
            "finished_at": int(data.get("finished_at") or 0), "error": data.get("error", "")}
