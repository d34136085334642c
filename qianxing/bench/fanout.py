"""`qianxing bench fanout --recipients N --rate R [--paid]`: one message to N chats through the
outbound sender against the fake Telegram Bot API, with 429s injected.

- The fake (tests/fakes/telegram_api.py, so run it from a checkout) serves on 127.0.0.1 in a
  child process of its own, so its HTTP handling does not share this process' interpreter
  lock with the sender; it records each delivered message with its arrival time.
- The configured rate R is the overall bucket (TELEGRAM_RATE_PER_S), or with --paid the
  paid-broadcast bucket (TELEGRAM_PAID_BROADCAST_PER_S) and `allow_paid_broadcast`.
- Failures: `--inject-429` single 429s with retry_after=1 spread over the run (each hits the
  next message to arrive), and the fake enforces a global limit `--fake-limit` x R in any
  one-second window (429 retry_after=1 beyond it), as Telegram's flood control would.
- The rows go to a scratch database (next to the PostgreSQL in DATABASE_URL, dropped
  afterwards; or a throwaway SQLite file under var/bench/) and the buckets to their own Redis
  keys, so a running service is not disturbed.

The sender runs as a worker would: `broadcast()` writes the rows in bulk, then `drain()`
sends until nothing is left. Measured at the fake: `sent` (distinct chats that received the
message), `duplicates` (chats that received it more than once), `lost` (N - sent),
`achieved_rate` (sent / (last arrival - first arrival)), `configured_rate`, `rate_ratio`.
The last line printed is one JSON object.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from qianxing.bench.harness import BENCH_DIR, ScratchDatabase
from qianxing.settings import Settings

TOKEN = "424242:BENCH-fanout_token_abcdefghijklmnopqrstu"  # noqa: S105 - the fake's, not a secret
ROOT = Path(__file__).resolve().parents[2]


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---- the fake Bot API in a child process -----------------------------------------------------


def _serve_fake(conn: Connection) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.fakes.telegram_api import FakeTelegramAPI

    fake = FakeTelegramAPI(TOKEN).start()
    conn.send(fake.base_url)
    while True:
        command, args = conn.recv()
        if command == "fail_next":
            fake.fail_next(**args)
            conn.send(None)
        elif command == "limit_rate":
            fake.limit_rate(*args)
            conn.send(None)
        elif command == "report":
            sends = [r for r in fake.requests if r.path.endswith(("/sendMessage", "/sendPhoto"))]
            conn.send({"sent": [(s.chat_id, s.at, s.params.get("allow_paid_broadcast")) for s in fake.sent],
                       "requests": len(sends)})
        elif command == "stop":
            fake.stop()
            conn.send(None)
            return


class FakeProcess:
    """A fake platform API in a spawned process, driven over a pipe (`call`, `stop`)."""

    def __init__(self) -> None:
        if not (ROOT / "tests" / "fakes" / "telegram_api.py").exists():
            raise RuntimeError("bench fanout runs from a checkout: tests/fakes/telegram_api.py is missing")
        self.spawn(_serve_fake, (), name="fake-telegram", what="the fake Bot API process")

    def spawn(self, target: Callable[..., None], args: tuple[Any, ...], *, name: str, what: str) -> None:
        """Start `target(*args, conn)` in a spawned process and wait for the base URL it sends."""
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(*args, child), daemon=True, name=name)
        self.proc.start()
        child.close()  # the child's end lives in the child only: its death is an EOFError here
        if not self.conn.poll(60):
            self.proc.kill()
            raise RuntimeError(f"{what} did not start")
        self.base_url: str = self.conn.recv()
        self._lock = threading.Lock()

    def call(self, command: str, args: Any = None) -> Any:
        with self._lock:
            self.conn.send((command, args))
            return self.conn.recv()

    def stop(self) -> None:
        try:
            self.call("stop")
        except (EOFError, OSError, BrokenPipeError):
            pass
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()


# ---- scratch database ------------------------------------------------------------------------


# ---- the run ---------------------------------------------------------------------------------


def _injector(fake: FakeProcess, times: int, duration: float, stop: threading.Event) -> threading.Thread:
    """Inject `times` single 429s (retry_after=1) spread over 10-70% of the expected run."""
    started = time.monotonic()

    def inject() -> None:
        for i in range(times):
            at = duration * (0.1 + 0.6 * i / max(times - 1, 1))
            if stop.wait(max(0.0, at - (time.monotonic() - started))):
                return
            fake.call("fail_next", {"error_code": 429, "retry_after": 1})

    thread = threading.Thread(target=inject, name="inject-429", daemon=True)
    thread.start()
    return thread


def run(settings: Settings, *, recipients: int, rate: float, paid: bool = False, inject_429: int = 5,
        fake_limit: float = 1.1, concurrency: int = 16, batch: int = 500,
        log: Callable[[str], None] = _log) -> dict[str, Any]:
    """Set up, fan out, measure; returns the result the CLI prints as its last line."""
    from redis import Redis

    from bots.buckets import Limits
    from bots.sender import Sender
    from models.db import db, execute, open_database
    from models.migrations import migrate
    from qianxing.wiring import redis_url

    if recipients < 1 or rate <= 0:
        raise ValueError("--recipients must be at least 1 and --rate above 0")
    fake = FakeProcess()
    scratch = ScratchDatabase(settings, "fanout")
    try:
        scratch.create()
        open_database(scratch.url)
        migrate()
        url, embedded = redis_url(settings)
        redis = Redis.from_url(url)
        prefix = f"qianxing:bench:{os.getpid()}:tb"
        rate_setting = "TELEGRAM_PAID_BROADCAST_PER_S" if paid else "TELEGRAM_RATE_PER_S"
        bench_settings = settings.model_copy(update={
            "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": fake.base_url.rstrip("/"), rate_setting: rate,
            "POSTER_DIR": str(BENCH_DIR / "posters")})
        limits = Limits.from_settings(bench_settings, prefix=prefix)
        sender = Sender(redis, bench_settings, limits=limits, schedule=lambda platform, at: None,
                        concurrency=concurrency)
        if fake_limit:
            fake.call("limit_rate", (rate * fake_limit, 1))
        chats = [str(10_000_000 + i) for i in range(recipients)]
        log(f"scratch database {scratch.name}; fake Bot API {fake.base_url} (limit {rate * fake_limit:.0f}/s); "
            f"{recipients} recipients at {rate:g}/s{' paid' if paid else ''}")
        with db.connection_context():
            t0 = time.perf_counter()
            message = {"text": "千星直播今晚 8 点开始，点击进入直播间"}
            sender.broadcast(f"bench-{os.getpid()}", chats, message, paid=paid)
            setup_s = time.perf_counter() - t0
            log(f"{recipients} rows written in {setup_s:.2f} s; draining")
            expected = recipients / rate
            stop = threading.Event()
            injector = _injector(fake, inject_429, expected, stop)
            t0 = time.perf_counter()
            stats = sender.drain("telegram", deadline_s=expected * 3 + 60, batch=batch)
            drain_s = time.perf_counter() - t0
            stop.set()
            injector.join(timeout=5)
            states = dict(execute("SELECT state, COUNT(*) FROM outbound_message GROUP BY state").fetchall())
            attempts = execute("SELECT COUNT(*) FROM outbound_attempt").fetchone()[0]
            statuses = dict(execute("SELECT status, COUNT(*) FROM outbound_attempt GROUP BY status").fetchall())
        report = fake.call("report")
        for key in redis.scan_iter(f"{prefix}:*"):
            redis.delete(key)
        if embedded is not None:
            embedded.stop()
    finally:
        fake.stop()
        scratch.remove()
    arrivals = report["sent"]
    counts = Counter(chat for chat, _, _ in arrivals)
    sent = sum(1 for chat in chats if counts.get(chat))
    times = sorted(at for _, at, _ in arrivals)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    achieved = (sent / span) if span > 0 else 0.0
    log(f"drained in {drain_s:.1f} s: {stats.as_dict()}; rows {states}; attempts {statuses}")
    return {
        "sent": sent,
        "duplicates": sum(1 for n in counts.values() if n > 1),
        "lost": recipients - sent,
        "achieved_rate": round(achieved, 2),
        "configured_rate": rate,
        "rate_ratio": round(achieved / rate, 4) if rate else 0.0,
        "recipients": recipients,
        "paid": paid,
        "paid_flag_on_all": all(flag == "true" for _, _, flag in arrivals) if paid else None,
        "send_requests": report["requests"],
        "http_429": int(statuses.get("429", 0)),
        "injected_429": inject_429,
        "attempts": int(attempts),
        "rows_sent": int(states.get("sent", 0)),
        "span_s": round(span, 3),
        "drain_s": round(drain_s, 2),
        "setup_s": round(setup_s, 3),
        "backend": "postgresql" if scratch.postgres else "sqlite",
    }
