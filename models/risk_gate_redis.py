"""The Redis side of the risk engine's edge checks (issue 15): precomputed counters, each check one
round trip (a Lua script), no database. models/risk_gate.py (coupon claims, assists, group joins,
order bursts) and models/risk_withdrawal_checks.py decide with them; `measure` times them for
`qianxing bench risk`.

Keys (all under `risk:gate:`, every one with an expiry; values are keyed hashes, never raw IPs or
device ids):
- `claim:<coupon>:ip:<hash>` / `claim:<coupon>:dev:<hash>`: sorted set of user ids scored by claim
  time (seconds), trimmed to the rule's window on every claim, expiring with the window.
- `assist:<token>` / `team:<id>`: set of the starter's / opener's "ip:<hash>" and "dev:<hash>".
- `orders:ip:<hash>` / `orders:dev:<hash>`: sorted set of order ids by time (RISK_BLOCK_ORDERS).
- `wd:<creator>`: hash {n: the creator's wallet withdrawals ever, days: the window `wd:z` covers}
  (the "warm" marker), `wd:z:<creator>`: sorted set of "<no>:<amount>" by time,
  `wd:id:<identity hash>`: set of creator ids sharing a payout identity.

The client is passed in (duck-typed redis-py); models/ never imports redis. Errors propagate:
the callers decide what an outage means (fail open, or ask the database).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from models.redis_scripts import script

PREFIX = "risk:gate:"

# KEYS: the claim sets; ARGV: now (s), window (s), max accounts, user id.
# Refused: -(index of the first key already holding max-1 other accounts). Else: a bit mask of
# the keys the user was newly added to (so a claim the database refuses can be taken back).
_CLAIM = """
local now, window, limit, member = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
for i, k in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now - window)
  if not redis.call('ZSCORE', k, member) and redis.call('ZCARD', k) >= limit - 1 then return -i end
end
local added, bit = 0, 1
for i, k in ipairs(KEYS) do
  added = added + redis.call('ZADD', k, now, member) * bit
  redis.call('EXPIRE', k, window)
  bit = bit * 2
end
return added
"""
# KEYS[1] a remembered set; ARGV the marks of the caller: the index of the first one in the set, or 0.
_SHARES = """
for i, v in ipairs(ARGV) do
  if redis.call('SISMEMBER', KEYS[1], v) == 1 then return i end
end
return 0
"""
# KEYS: burst sets; ARGV: now, window: the largest count inside the window (trimmed first).
_BURST = """
local most = 0
for _, k in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', k, '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
  local n = redis.call('ZCARD', k)
  if n > most then most = n end
end
return most
"""
# KEYS[1] wd:<creator>, KEYS[2] wd:z:<creator>; ARGV now, days. Cold (missing, or covering
# fewer days than asked): {-1}. Else {n, sum of amounts, count} inside the window.
_WD_READ = """
local covered = redis.call('HGET', KEYS[1], 'days')
if not covered or tonumber(covered) < tonumber(ARGV[2]) then return {-1, 0, 0} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]) * 86400)
redis.call('HSET', KEYS[1], 'days', ARGV[2])  -- trimmed to this window now
local sum, count = 0, 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  sum = sum + tonumber(string.match(m, ':(%d+)$'))
  count = count + 1
end
return {tonumber(redis.call('HGET', KEYS[1], 'n')), sum, count}
"""
# Load from the database: only when still cold (a concurrent loader agrees). ARGV: n, days, ttl,
# then score, member pairs.
_WD_LOAD = """
local covered = redis.call('HGET', KEYS[1], 'days')
if covered and tonumber(covered) >= tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'n', ARGV[1], 'days', ARGV[2])
for i = 4, #ARGV, 2 do redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""
# A new withdrawal: counted only when warm (a cold creator is loaded from the database, which
# has it) and only once (ZADD says whether the member is new).
_WD_ADD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2]) == 1 then redis.call('HINCRBY', KEYS[1], 'n', 1) end
local ttl = redis.call('TTL', KEYS[1])
if ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
return 1
"""
# KEYS: identity sets; ARGV[1] the creator, ARGV[2] ttl. Missing sets are named (-> load from the
# database); the others get the creator added and are answered with their members.
_IDENTITIES = """
local out = {}
for i, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 0 then
    out[i] = {'?'}
  else
    redis.call('SADD', k, ARGV[1])
    out[i] = redis.call('SMEMBERS', k)
  end
end
return out
"""


# ---- coupon claims ----------------------------------------------------------------------------

def claim_keys(coupon_id: int, ip_hash: str | None, device_hash: str | None) -> list[str]:
    keys = [f"{PREFIX}claim:{coupon_id}:ip:{ip_hash}"] if ip_hash else []
    return keys + ([f"{PREFIX}claim:{coupon_id}:dev:{device_hash}"] if device_hash else [])


def claim_take(redis: Any, keys: Sequence[str], user_id: int, *, now_s: float, window_s: int,
               max_accounts: int) -> tuple[int | None, int]:
    """(index of the key that refuses, or None; bit mask of the keys the user was added to)."""
    got = int(script(redis, _CLAIM)(keys=list(keys), args=[now_s, window_s, max_accounts, user_id]))
    return (-got - 1, 0) if got < 0 else (None, got)


def claim_undo(redis: Any, keys: Sequence[str], user_id: int, mask: int) -> None:
    """Take a claim back from the sets it was newly added to (the database refused it)."""
    mine = [k for i, k in enumerate(keys) if mask & (1 << i)]
    if mine:
        pipe = redis.pipeline(transaction=False)
        for k in mine:
            pipe.zrem(k, user_id)
        pipe.execute()


# ---- starters of assists and teams -------------------------------------------------------------

def marks(ip_hash: str | None, device_hash: str | None) -> list[str]:
    return ([f"ip:{ip_hash}"] if ip_hash else []) + ([f"dev:{device_hash}"] if device_hash else [])


def assist_key(token: str) -> str:
    return f"{PREFIX}assist:{token}"


def team_key(team_id: int) -> str:
    return f"{PREFIX}team:{team_id}"


def remember(redis: Any, key: str, values: Sequence[str], ttl_s: int) -> None:
    """Add the starter's marks to the set, (re)starting its expiry."""
    if values:
        pipe = redis.pipeline(transaction=False)
        pipe.sadd(key, *values)
        pipe.expire(key, ttl_s)
        pipe.execute()


def shares(redis: Any, key: str, values: Sequence[str]) -> str | None:
    """The first of these marks that is the starter's ("ip:..." / "dev:..."), or None."""
    if not values:
        return None
    found = int(script(redis, _SHARES)(keys=[key], args=list(values)))
    return values[found - 1] if found else None


# ---- order bursts (RISK_BLOCK_ORDERS) ----------------------------------------------------------

def order_keys(ip_hash: str | None, device_hash: str | None) -> list[str]:
    return ([f"{PREFIX}orders:ip:{ip_hash}"] if ip_hash else []) + (
        [f"{PREFIX}orders:dev:{device_hash}"] if device_hash else [])


def burst_count(redis: Any, keys: Sequence[str], *, now_s: float, window_s: int) -> int:
    """The most orders any of these sets saw inside the window."""
    return int(script(redis, _BURST)(keys=list(keys), args=[now_s, window_s])) if keys else 0


def burst_add(redis: Any, keys: Sequence[str], order_id: int, *, now_s: float, window_s: int) -> None:
    if keys:
        pipe = redis.pipeline(transaction=False)
        for k in keys:
            pipe.zadd(k, {str(order_id): now_s})
            pipe.expire(k, window_s)
        pipe.execute()


# ---- withdrawals ------------------------------------------------------------------------------

def wd_keys(creator_id: int) -> list[str]:
    return [f"{PREFIX}wd:{creator_id}", f"{PREFIX}wd:z:{creator_id}"]


def identity_key(identity: str) -> str:
    return f"{PREFIX}wd:id:{identity}"


def wd_read(redis: Any, creator_id: int, *, now_s: float, days: int) -> tuple[int, int, int] | None:
    """(wallet withdrawals ever, their sum and count inside `days`), or None when cold."""
    n, total, count = (int(v) for v in script(redis, _WD_READ)(keys=wd_keys(creator_id), args=[now_s, days]))
    return None if n < 0 else (n, total, count)


def wd_load(redis: Any, creator_id: int, n: int, recent: Sequence[tuple[float, str, int]], *, days: int,
            ttl_s: int) -> None:
    """Warm a creator from the database: `n` ever, `recent` (time s, no, amount) inside `days`."""
    args: list[object] = [n, days, ttl_s]
    for at, no, amount in recent:
        args += [at, f"{no}:{amount}"]
    script(redis, _WD_LOAD)(keys=wd_keys(creator_id), args=args)


def wd_add(redis: Any, creator_id: int, no: str, amount_fen: int, *, now_s: float) -> None:
    script(redis, _WD_ADD)(keys=wd_keys(creator_id), args=[now_s, f"{no}:{amount_fen}"])


def identities(redis: Any, creator_id: int, identity_hashes: Sequence[str], *, ttl_s: int) -> list[set[int] | None]:
    """Per identity: the creators known to share it (this one added), or None when not loaded."""
    if not identity_hashes:
        return []
    got = script(redis, _IDENTITIES)(keys=[identity_key(h) for h in identity_hashes], args=[creator_id, ttl_s])
    out: list[set[int] | None] = []
    for members in got:
        decoded = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        out.append(None if decoded == ["?"] else {int(m) for m in decoded})
    return out


def identity_load(redis: Any, identity_hash: str, creator_ids: Sequence[int], *, ttl_s: int) -> None:
    """The creators sharing an identity, from the database; the set expires so that creators
    who got the identity later are found again."""
    key = identity_key(identity_hash)
    pipe = redis.pipeline(transaction=True)
    pipe.sadd(key, *creator_ids)
    pipe.expire(key, ttl_s)
    pipe.execute()


# ---- latency ------------------------------------------------------------------------------------

def measure(redis: Any, n: int = 1000) -> dict[str, dict[str, float]]:
    """Time each edge check's Redis round trip `n` times on scratch keys (removed afterwards):
    {check: {"p50_us": ..., "p99_us": ..., "n": n}}. For `qianxing bench risk`."""
    scratch = f"{PREFIX}bench:{time.time_ns()}:"
    claim = [scratch + "claim:ip", scratch + "claim:dev"]
    starter = scratch + "assist"
    remember(redis, starter, ["ip:a" * 8, "dev:b" * 8], 60)
    bursts = [scratch + "orders:ip", scratch + "orders:dev"]
    wd = 10 ** 12 + time.time_ns() % 10 ** 6  # a creator id no real one has
    wd_load(redis, wd, 3, [(time.time() - 60, "WD1", 10_000)], days=30, ttl_s=60)
    ident = f"bench{time.time_ns()}"
    identity_load(redis, ident, [wd], ttl_s=60)
    checks: dict[str, Callable[[int], object]] = {
        "coupon_farming": lambda i: claim_take(redis, claim, i % 2, now_s=time.time(), window_s=60, max_accounts=3),
        "assist_farming": lambda i: shares(redis, starter, ["ip:x", "dev:y"]),
        "group_farming": lambda i: shares(redis, starter, ["ip:x", "dev:y"]),
        "burst_orders": lambda i: burst_count(redis, bursts, now_s=time.time(), window_s=600),
        "withdrawal": lambda i: (wd_read(redis, wd, now_s=time.time(), days=30),
                                 identities(redis, wd, [ident], ttl_s=60)),
    }
    out: dict[str, dict[str, float]] = {}
    try:
        for name, check in checks.items():
            check(0)  # loads the script
            took = []
            for i in range(n):
                t0 = time.perf_counter_ns()
                check(i)
                took.append((time.perf_counter_ns() - t0) / 1000)
            cuts = statistics.quantiles(took, n=100) if len(took) > 1 else took * 99
            out[name] = {"p50_us": round(cuts[49], 1), "p99_us": round(cuts[98], 1), "n": n}
    finally:
        redis.delete(*claim, starter, *bursts, *wd_keys(wd), identity_key(ident))
    return out
