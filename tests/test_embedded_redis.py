"""The embedded Redis (REDIS_URL unset) is shared by every process on one data directory and
stopped only by the process that started it. Real processes and a real redis-server; each test
uses a data directory of its own, never the session's Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis

# What every `qianxing` command does with REDIS_URL unset (qianxing.wiring.redis_url), on a
# data directory given as argv[1]: start or join, print the URL and whether it owns the server,
# then wait for a line on stdin and exit normally (atexit runs).
PROCESS = """
import sys
from pathlib import Path
from redis import Redis
from qianxing.embedded_redis import start_or_join
embedded = start_or_join(Path(sys.argv[1]))
client = Redis.from_url(embedded.url)
client.incr("visits")
print(embedded.url, "owner" if embedded.owner else "joined", flush=True)
sys.stdin.readline()
"""


class Proc:
    def __init__(self, data_dir: Path, *, wait: bool = True) -> None:
        self.popen = subprocess.Popen([sys.executable, "-c", PROCESS, str(data_dir)], text=True,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      cwd=Path(__file__).resolve().parents[1])
        if wait:
            self.started()

    def started(self) -> None:
        line = self.popen.stdout.readline().split()
        assert len(line) == 2, f"process failed (exit {self.popen.poll()})"
        self.url, self.role = line

    def exit(self) -> int:
        self.popen.stdin.write("\n")
        self.popen.stdin.flush()
        return self.popen.wait(timeout=30)


def answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except (redis.RedisError, OSError):
        return False


def server_pid(data_dir: Path) -> int:
    registry = json.loads((data_dir / "redis.db.settings").read_text())
    return int(Path(registry["pidfile"]).read_text())


@pytest.fixture
def data_dir(tmp_path: Path):
    yield tmp_path / "redis"
    # never leave a server behind, whatever a test did
    registry = tmp_path / "redis" / "redis.db.settings"
    if registry.exists():
        try:
            os.kill(server_pid(tmp_path / "redis"), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def test_a_command_beside_the_owner_leaves_the_server_running(data_dir):
    # given a process that started the embedded Redis (what `qianxing run` does)
    owner = Proc(data_dir)
    assert owner.role == "owner"
    try:
        # when other processes on the same settings join it and exit (seed-demo, chat, settle...)
        for _ in range(2):
            other = Proc(data_dir)
            assert other.role == "joined" and other.url == owner.url
            assert other.exit() == 0
            # then the server still answers, with the data of all of them
            assert answers(owner.url)
        assert int(redis.Redis.from_url(owner.url).get("visits")) == 3
    finally:
        # when the owner exits
        assert owner.exit() == 0
    # then the server stops and its record is gone
    assert not answers(owner.url)
    assert not (data_dir / "redis.db.settings").exists()


def test_the_next_process_starts_a_new_server_after_the_owner_exited(data_dir):
    first = Proc(data_dir)
    assert first.exit() == 0
    # given the owner exited (the server saved its data on shutdown)
    # when a process needs the embedded Redis again
    second = Proc(data_dir)
    try:
        # then it starts and owns a new server, with the data kept
        assert second.role == "owner" and answers(second.url)
        assert int(redis.Redis.from_url(second.url).get("visits")) == 2
    finally:
        second.exit()
    assert not answers(second.url)


def test_a_stale_socket_of_a_crashed_server_is_recovered(data_dir):
    # given an owner whose server was killed (kill -9: socket, pid file and record stay behind)
    owner = Proc(data_dir)
    pid = server_pid(data_dir)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (data_dir / "redis.db.settings").exists() and not answers(owner.url)
    # when another process needs the embedded Redis
    other = Proc(data_dir)
    try:
        # then it starts a fresh server instead of joining the dead one
        assert other.role == "owner" and other.url != owner.url and answers(other.url)
        # and the old owner's exit does not stop the new server
        assert owner.exit() == 0
        assert answers(other.url)
    finally:
        assert other.exit() == 0
    assert not answers(other.url)


def test_processes_starting_together_share_one_server(data_dir):
    # when four processes need the embedded Redis at the same moment
    procs = [Proc(data_dir, wait=False) for _ in range(4)]
    try:
        for proc in procs:
            proc.started()
        # then exactly one started a server and the others joined that one
        assert sorted(p.role for p in procs) == ["joined", "joined", "joined", "owner"]
        assert len({p.url for p in procs}) == 1
        assert int(redis.Redis.from_url(procs[0].url).get("visits")) == 4
        # and the joiners' exits leave it running; the owner's stops it
        owner = next(p for p in procs if p.role == "owner")
        for proc in procs:
            if proc is not owner:
                assert proc.exit() == 0
        assert answers(owner.url)
    finally:
        for proc in procs:
            if proc.popen.poll() is None:
                proc.exit()
    assert not answers(procs[0].url)
