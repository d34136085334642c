"""Request throttling: fixed windows counted in Redis, one decorator per protected view.

    @api.post("/auth/login", responses={..., 429: ErrorOut})
    @throttle.limit(
        throttle.Rule("login:ip", throttle.by_client_ip,
                      lambda s: (s.LOGIN_RATE_PER_IP, s.LOGIN_RATE_WINDOW_S)),
        throttle.Rule("login:code", lambda body, **_: body.code,
                      lambda s: (s.LOGIN_RATE_PER_CODE, s.LOGIN_RATE_WINDOW_S)))
    def login(body: LoginIn): ...

A request over any of its rules is answered 429 in the API's error shape
(`{"error": {"code": "rate_limited", ...}}`) with `Retry-After` (seconds until the window that
refused it ends) before the view runs, so a refused login never reaches WeChat. Every rule of
a request is counted in one Redis round trip (a MULTI of SET NX EX + INCR + TTL per rule:
works on the embedded Redis 6.2 as on a server). The window starts at a key's first hit.

Our own rather than Flask-Limiter, because what we need is small and specific: the view's
parsed arguments as keys (the login code is inside the validated JSON body, which
Flask-Limiter's key functions cannot see without parsing the body again), our error shape and
Retry-After on our own handlers, the Redis client the runtime already holds (Flask-Limiter
brings the `limits` package with a storage connection of its own), limits read from settings at
request time (tests and operators change them without rebuilding the app), and failing open:
when Redis is unreachable the request goes through and a warning is logged, because a login
outage is worse than an unthrottled minute. Fixed windows may let twice a limit through
across a window boundary; for quotas like jscode2session that is fine. Admin and other
sensitive routes reuse `limit` with their own rules.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from flask import request

from miniapp_api.deps import runtime
from miniapp_api.errors import error_response

log = logging.getLogger(__name__)
PREFIX = "qianxing:throttle"
_warned_at = [0.0]  # last "Redis down, not throttling" warning: at most one every 10 s


@dataclass(frozen=True)
class Rule:
    """`key` maps the view's keyword arguments (flask-openapi3's `body`, `path`, ...) to what
    is counted, or None to skip this rule; `limit` maps settings to (requests, window seconds),
    requests 0 meaning no limit."""

    name: str
    key: Callable[..., str | None]
    limit: Callable[[Any], tuple[int, int]]


def by_client_ip(**_: Any) -> str:
    """The client address as the app sees it everywhere: `request.remote_addr`, which ProxyFix
    rewrites from `X-Forwarded-For` for `TRUSTED_PROXIES` proxies (miniapp_api.create_app)."""
    return (request.remote_addr or "unknown")[:64]


def limit(*rules: Rule) -> Callable:
    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def throttled(*args: Any, **kwargs: Any) -> Any:
            retry_after = hit(rules, kwargs)
            if retry_after is not None:
                response = error_response(429, "rate_limited",
                                          f"too many attempts; try again in {retry_after} s")
                response.headers["Retry-After"] = str(retry_after)
                return response
            return view(*args, **kwargs)

        return throttled

    return decorate


def _key(rule: Rule, value: Any) -> str:
    digest = hashlib.blake2b(str(value).encode(), digest_size=12).hexdigest()
    return f"{PREFIX}:{rule.name}:{digest}"


def blocked(rule: Rule, values: dict[str, Any]) -> int | None:
    """Without counting: the seconds to wait if `rule` is already at its limit for these values
    (for rules counted only on failure, such as wrong passwords per account), else None."""
    rt = runtime()
    allowed, _window = rule.limit(rt.settings)
    value = rule.key(**values)
    if allowed <= 0 or value is None:
        return None
    try:
        pipe = rt.redis.pipeline(transaction=False)
        pipe.get(_key(rule, value))
        pipe.ttl(_key(rule, value))
        count, ttl = pipe.execute()
    except redis.RedisError:
        return None
    return max(int(ttl), 1) if count is not None and int(count) >= allowed else None


def hit(rules: tuple[Rule, ...] | list[Rule], values: dict[str, Any]) -> int | None:
    """Count one request against each rule; the seconds to wait if any rule is over its limit,
    else None. Fails open (None) when Redis cannot be reached."""
    rt = runtime()
    counted: list[tuple[str, int]] = []
    pipe = rt.redis.pipeline(transaction=True)
    for rule in rules:
        allowed, window = rule.limit(rt.settings)
        value = rule.key(**values)
        if allowed <= 0 or value is None:
            continue
        key = _key(rule, value)
        pipe.set(key, 0, ex=window, nx=True)
        pipe.incr(key)
        pipe.ttl(key)
        counted.append((rule.name, allowed))
    if not counted:
        return None
    try:
        replies = pipe.execute()
    except redis.RedisError as exc:
        now = time.monotonic()
        if now - _warned_at[0] > 10:
            _warned_at[0] = now
            log.warning("throttle: Redis unavailable, letting requests through unthrottled: %s", exc)
        return None
    waits = [max(int(replies[3 * i + 2]), 1) for i, (_name, allowed) in enumerate(counted)
             if int(replies[3 * i + 1]) > allowed]
    if not waits:
        return None
    names = [name for i, (name, allowed) in enumerate(counted) if int(replies[3 * i + 1]) > allowed]
    log.info("throttle: %s over its limit; retry after %d s", ",".join(names), max(waits))
    return max(waits)
