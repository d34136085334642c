"""`qianxing bench webhook`: Telegram and WeChat webhook latency at a fixed request rate, and the
median uncached poster render.

It runs the real service on loopback, as `qianxing bench flash-sale` does (and with its
helpers): a scratch database (a temp SQLite file, or `qianxing_bench_webhook_<pid>` created next
to the PostgreSQL in DATABASE_URL and dropped afterwards), Redis (REDIS_URL, or an embedded
redis-server), `qianxing web` (gunicorn) and `qianxing worker`.
The bots' replies go to the fake Telegram Bot API and fake WeChat API from
tests/fakes, served by a child process of their own: the benchmark runs from a checkout.

Load is open-loop: request i of a phase is due at start + i / rate, whatever happened to the
requests before it, and its latency is measured from that due time to the end of the answer.
A server that falls behind cannot hide the queue that builds up (no coordinated omission).
Phases, each WARMUP_S seconds of warm-up (same rate, not measured) then `duration` seconds
measured, at `rate` requests per second; one request in ten comes from a sender the service
has never seen (first contact), the others from earlier senders:

1. telegram: POST /webhooks/telegram with the secret-token header and a real update JSON
   (a private-chat text message or command; a new update_id per request);
2. wechat: POST /webhooks/wechat with a signed plain-XML text message (a new MsgId each),
   answered by the conversation core inside the request;
3. wechat_aes (unless --no-aes): the web server restarted with an EncodingAESKey, the same
   kind of messages AES-encrypted and signed with msg_signature.

`errors` counts answers other than 2xx and transport errors (timeouts, refused connections).
`wechat*_xml_replies` counts answers that carried a passive reply (the conversation core
answered inside the request). Afterwards the Telegram updates acknowledged are counted in the
database (`telegram_lost`: acknowledged but not stored, must be 0; `telegram_processed`: done
by the worker when the last phase ended). `poster_ms` is the median of `posters` uncached
invite-poster renders (distinct names, so each one misses the cache), timed in this process
before the servers start. `loadavg_1m` is the machine's load when the run began: other work on
the same two cores shows up in the tail latencies. The last line printed is one JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import click

from qianxing.bench.flash_sale import (
    BENCH_DIR,
    REQUEST_TIMEOUT_S,
    Scratch,
    _log,
    _pg_admin,
    _with_database,
    child_env,
    free_port,
    migrate_child,
    wait_healthy,
)
from qianxing.settings import PROJECT_ROOT, Settings, load_settings

RATE = 200.0
DURATION_S = 12.0
MAX_DURATION_S = 240.0  # WeChat refuses timestamps older than 300 s; requests are signed up front
POSTERS = 30
WARMUP_S = 2.0  # each phase starts with this much load at the same rate, not measured
NEW_USER_EVERY = 10  # one request in ten comes from a sender the service has never seen
TG_TOKEN = "7000000001:BenchToken_qianxing_webhook_bench"  # noqa: S105 - the fake's, loopback only
TG_USERNAME = "qianxing_bench_bot"
OA_APPID = "wxbenchoaappid0001"
OA_SECRET = "bench-oa-secret"  # noqa: S105 - the fake's, loopback only
TELEGRAM_TEXTS = ("/start", "/help", "/level", "/progress", "你好")
WECHAT_TEXTS = ("帮助", "等级", "进度", "你好", "help")


# ---- scratch resources of this run -----------------------------------------------------------


def _pg_drop_database(url: str, name: str) -> None:
    import psycopg2

    try:
        _pg_admin(url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    except psycopg2.errors.SyntaxError:  # PostgreSQL < 13
        _pg_admin(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
                  f"DROP DATABASE IF EXISTS {name}")


@dataclass
class _RunScratch(Scratch):
    """flash-sale's scratch resources, but all of this run's own: a PostgreSQL database
    `qianxing_bench_webhook_<pid>`, and logs and the embedded Redis under var/bench/webhook-<pid>/.
    A benchmark or smoke test running at the same time (they share `qianxing_bench` and
    var/bench/redis) can then neither drop the database nor delete the Redis data under it."""

    root: Path = field(default_factory=lambda: BENCH_DIR / f"webhook-{os.getpid()}")
    pg_name: str = field(default_factory=lambda: f"qianxing_bench_webhook_{os.getpid()}")
    _pg_owned: str | None = None  # the admin URL while our database exists

    def open_database(self) -> str:
        url = self.settings.DATABASE_URL
        if not url.startswith(("postgres://", "postgresql://")):
            return super().open_database()  # SQLite: a file named after this process
        if urlsplit(url).path.strip("/") == self.pg_name:
            raise RuntimeError(f"DATABASE_URL must not point at the scratch database {self.pg_name}")
        _pg_drop_database(url, self.pg_name)
        _pg_admin(url, f"CREATE DATABASE {self.pg_name}")
        self._pg_owned = url
        self.database_url = _with_database(url, self.pg_name)
        return self.database_url

    def _close_database(self) -> None:
        super()._close_database()  # closes this process's connections; pg_admin_url stays None
        owned, self._pg_owned = self._pg_owned, None
        if owned:
            try:
                _pg_drop_database(owned, self.pg_name)
            except Exception as exc:  # noqa: BLE001 - reported, never masks the real outcome
                _log(f"could not drop database {self.pg_name}: {exc}")

    def open_redis(self) -> str:
        if self.settings.REDIS_URL:
            return super().open_redis()
        from qianxing.embedded_redis import EmbeddedRedis

        data_dir = self.root / "redis"
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        self.embedded = EmbeddedRedis(data_dir)
        self.redis_url = self.embedded.url
        return self.redis_url

    def log_dir(self) -> Path:
        return self.root

    def close(self) -> None:
        embedded, self.embedded = self.embedded, None  # stopped here, not in BENCH_DIR/redis
        try:
            super().close()
        finally:
            if embedded is not None:
                with contextlib.suppress(Exception):
                    embedded.stop()
            shutil.rmtree(self.root, ignore_errors=True)


# ---- fakes in a child process ----------------------------------------------------------------


def serve_fakes() -> None:
    """Child-process entry: serve the fake Telegram Bot API and WeChat API on 127.0.0.1, print
    their base URLs as one JSON line, and stop when standard input closes."""
    from tests.fakes.telegram_api import FakeTelegramAPI
    from tests.fakes.wechat_api import FakeWeChatAPI

    with FakeTelegramAPI(TG_TOKEN, username=TG_USERNAME) as telegram, FakeWeChatAPI(OA_APPID, OA_SECRET) as wechat:
        print(json.dumps({"telegram": telegram.base_url.rstrip("/"), "wechat": wechat.base_url}), flush=True)
        sys.stdin.read()


def _start_fakes(scratch: _RunScratch) -> dict[str, str]:
    scratch.root.mkdir(parents=True, exist_ok=True)
    log_path = scratch.root / "fakes.log"
    scratch.logs["fakes"] = log_path
    err = open(log_path, "wb")  # noqa: SIM115 - the child keeps it; closed below
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from qianxing.bench.webhook import serve_fakes; serve_fakes()"],
            cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            start_new_session=True, text=True,
        )
    finally:
        err.close()
    scratch.procs.append(("fakes", proc))
    assert proc.stdout is not None
    line = proc.stdout.readline()  # one line as soon as both servers listen; EOF if it died
    if not line:
        raise RuntimeError(f"the fake platform servers did not start:\n{scratch.tail('fakes')}")
    return json.loads(line)


# ---- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    url: str
    body: bytes
    headers: dict[str, str]


def sender(i: int) -> int:
    """Who sends request i: every NEW_USER_EVERY-th request a new sender (first contact: the
    service creates a user and an identity), the others one of the senders seen before, spread
    pseudo-randomly."""
    known = i // NEW_USER_EVERY
    return known if i % NEW_USER_EVERY == 0 else (i * 7919) % (known + 1)


def _telegram_requests(base_url: str, secret: str, count: int, first_id: int, users: int = 0) -> list[_Request]:
    """`count` updates with update_ids from `first_id`; senders numbered from `users`."""
    url = base_url + "/webhooks/telegram"
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret}
    now = int(time.time())
    out = []
    for i in range(count):
        u = users + sender(i)
        user_id = 810_000_000 + u
        update = {
            "update_id": first_id + i,
            "message": {
                "message_id": 1 + i,
                "from": {"id": user_id, "is_bot": False, "first_name": f"压测{u}", "language_code": "zh-hans"},
                "chat": {"id": user_id, "first_name": f"压测{u}", "type": "private"},
                "date": now,
                "text": TELEGRAM_TEXTS[i % len(TELEGRAM_TEXTS)],
            },
        }
        out.append(_Request(url, json.dumps(update, ensure_ascii=False).encode(), headers))
    return out


def _signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()  # noqa: S324 - WeChat's scheme


def _wechat_requests(base_url: str, token: str, aes_key: str | None, count: int, first_id: int,
                     users: int = 0) -> list[_Request]:
    """Text messages as WeChat posts them (MsgIds from `first_id`, senders numbered from
    `users`): plain XML signed over the query, or (aes_key set) the encrypted envelope signed
    with msg_signature."""
    from urllib.parse import urlencode

    from wechatpy.crypto import WeChatCrypto

    crypto = WeChatCrypto(token, aes_key, OA_APPID) if aes_key else None
    headers = {"Content-Type": "text/xml"}
    out = []
    for i in range(count):
        openid = f"oBench{users + sender(i):07d}qianxingwebhook"
        timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
        xml = (f"<xml><ToUserName><![CDATA[gh_qianxingbench]]></ToUserName>"
               f"<FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{timestamp}</CreateTime>"
               f"<MsgType><![CDATA[text]]></MsgType>"
               f"<Content><![CDATA[{WECHAT_TEXTS[i % len(WECHAT_TEXTS)]}]]></Content>"
               f"<MsgId>{first_id + i}</MsgId></xml>")
        query = {"signature": _signature(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
                 "openid": openid}
        if crypto is None:
            body = xml.encode()
        else:
            envelope = crypto.encrypt_message(xml, nonce, timestamp)  # <xml><Encrypt>..<MsgSignature>..
            encrypt = envelope.split("<Encrypt><![CDATA[", 1)[1].split("]]>", 1)[0]
            body = f"<xml><ToUserName><![CDATA[gh_qianxingbench]]></ToUserName><Encrypt><![CDATA[{encrypt}]]>" \
                   f"</Encrypt></xml>".encode()
            query.update(encrypt_type="aes", msg_signature=_signature(token, timestamp, nonce, encrypt))
        out.append(_Request(f"{base_url}/webhooks/wechat?{urlencode(query)}", body, headers))
    return out


# ---- open-loop load -------------------------------------------------------------------------


@dataclass
class _Phase:
    name: str
    rate: float
    latencies: list[float] = field(default_factory=list)  # seconds, from the due time
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    xml_replies: int = 0  # WeChat: answers carrying a passive reply (the core answered in time)
    elapsed: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def as_dict(self) -> dict[str, Any]:
        p = self.name
        return {f"{p}_p50_ms": percentile_ms(self.latencies, 50), f"{p}_p99_ms": percentile_ms(self.latencies, 99),
                f"{p}_max_ms": percentile_ms(self.latencies, 100), f"{p}_errors": self.errors,
                f"{p}_requests": self.requests,
                f"{p}_rate": round(self.requests / self.elapsed, 1) if self.elapsed else 0.0,
                f"{p}_statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                **({f"{p}_xml_replies": self.xml_replies} if p.startswith("wechat") else {})}


def percentile_ms(values: list[float], q: float) -> float:
    """Nearest-rank percentile of seconds, in milliseconds."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] * 1000, 2)


async def _open_loop(phase: _Phase, requests: list[_Request], warmup: int) -> None:
    """Request i is due at start + i / rate; the first `warmup` ones (lazy imports, connection
    pools, caches) are sent on the same schedule but not measured."""
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.1
        measured_from = start + warmup / phase.rate

        async def one(req: _Request, due: float, measured: bool) -> None:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            status, body = 0, b""
            try:
                async with http.post(req.url, data=req.body, headers=req.headers) as resp:
                    body = await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError):
                pass
            if not measured:
                return
            phase.latencies.append(loop.time() - due)
            phase.statuses[status] = phase.statuses.get(status, 0) + 1
            if not 200 <= status < 300:
                phase.errors += 1
            if body.startswith(b"<xml>"):
                phase.xml_replies += 1

        await asyncio.gather(*(one(req, start + i / phase.rate, i >= warmup) for i, req in enumerate(requests)))
        phase.elapsed = loop.time() - measured_from


def _run_phase(name: str, rate: float, requests: list[_Request], warmup: int) -> _Phase:
    phase = _Phase(name, rate)
    _log(f"{name}: {warmup} warm-up and {len(requests) - warmup} measured requests at {rate:g}/s")
    asyncio.run(_open_loop(phase, requests, warmup))
    _log(f"{name}: p50 {percentile_ms(phase.latencies, 50)} ms, p99 {percentile_ms(phase.latencies, 99)} ms, "
         f"errors {phase.errors}, {phase.requests / phase.elapsed:.1f} req/s")
    return phase


# ---- posters --------------------------------------------------------------------------------


def poster_ms(samples: int = POSTERS) -> float:
    """Median milliseconds of an uncached invite poster (key, render, file write), over
    `samples` creators with distinct names; fonts are loaded by one render beforehand."""
    from bots import poster

    with tempfile.TemporaryDirectory(prefix="qianxing-posters-") as tmp:

        def card(i: int) -> poster.InviteCard:
            code = f"BENCH{i:04d}"
            return poster.InviteCard(name=f"千星创作者{i:03d}号", level="一星", code=code,
                                     link=f"https://t.me/{TG_USERNAME}?start={code}", bot=TG_USERNAME)

        poster.cached(card(-1), tmp)
        times = []
        for i in range(samples):
            c = card(i)
            started = time.perf_counter()
            poster.cached(c, tmp)
            times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


# ---- checks ---------------------------------------------------------------------------------


def _telegram_stored(first_id: int, count: int) -> tuple[int, int]:
    """How many of the measured updates are in bot_update, and how many of those are done."""
    from models.chat import BotUpdate
    from models.db import connection

    keys = [str(first_id + i) for i in range(count)]
    stored = done = 0
    with connection():
        for at in range(0, len(keys), 500):
            rows = BotUpdate.select(BotUpdate.state).where(
                (BotUpdate.platform == "telegram") & BotUpdate.update_key.in_(keys[at:at + 500]))
            states = [row.state for row in rows]
            stored += len(states)
            done += states.count("done")
    return stored, done


# ---- entry point ----------------------------------------------------------------------------


def _stop_quickly(scratch: _RunScratch) -> None:
    """The worker may be in the middle of a long drain of the Telegram backlog (a warm RQ
    shutdown would wait for it): the measurements are taken, so it gets two seconds. The fakes
    stop when their standard input closes."""
    from qianxing.processes import stop_all

    for name, proc in scratch.procs:
        if name == "fakes" and proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
    workers = [proc for name, proc in scratch.procs if name == "worker"]
    stop_all(workers, timeout=2.0)
    scratch.procs[:] = [(n, p) for n, p in scratch.procs if n != "worker"]


def _restart_web(scratch: _RunScratch, env: dict[str, str], base_url: str) -> None:
    from qianxing.processes import stop_all

    web = [(n, p) for n, p in scratch.procs if n == "web"]
    started = time.monotonic()
    stop_all(p for _, p in web)
    scratch.procs[:] = [(n, p) for n, p in scratch.procs if n != "web"]
    scratch.start("web", ["web"], env)
    wait_healthy(scratch, base_url)
    _log(f"web restarted in AES mode in {time.monotonic() - started:.1f} s")


def run(settings: Settings, *, rate: float = RATE, duration: float = DURATION_S, posters: int = POSTERS,
        aes: bool = True) -> dict[str, Any]:
    """Run the benchmark and return its results (the CLI prints them as one JSON line)."""
    if rate <= 0 or not 0 < duration <= MAX_DURATION_S or posters < 1:
        raise ValueError(f"rate must be positive, duration 0-{MAX_DURATION_S:g} s and posters at least 1")
    from qianxing.wiring import bootstrap

    began = time.monotonic()
    load_before = os.getloadavg()[0]
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    scratch = _RunScratch(settings)
    poster_dir = scratch.root / "posters"
    try:
        poster_median = poster_ms(posters)
        _log(f"poster: median uncached render {poster_median} ms over {posters}")
        database_url = scratch.open_database()
        redis_url = scratch.open_redis()
        fakes = _start_fakes(scratch)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        tg_secret = secrets.token_urlsafe(24)
        oa_token = secrets.token_hex(16)
        aes_key = "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
                          for _ in range(43))
        values = {
            **settings.model_dump(),
            "QIANXING_ENV": "dev", "DATABASE_URL": database_url, "REDIS_URL": redis_url,
            "WEB_BIND": f"127.0.0.1:{port}", "PUBLIC_BASE_URL": base_url, "NOTIFY_CHANNELS": "log",
            "LOG_LEVEL": "WARNING", "POSTER_DIR": str(poster_dir),
            "TELEGRAM_BOT_TOKEN": TG_TOKEN, "TELEGRAM_BOT_USERNAME": TG_USERNAME,
            "TELEGRAM_API_BASE_URL": fakes["telegram"], "TELEGRAM_WEBHOOK_SECRET": tg_secret,
            "WECHAT_OA_APPID": OA_APPID, "WECHAT_OA_SECRET": OA_SECRET, "WECHAT_OA_TOKEN": oa_token,
            "WECHAT_OA_API_BASE_URL": fakes["wechat"], "WECHAT_OA_AES_KEY": None,
        }
        bench = load_settings(**values)
        database = "postgresql" if scratch.sqlite_path is None else "sqlite"
        _log(f"{database} database {database_url.rsplit('/', 1)[-1]}, redis {redis_url}, "
             f"gunicorn {bench.WEB_WORKERS} workers x {bench.WEB_THREADS} threads on {base_url}")
        env = child_env(bench)
        migrate_child(env)
        bootstrap(bench)
        scratch.start("web", ["web"], env)
        scratch.start("worker", ["worker", "--no-cron"], env)
        wait_healthy(scratch, base_url)
        _log(f"server up after {time.monotonic() - began:.1f} s")

        count = max(1, round(rate * duration))
        warm = max(1, round(rate * WARMUP_S))
        total = warm + count
        first = int(time.time()) * 1000  # update_ids and MsgIds unique across runs too
        # The measured Telegram updates have ids first .. first + count - 1 (warm-up ones below).
        phases = [_run_phase("telegram", rate, _telegram_requests(base_url, tg_secret, total, first - warm), warm)]
        scratch.check_alive()
        phases.append(_run_phase("wechat", rate, _wechat_requests(base_url, oa_token, None, total, first), warm))
        scratch.check_alive()
        if aes:
            env = child_env(load_settings(**{**values, "WECHAT_OA_AES_KEY": aes_key}))
            _restart_web(scratch, env, base_url)
            # New MsgIds, and new senders: the same share of first contacts as the plain phase.
            phases.append(_run_phase("wechat_aes", rate, _wechat_requests(
                base_url, oa_token, aes_key, total, first + total, users=total), warm))
            scratch.check_alive()

        telegram = phases[0]
        acknowledged = telegram.statuses.get(200, 0)
        stored, processed = _telegram_stored(first, count)
        latencies = [x for p in phases for x in p.latencies]
        elapsed = sum(p.elapsed for p in phases)
        result: dict[str, Any] = {
            "p50_ms": percentile_ms(latencies, 50),
            "p99_ms": percentile_ms(latencies, 99),
            "errors": sum(p.errors for p in phases),
            "poster_ms": poster_median,
            "rate": rate,
            "achieved_rate": round(len(latencies) / elapsed, 1) if elapsed else 0.0,
            "requests": len(latencies),
        }
        for p in phases:
            result.update(p.as_dict())
        result.update({
            "telegram_stored": stored,
            "telegram_lost": max(0, acknowledged - stored),
            "telegram_processed": processed,  # by the worker when the last phase ended
            "duration_s": duration,
            "posters": posters,
            "database": database,
            "redis": "embedded" if scratch.embedded is not None else "external",
            "web_workers": bench.WEB_WORKERS,
            "web_threads": bench.WEB_THREADS,
            "loadavg_1m": round(load_before, 2),
        })
    finally:
        try:
            _stop_quickly(scratch)
        finally:
            scratch.close()  # removes scratch.root: logs, embedded Redis, posters
    result["total_s"] = round(time.monotonic() - began, 1)
    _log(f"done in {result['total_s']} s")
    return result


@click.command("webhook")
@click.option("--rate", default=RATE, show_default=True, help="requests per second, fixed (open loop)")
@click.option("--duration", default=DURATION_S, show_default=True, help="seconds per phase")
@click.option("--posters", default=POSTERS, show_default=True, help="uncached poster renders to time")
@click.option("--aes/--no-aes", default=True, show_default=True, help="also time the AES-encrypted WeChat mode")
def bench_webhook(rate: float, duration: float, posters: int, aes: bool) -> None:
    """Telegram and WeChat webhook latency at a fixed rate, and the poster render time."""
    from qianxing.cli import _settings

    if rate <= 0 or not 0 < duration <= MAX_DURATION_S or posters < 1:
        raise click.BadParameter(f"--rate must be positive, --duration 0-{MAX_DURATION_S:g} s, --posters at least 1")
    click.echo(json.dumps(run(_settings(), rate=rate, duration=duration, posters=posters, aes=aes)))
