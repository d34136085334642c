"""`qianxing bench webhook`: a short, slow run through the CLI must finish and print its JSON line
with every field (no assertion on speed), and the requests it sends must be what the adapters
accept: signed plain and AES-encrypted WeChat XML, Telegram updates aiogram can read.

The smoke test runs the real command (gunicorn, an RQ worker, a scratch database, the fake
platform APIs in a child process) with the current environment, so CI's DATABASE_URL /
REDIS_URL are exercised. It skips the AES phase (a web restart) to stay short; the AES requests
are checked against the adapter below.
"""

from __future__ import annotations

import json

import pytest

from tests.bench.run import bench_result

RATE, DURATION = 20, 1
PHASES = ("telegram", "wechat")
REQUIRED = ("p50_ms", "p99_ms", "errors", "poster_ms", "rate", "achieved_rate", "requests",
            "telegram_stored", "telegram_lost", "telegram_processed", "database", "duration_s", "total_s",
            "loadavg_1m", "wechat_xml_replies")
PER_PHASE = ("p50_ms", "p99_ms", "max_ms", "errors", "requests", "rate", "statuses")


@pytest.mark.timeout(300)
def test_webhook_bench_prints_its_json_line() -> None:
    # given a short run at a low fixed rate
    # then it exits cleanly and its last line is the result object, with every field of every phase
    result = bench_result("webhook", "--rate", str(RATE), "--duration", str(DURATION), "--posters", "3",
                          "--no-aes", required=[*REQUIRED, *(f"{p}_{k}" for p in PHASES for k in PER_PHASE)],
                          timeout=280)
    assert "wechat_aes_requests" not in result

    # and every request of every phase was sent and answered 2xx, every acknowledged update stored
    per_phase = RATE * DURATION
    assert result["requests"] == per_phase * len(PHASES), result
    for p in PHASES:
        assert result[f"{p}_requests"] == per_phase, result
        assert result[f"{p}_errors"] == 0, result
    assert result["errors"] == 0, result
    assert result["telegram_stored"] == per_phase and result["telegram_lost"] == 0, result
    assert result["poster_ms"] > 0
    assert result["database"] in ("sqlite", "postgresql")
    assert all(isinstance(result[k], float | int) for k in ("p50_ms", "p99_ms", "achieved_rate"))


@pytest.mark.parametrize("aes_key", [None, "A" * 21 + "b" * 21 + "9"], ids=["plain", "aes"])
def test_the_wechat_requests_are_signed_as_the_adapter_checks(aes_key: str | None) -> None:
    from urllib.parse import parse_qsl, urlsplit

    from bots import wechat_oa, wechat_oa_auth
    from qianxing.bench import webhook

    # given the bench's requests for an account in plain or AES mode
    cfg = wechat_oa_auth.OAConfig(webhook.OA_APPID, "bench-token", aes_key, 3000)
    requests = webhook._wechat_requests("http://127.0.0.1:9", "bench-token", aes_key, 6, 5000)

    for i, req in enumerate(requests):
        # when the adapter authenticates and parses one
        args = dict(parse_qsl(urlsplit(req.url).query))
        auth = wechat_oa_auth.authenticate(cfg, args, lambda limit, body=req.body: body[:limit])
        message, fields = wechat_oa.parse(auth.xml)

        # then the signature holds, and it is a text message with its own MsgId
        assert auth.encrypted is bool(aes_key)
        assert message.type == "text" and fields["MsgId"] == str(5000 + i)
        assert message.content == webhook.WECHAT_TEXTS[i % len(webhook.WECHAT_TEXTS)]
    # and a wrong token is refused
    other = wechat_oa_auth.OAConfig(webhook.OA_APPID, "other-token", aes_key, 3000)
    args = dict(parse_qsl(urlsplit(requests[0].url).query))
    with pytest.raises(wechat_oa_auth.Refused):
        wechat_oa_auth.authenticate(other, args, lambda limit: requests[0].body[:limit])


def test_the_telegram_requests_are_updates_with_unique_ids() -> None:
    from aiogram.types import Update

    from qianxing.bench import webhook

    requests = webhook._telegram_requests("http://127.0.0.1:9", "s3cret", 12, 100)
    updates = [Update.model_validate(json.loads(r.body)) for r in requests]
    assert [u.update_id for u in updates] == list(range(100, 112))
    assert all(u.message is not None and u.message.text for u in updates)
    assert all(r.headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cret" for r in requests)
    assert requests[0].url == "http://127.0.0.1:9/webhooks/telegram"


def test_one_request_in_ten_is_a_first_contact_and_the_rest_come_from_known_senders() -> None:
    from qianxing.bench.webhook import NEW_USER_EVERY, sender

    first_seen: dict[int, int] = {}
    for i in range(5000):
        first_seen.setdefault(sender(i), i)
    # every sender first appears on a "new sender" request, in order, one per NEW_USER_EVERY
    assert all(i == u * NEW_USER_EVERY for u, i in first_seen.items())
    assert len(first_seen) == 5000 // NEW_USER_EVERY
    # and the repeat senders are spread over those seen so far, not one hot chat
    repeats = [sender(i) for i in range(4000, 5000) if i % NEW_USER_EVERY]
    assert len(set(repeats)) > 300
