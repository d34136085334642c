"""`qianxing bench webhook`: Telegram and WeChat webhook latency at a fixed request rate, and the
median uncached poster render.

It runs the real service on loopback, as `qianxing bench flash-sale` does (with the same
harness, qianxing/bench/harness.py; this run's own resources are in webhook_service.py): a
scratch database (a temp SQLite file, or `qianxing_bench_webhook_<pid>` created next to the
PostgreSQL in DATABASE_URL and dropped afterwards), Redis (REDIS_URL, or an embedded
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
import hashlib
import json
import math
import os
import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from qianxing.bench.harness import (
    BENCH_DIR,
    REQUEST_TIMEOUT_S,
    child_env,
    free_port,
    log,
    migrate_child,
    wait_healthy,
)
from qianxing.bench.webhook_service import (
    OA_APPID,
    OA_SECRET,
    TG_TOKEN,
    TG_USERNAME,
    RunScratch,
    restart_web,
    start_fakes,
    stop_quickly,
)
from qianxing.settings import Settings, load_settings

RATE = 200.0
DURATION_S = 12.0
MAX_DURATION_S = 240.0  # WeChat refuses timestamps older than 300 s; requests are signed up front
POSTERS = 30
WARMUP_S = 2.0  # each phase starts with this much load at the same rate, not measured
NEW_USER_EVERY = 10  # one request in ten comes from a sender the service has never seen
TELEGRAM_TEXTS = ("/start", "/help", "/level", "/progress", "你好")
WECHAT_TEXTS = ("帮助", "等级", "进度", "你好", "help")


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
    log(f"{name}: {warmup} warm-up and {len(requests) - warmup} measured requests at {rate:g}/s")
    asyncio.run(_open_loop(phase, requests, warmup))
    log(f"{name}: p50 {percentile_ms(phase.latencies, 50)} ms, p99 {percentile_ms(phase.latencies, 99)} ms, "
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


def run(settings: Settings, *, rate: float = RATE, duration: float = DURATION_S, posters: int = POSTERS,
        aes: bool = True) -> dict[str, Any]:
    """Run the benchmark and return its results (the CLI prints them as one JSON line)."""
    if rate <= 0 or not 0 < duration <= MAX_DURATION_S or posters < 1:
        raise ValueError(f"rate must be positive, duration 0-{MAX_DURATION_S:g} s and posters at least 1")
    from qianxing.wiring import bootstrap

    began = time.monotonic()
    load_before = os.getloadavg()[0]
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    scratch = RunScratch(settings)
    poster_dir = scratch.root / "posters"
    try:
        poster_median = poster_ms(posters)
        log(f"poster: median uncached render {poster_median} ms over {posters}")
        database_url = scratch.open_database()
        redis_url = scratch.open_redis()
        fakes = start_fakes(scratch)
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
        log(f"{database} database {database_url.rsplit('/', 1)[-1]}, redis {redis_url}, "
             f"gunicorn {bench.WEB_WORKERS} workers x {bench.WEB_THREADS} threads on {base_url}")
        env = child_env(bench)
        migrate_child(env)
        bootstrap(bench)
        scratch.start("web", ["web"], env)
        scratch.start("worker", ["worker", "--no-cron"], env)
        wait_healthy(scratch, base_url)
        log(f"server up after {time.monotonic() - began:.1f} s")

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
            restart_web(scratch, env, base_url)
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
            stop_quickly(scratch)
        finally:
            scratch.close()  # removes scratch.root: logs, embedded Redis, posters
    result["total_s"] = round(time.monotonic() - began, 1)
    log(f"done in {result['total_s']} s")
    return result
