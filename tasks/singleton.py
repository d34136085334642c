"""Jobs that run one at a time under a fixed id, queued by an operator's button (the vault key
rotation, the ledger verification), with their state in a Redis hash the admin page reads.

`queue_once` takes a short lock for the check-and-enqueue, so two clicks at the same moment
cannot both pass the "is one running?" check; a finished run's RQ record is dropped so it never
blocks the next one; the state hash is reset before the enqueue (a fast worker's first write
must survive). `active(job_id)` tells a queued or running job from a finished or lost one, so a
run whose worker died shows as interrupted.
"""

from __future__ import annotations

from collections.abc import Callable

from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

from models.errors import Conflict
from tasks.context import runtime

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
