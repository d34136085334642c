"""How the worker's processes outlive outages and each other: capped backoff while Redis is
unreachable, children that end with their worker (also on kill -9 of the worker), and the
scheduler lock of a dead worker taken over at once (see tasks/worker.py for the whole story)."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable

import psutil
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.scheduler import RQScheduler
from rq.scripts import release_lock

log = logging.getLogger(__name__)

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)
PR_SET_PDEATHSIG = 1


class Backoff:
    """Capped exponential backoff: 0.5, 1, 2, 4 ... up to `cap` seconds."""

    def __init__(self, cap: float, first: float = 0.5) -> None:
        self.cap, self.first, self.wait = cap, min(first, cap), min(first, cap)

    def next(self) -> float:
        wait, self.wait = self.wait, min(self.wait * 2, self.cap)
        return wait

    def reset(self) -> None:
        self.wait = self.first


def where(redis: Redis) -> str:
    """host:port/db (or the socket) of a client, for log lines; never the password."""
    kw = redis.connection_pool.connection_kwargs
    place = kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"
    return f"{place}/{kw.get('db', 0)}"


def redis_unreachable(redis: Redis, exc: BaseException, wait: float, who: str = "worker") -> None:
    log.warning("Redis unreachable at %s (%s: %s); %s retrying in %.1f s",
                where(redis), type(exc).__name__, exc, who, wait)


def nap(seconds: float, stop: Callable[[], bool]) -> None:
    """Sleep, waking early when `stop()` turns true (a signal handler sets it)."""
    end = time.monotonic() + seconds
    while not stop():
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.2))


def die_with_parent(parent_pid: int) -> None:
    """In a child: ask the kernel for SIGTERM when the parent dies (Linux), and stop at once
    if it already died before this call. Children also poll `orphaned` (other systems, and a
    belt to the braces)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - exotic libc
            log.debug("prctl(PR_SET_PDEATHSIG) unavailable; polling the parent pid instead")
    if orphaned(parent_pid):
        os.kill(os.getpid(), signal.SIGTERM)


def orphaned(parent_pid: int) -> bool:
    return os.getppid() != parent_pid


def pid_alive(pid: int) -> bool:
    """True for a running process (a zombie, killed and not yet reaped, counts as dead)."""
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


# ---- the scheduler (retries, delayed jobs) -----------------------------------------------------


def scheduler_name(worker_pid: int) -> str:
    """`host/worker pid/random`: what RQ stores in its scheduler lock, so a new worker can tell
    that the lock's holder belonged to a worker that is dead."""
    return f"{socket.gethostname()}/{worker_pid}/{uuid.uuid4().hex[:8]}"


def worker_of(name: str) -> tuple[str, int] | None:
    host, _, rest = name.rpartition("/")
    host, _, pid = host.rpartition("/")
    if not host or not pid.isdigit() or not rest:
        return None
    return host, int(pid)


class Scheduler(RQScheduler):
    """RQ's scheduler process, made to end with its worker (also on kill -9 of the worker)
    and to ride out Redis outages instead of dying on the first connection error."""

    parent_pid = 0
    retry_max_s = 5.0

    def work(self) -> None:
        die_with_parent(self.parent_pid)
        self._install_signal_handlers()
        backoff, born = Backoff(self.retry_max_s), False
        while not self._stop_requested and not orphaned(self.parent_pid):
            try:
                if not born:
                    self.register_birth()
                    born = True
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()
                self.enqueue_scheduled_jobs()
                backoff.reset()
                wait = float(self.interval)
            except REDIS_DOWN as exc:
                wait = backoff.next()
                redis_unreachable(self.connection, exc, wait, "scheduler")
            nap(wait, lambda: self._stop_requested)
        try:
            self.stop()  # gives the lock up: the next worker's scheduler starts at once
        except RedisError:
            pass


def take_over_dead_scheduler_locks(redis: Redis, queue_names: list[str]) -> list[str]:
    """Clear RQ scheduler locks held for a worker on this host that is no longer running (a
    kill -9 whose scheduler child could not give the lock up; RQ would wait out the lock's
    61 s TTL, and meanwhile nobody would move retries and delayed jobs to the queue).
    Locks of live workers, of other hosts, or not named by us are left alone."""
    cleared = []
    host = socket.gethostname()
    for queue in queue_names:
        key = RQScheduler.get_locking_key(queue)
        holder = redis.get(key)
        owner = worker_of(holder.decode(errors="replace")) if holder else None
        if owner is None or owner[0] != host or pid_alive(owner[1]):
            continue
        if release_lock(redis, key, holder.decode()):
            log.info("took over the scheduler lock of queue %s from dead worker pid %s", queue, owner[1])
            cleared.append(queue)
    return cleared
