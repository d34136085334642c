"""Vault key rotation as a job, with its progress in Redis for the admin page.

The owner starts it from the admin (`queue_rotation`); the worker runs `rotate_keys`, which calls
`models.vault.rotate_key` (batches that each commit; restartable: a killed run simply leaves
rows for the next one) and writes after every batch how far it got. `rotation_status` reads that
back, together with what RQ says about the job, so a run whose worker died shows as interrupted
and may be started again. One rotation at a time: the job has a fixed id. Nothing here is
periodic.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from models import lottery, operators, vault
from models.db import connection
from tasks import singleton

log = logging.getLogger(__name__)

JOB = "tasks.vault.rotate_keys"
JOB_ID = "vault-rotate-key"
PROGRESS_KEY = "qianxing:vault:rotation"
PROGRESS_TTL_S = 7 * 24 * 3600
TIMEOUT_S = 6 * 3600


def _write(**fields: object) -> None:
    singleton.write_state(PROGRESS_KEY, PROGRESS_TTL_S, "vault rotation", **fields)


def queue_rotation(operator: str) -> str:
    """Queue the rotation job. Raises Conflict when one is already waiting or running."""
    return singleton.queue_once(
        JOB, JOB_ID, who=operator, state_key=PROGRESS_KEY,
        write_queued=lambda: _write(state="queued", by=operator, queued_at=int(time.time()), total=0, done=0,
                                    target=vault.cipher().current_id),
        timeout_s=TIMEOUT_S, ttl_s=PROGRESS_TTL_S, busy="a key rotation is already queued or running",
        code="rotation_running")


def rotate_keys() -> int:
    """The job: re-encrypt every secret not sealed with the current VOUCHER_KEY, recording
    progress after each batch. Returns how many secrets were re-encrypted."""
    _write(state="running", started_at=int(time.time()), target=vault.cipher().current_id, error="")
    try:
        with connection():
            _write(total=vault.rotation_pending(), done=0)
            rotated = vault.rotate_key(progress=lambda done: _write(done=done))
            rotated += operators.reseal_totp_secrets()  # the operators' TOTP secrets, sealed alike
            rotated += lottery.reseal_seeds()  # the live lotteries' secret seeds, sealed alike
    except Exception as exc:
        _write(state="failed", finished_at=int(time.time()), error=type(exc).__name__)
        raise
    _write(state="done", done=rotated, finished_at=int(time.time()))
    log.info("vault rotation: re-encrypted %d secrets with key %s", rotated, vault.cipher().current_id)
    return rotated


def rotation_status() -> dict[str, Any]:
    """The last rotation as the admin shows it: state (none, queued, running, done, failed,
    interrupted), target key id, total, done, percent, who started it and when."""
    data = singleton.read_state(PROGRESS_KEY, JOB_ID)
    if data is None:
        return {"state": "unknown", "total": 0, "done": 0, "percent": 0}
    state = data["state"]
    total, done = int(data.get("total") or 0), int(data.get("done") or 0)
    percent = 100 if state == "done" else (min(99, done * 100 // total) if total else 0)
    return {"state": state, "target": data.get("target", ""), "total": total, "done": done, "percent": percent,
            "by": data.get("by", ""), "queued_at": int(data.get("queued_at") or 0),
            "finished_at": int(data.get("finished_at") or 0), "error": data.get("error", "")}
