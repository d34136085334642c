"""Jobs that run one at a time under a fixed id, queued by an operator's button (the vault key
rotation, the ledger verification), with their state in a Redis hash the admin page reads.

`queue_once` takes a short lock for the check-and-enqueue, so two clicks at the same moment
cannot both pass the "is one running?" check; a finished run's RQ record is dropped so it never
blocks the next one; the state hash is reset before the enqueue (a fast worker's first write
must survive). `write_state` records the job's state hash (a Redis hiccup never stops the job);
`read_state` reads it back and calls a queued or running state with no live RQ job behind it
interrupted (its worker died).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from redis.exceptions import RedisError
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

from models.errors import Conflict
from tasks.context import runtime

log = logging.getLogger(__name__)
ACTIVE = frozenset(s.value for s in (JobStatus.CREATED, JobStatus.QUEUED, JobStatus.SCHEDULED,
                                     JobStatus.DEFERRED, JobStatus.STARTED))


def status(job_id: str) -> str | None:
    """RQ's status of the job (None: no such job)."""
    try:
        found = Job.fetch(job_id, connection=runtime().redis).get_status()
    except NoSuchJobError:
        return None
    return str(found.value if hasattr(found, "value") else found) if found else None


def active(job_id: str) -> bool:
    return status(job_id) in ACTIVE


def queue_once(func: str, job_id: str, *args: object, who: str, state_key: str,
               write_queued: Callable[[], None], timeout_s: int, ttl_s: int, busy: str, code: str) -> str:
    """Queue `func(*args)` as job `job_id` unless one is queued or running (Conflict `code`
    with the message `busy`). Redis errors go to the caller."""
    rt = runtime()
    lock = f"{state_key}:queueing"
    if not rt.redis.set(lock, who, nx=True, ex=10):
        raise Conflict(busy, code=code)
    try:
        if active(job_id):
            raise Conflict(busy, code=code)
        try:
            Job.fetch(job_id, connection=rt.redis).delete()  # a finished run's record must not block a new one
        except NoSuchJobError:
            pass
        rt.redis.delete(state_key)
        write_queued()
        try:
            rt.queue.enqueue(func, *args, job_id=job_id, unique=True, job_timeout=timeout_s, result_ttl=ttl_s,
                             failure_ttl=ttl_s)
        except DuplicateJobError:
            raise Conflict(busy, code=code) from None
    finally:
        rt.redis.delete(lock)
    return job_id


def write_state(key: str, ttl_s: int, what: str, **fields: object) -> None:
    """Record fields of a job's state hash; a Redis hiccup must not stop the job itself (`what`
    names the job in the warning)."""
    try:
        pipe = runtime().redis.pipeline(transaction=False)
        pipe.hset(key, mapping={k: str(v) for k, v in fields.items()})
        pipe.expire(key, ttl_s)
        pipe.execute()
    except RedisError as exc:
        log.warning("%s: state not recorded (%s)", what, exc)


def read_state(key: str, job_id: str) -> dict[str, str] | None:
    """A job's state hash as the admin shows it, with `state` defaulting to "none" and set to
    "interrupted" when it says queued or running but RQ has no such live job (the worker died
    under it, or the job record expired); None when Redis cannot be read."""
    try:
        raw = runtime().redis.hgetall(key)
        job = status(job_id)
    except RedisError:
        return None
    data = {k.decode(): v.decode() for k, v in raw.items()}
    data.setdefault("state", "none")
    if data["state"] in ("queued", "running") and job not in ACTIVE:
        data["state"] = "interrupted"
    return data
