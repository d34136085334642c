"""`qianxing bench reminders --reservations N --rate R`: the T-10m reminders of one live session
reserved by N people, planned by the real planner job and sent by the outbound sender's drains
against fake Telegram and WeChat servers that enforce a limit.

- The fakes (tests/fakes/, so run it from a checkout) serve on 127.0.0.1, each in a child
  process of its own; each refuses sends beyond `--fake-limit` x R in any one-second window
  (Telegram: 429 retry_after=1; WeChat: errcode 45009), as the platforms' flood control would,
  and records every delivered message with its arrival time.
- Half the reservations belong to Telegram users, half to WeChat users inside the 48-hour
  window (seeded in bulk: users, chat identities, reservations; a scratch database next to the
  PostgreSQL in DATABASE_URL, or a SQLite file under var/bench/, dropped afterwards). The
  session starts `--lead` + 600 s after the seeding, so its T-10m reminder is due `--lead` s later.
- R is the configured rate of BOTH platforms (TELEGRAM_RATE_PER_S, WECHAT_OA_RATE_PER_S): the
  real limits are ~30/s, at which 100,000 reminders take an hour; the benchmark uses a high
  rate (default 500/s per platform) so 100,000 finish in a few minutes. The buckets live under
  their own Redis keys.
- What runs is what workers run: `tasks.reminders.plan_reminders` (the periodic planner:
  rows written ahead, due at the T-10m moment) in this process, and one drain loop per
  platform (`Sender.drain`, as `tasks.chat.drain_outbound` runs it) in a child process each.

Measured at the fakes: `sent` (reservations whose user got the reminder), `duplicates` (got it
more than once), `lost` (N - sent), `late` (first arrivals after due + N_platform / R, the time
the rate limit needs for the platform's share), `rate_ratio` (achieved / configured, the lower
of the two platforms; achieved = messages / (last arrival - first arrival)), `elapsed_s`,
`peak_rss_mb` (the largest of the planner's process and the two drain processes). The last
line printed is one JSON object.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from qianxing.bench.fanout import FakeProcess
from qianxing.bench.harness import BENCH_DIR, ScratchDatabase
from qianxing.settings import Settings

TOKEN = "434343:BENCH-remind_token_abcdefghijklmnopqrst"  # noqa: S105 - the fake's, not a secret
APPID, SECRET = "wxbenchmini0000001", "bench-mini-secret"  # noqa: S105
OA_APPID, OA_SECRET = "wxbenchoa000000001", "bench-oa-secret"  # noqa: S105
ROOT = Path(__file__).resolve().parents[2]
CHUNK = 1000


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---- the fakes, each in a child process -------------------------------------------------------


def _serve(kind: str, conn: Connection) -> None:
    sys.path.insert(0, str(ROOT))
    if kind == "telegram":
        from tests.fakes.telegram_api import FakeTelegramAPI

        fake: Any = FakeTelegramAPI(TOKEN).start()
    else:
        from tests.fakes.wechat_api import FakeWeChatAPI

        fake = FakeWeChatAPI(APPID, SECRET).start()
        fake.add_app(OA_APPID, OA_SECRET)
    conn.send(fake.base_url)
    while True:
        command, args = conn.recv()
        if command == "limit_rate":
            fake.limit_rate(*args)
            conn.send(None)
        elif command == "report":
            if kind == "telegram":
                conn.send([(s.chat_id, s.at) for s in fake.sent])
            else:
                conn.send([(to, at) for _, to, at in fake.arrivals])
        elif command == "stop":
            fake.stop()
            conn.send(None)
            return


class _Child(FakeProcess):
    def __init__(self, kind: str) -> None:
        if not (ROOT / "tests" / "fakes" / "wechat_api.py").exists():
            raise RuntimeError("bench reminders runs from a checkout: tests/fakes/ is missing")
        self.spawn(_serve, (kind,), name=f"fake-{kind}", what=f"the fake {kind} server")


def _drain(values: dict[str, Any], platform: str, prefix: str, concurrency: int, conn: Connection) -> None:
    """A worker's drain loop for one platform, in a child process: sends until told the
    planner is done and nothing is left."""
    sys.path.insert(0, str(ROOT))
    from bots.buckets import Limits
    from bots.sender import Sender
    from models import outbox
    from models.db import db
    from qianxing import wiring
    from qianxing.settings import Settings

    settings = Settings(**values)
    rt = wiring.bootstrap(settings)
    sender = Sender(rt.redis, settings, limits=Limits.from_settings(settings, prefix=prefix),
                    schedule=lambda p, at: None, concurrency=concurrency, wechat=rt.oa, wxa=rt.wechat)
    sender._factories[platform]()  # the transport (aiogram's import) is built before the due moment
    conn.send("ready")
    planned, runs = False, []
    with db.connection_context():
        while True:
            stats = sender.drain(platform, deadline_s=30.0, batch=500)
            runs.append(stats.as_dict())
            planned = planned or conn.poll()
            if planned and outbox.next_due(platform) is None:
                break
            if stats.claimed == 0:
                time.sleep(0.05 if planned else 0.2)
    conn.send({"runs": runs, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


# ---- seeding ----------------------------------------------------------------------------------


def _seed(n: int, lead_s: float) -> tuple[int, list[str], list[str]]:
    """A creator's session starting lead + 600 s after the seeding and n reservations (even:
    Telegram users, odd: WeChat users who wrote 1 h ago), inserted in bulk. (session id, Telegram chats,
    WeChat openids)."""
    import datetime as dt

    from models import network
    from models.chat import ChatIdentity
    from models.db import db, utcnow
    from models.live import LiveSession
    from models.reservations import Reservation
    from models.users import User, get_or_create_by_openid

    now = utcnow()
    hour_ago = now - dt.timedelta(hours=1)
    telegram, wechat = [], []
    with db.atomic():
        host = network.become_creator(get_or_create_by_openid("bench-host"), name="bench")
        session = LiveSession.create(creator=host.id, title="千星年货节直播", state="scheduled", started_at=None,
                                     scheduled_at=now + dt.timedelta(seconds=600 + lead_s))
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        with db.atomic():
            User.insert_many([{"openid": f"bench-fan-{i}", "created_at": hour_ago}
                              for i in range(start, start + size)]).execute()
            ids = [u for (u,) in User.select(User.id).where(User.openid.in_(
                [f"bench-fan-{i}" for i in range(start, start + size)])).order_by(User.id).tuples()]
            identities, rows = [], []
            for i, user_id in zip(range(start, start + size), ids, strict=True):
                if i % 2 == 0:
                    chat, platform, channel = str(20_000_000 + i), "telegram", "telegram"
                    telegram.append(chat)
                else:
                    chat, platform, channel = f"oBenchFan{i:07d}", "wechat", "wechat_oa"
                    wechat.append(chat)
                identities.append({"platform": platform, "external_id": chat, "user": user_id, "chat_id": chat,
                                   "last_inbound_at": hour_ago, "created_at": hour_ago})
                rows.append({"session": session.id, "user": user_id, "channel": channel, "wxa_consent": False,
                             "created_at": hour_ago, "updated_at": hour_ago})
            ChatIdentity.insert_many(identities).execute()
            Reservation.insert_many(rows).execute()
    # The clock starts now that the data is there: the T-10m moment is `lead_s` away.
    LiveSession.update(scheduled_at=utcnow() + dt.timedelta(seconds=600 + lead_s)).where(
        LiveSession.id == session.id).execute()
    return session.id, telegram, wechat


# ---- the run ----------------------------------------------------------------------------------


def run(settings: Settings, *, reservations: int, rate: float = 500.0, lead_s: float = 60.0,
        fake_limit: float = 1.1, concurrency: int = 32, log: Callable[[str], None] = _log) -> dict[str, Any]:
    """Set up, plan, send, measure; returns the result the CLI prints as its last line."""
    import datetime as dt

    from bots.buckets import Limits
    from bots.sender import Sender
    from models.db import db, execute, utcnow
    from models.live import LiveSession
    from models.migrations import migrate
    from qianxing import wiring
    from tasks.reminders import plan_reminders

    if reservations < 2 or rate <= 0 or lead_s < 1:
        raise ValueError("--reservations must be at least 2, --rate above 0, --lead at least 1")
    started = time.monotonic()
    tg, wx = _Child("telegram"), _Child("wechat")
    scratch = ScratchDatabase(settings, "reminders")
    try:
        scratch.create()
        url, embedded = wiring.redis_url(settings)
        bench = settings.model_copy(update={"REDIS_URL": url,
            "DATABASE_URL": scratch.url, "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": tg.base_url.rstrip("/"),
            "TELEGRAM_RATE_PER_S": rate, "WECHAT_OA_RATE_PER_S": rate, "WECHAT_OA_APPID": OA_APPID,
            "WECHAT_OA_SECRET": OA_SECRET, "WECHAT_OA_API_BASE_URL": wx.base_url, "WECHAT_APPID": APPID,
            "WECHAT_SECRET": SECRET, "WECHAT_API_BASE_URL": wx.base_url, "POSTER_DIR": str(BENCH_DIR / "posters"),
            "LIVE_REMINDER_AHEAD_S": int(lead_s) + 5})
        wiring.reset()
        rt = wiring.bootstrap(bench)
        values = {k: v for k, v in bench.model_dump().items() if v is not None}
        migrate()
        prefix = f"qianxing:bench:{os.getpid()}:tb"
        rt.sender = Sender(rt.redis, bench, limits=Limits.from_settings(bench, prefix=prefix),
                           schedule=lambda platform, at: None, concurrency=concurrency, wechat=rt.oa, wxa=rt.wechat)
        if fake_limit:
            tg.call("limit_rate", (rate * fake_limit, 1))
            wx.call("limit_rate", (rate * fake_limit, 45009))
        ctx = mp.get_context("spawn")
        drains, rss = [], [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]
        for platform in ("telegram", "wechat"):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_drain, args=(values, platform, prefix, concurrency, theirs), daemon=True,
                               name=f"drain-{platform}")
            proc.start()
            drains.append((platform, proc, mine))
        for platform, _, conn in drains:
            if not conn.poll(120) or conn.recv() != "ready":
                raise RuntimeError(f"the {platform} drain did not start")
        with db.connection_context():
            t0 = time.perf_counter()
            session_id, telegram, wechat = _seed(reservations, lead_s)
            seed_s = time.perf_counter() - t0
            start = LiveSession.get_by_id(session_id).scheduled_at
            due_mono = time.monotonic() + (start - dt.timedelta(seconds=600) - utcnow()).total_seconds()
            lead_left = due_mono - time.monotonic()
        log(f"scratch database {scratch.name}: {reservations} reservations seeded in {seed_s:.1f} s "
            f"(session {session_id}, T-10m due in {lead_left:.1f} s); rate {rate:g}/s per platform, "
            f"fakes limit {rate * fake_limit:.0f}/s")
        with db.connection_context():
            t0 = time.perf_counter()
            totals = plan_reminders(chunk=CHUNK)
            plan_s = time.perf_counter() - t0
        log(f"planned in {plan_s:.1f} s: {totals}; sending")
        for platform, proc, conn in drains:
            conn.send("planned")
            if conn.poll(reservations / rate * 3 + 300):
                report = conn.recv()
                rss.append(report["rss_mb"])
                log(f"{platform} drains: {len(report['runs'])} passes, sent {sum(r['sent'] for r in report['runs'])}")
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        with db.connection_context():
            states = dict(execute("SELECT state, COUNT(*) FROM outbound_message GROUP BY state").fetchall())
            statuses = dict(execute("SELECT status, COUNT(*) FROM outbound_attempt GROUP BY status").fetchall())
        arrivals = {"telegram": tg.call("report"), "wechat": wx.call("report")}
        for key in rt.redis.scan_iter(f"{prefix}:*"):
            rt.redis.delete(key)
        if embedded is not None:
            embedded.stop()
    finally:
        tg.stop()
        wx.stop()
        scratch.remove()
        wiring.reset()
    result = _measure(arrivals, {"telegram": telegram, "wechat": wechat}, due_mono, rate)
    log(f"rows {states}; attempts {statuses}")
    return {**result, "reservations": reservations, "configured_rate": rate, "fake_limit": fake_limit,
            "plan_s": round(plan_s, 2), "planned_rows": totals.get("written", 0), "seed_s": round(seed_s, 2),
            "rows_sent": int(states.get("sent", 0)), "refused_by_fakes": sum(n for s, n in statuses.items()
                                                                              if s != "200"),
            "elapsed_s": round(time.monotonic() - started, 1),
            "peak_rss_mb": round(max(rss + [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]), 1),
            "backend": "postgresql" if scratch.postgres else "sqlite",
            "note": f"rate {rate:g}/s per platform is a benchmark setting (real platforms: ~30-50/s)"}


def _measure(arrivals: dict[str, list[tuple[str, float]]], expected: dict[str, list[str]], due: float,
             rate: float) -> dict[str, Any]:
    sent = duplicates = lost = late = 0
    ratios, spans, lateness = [], {}, 0.0
    for platform, chats in expected.items():
        got = arrivals[platform]
        counts = Counter(chat for chat, _ in got)
        wanted = set(chats)
        sent += sum(1 for chat in wanted if counts.get(chat))
        duplicates += sum(1 for chat, n in counts.items() if n > 1 and chat in wanted)
        lost += sum(1 for chat in wanted if not counts.get(chat))
        first: dict[str, float] = {}
        for chat, at in got:
            first.setdefault(chat, at)
        allowed = due + len(chats) / rate
        late += sum(1 for at in first.values() if at > allowed)
        times = sorted(first.values())
        if len(times) > 1:
            span = times[-1] - times[0]
            spans[platform] = round(span, 2)
            ratios.append(len(times) / span / rate if span > 0 else 0.0)
            lateness = max(lateness, times[-1] - allowed)
            spans[f"{platform}_first_after_due_s"] = round(times[0] - due, 3)
    return {"sent": sent, "duplicates": duplicates, "lost": lost, "late": late,
            "rate_ratio": round(min(ratios), 4) if ratios else 0.0, "spans_s": spans,
            "last_vs_allowed_s": round(lateness, 3)}
