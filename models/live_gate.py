"""The sold-out gate of live price ladders: one Redis counter per pinned product, "places left
at all tiers", so that a request for an exhausted ladder is refused without a database
transaction (or any query). The database stays the authority: every order the gate lets through
is re-checked by the tier's conditional UPDATE (models.live_prices.claim).

- `take(redis, pin_id, q, ...)`: one round trip (a Lua script): refuse when fewer than q places
  are left, else decrement. A key that is missing (never loaded, expired, Redis restarted or
  flushed) answers MISSING, and the caller loads it from the database with `load` (SET NX, so
  concurrent loaders agree) and asks again.
- The counter may only ever be too HIGH, never too low for long: too high costs a database
  attempt that the conditional UPDATE refuses; too low would refuse buyers while places are left.
  So a request the database refused after the gate let it through gives its place back (or sets
  the counter to what the database said is left), and every key expires `ttl_s` after it was
  loaded: places given back by expiry or refund (and a counter left low by a process killed
  mid-request) show at the gate within that time.
- A replay of an order already placed (same buyer and Idempotency-Key) passes the gate even when
  sold out, so the buyer gets the order back instead of a refusal: `remember` marks it.
- Redis unreachable: the caller skips the gate and lets the database decide.

The client is passed in (duck-typed redis-py); models/ never imports redis.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from models.redis_scripts import script

PREFIX = "live:gate:"


class Gate(Enum):
    HELD = "held"  # a place is held at the gate: go to the database
    SOLD_OUT = "sold_out"
    MISSING = "missing"  # the counter is not loaded
    REPLAY = "replay"  # this buyer's key already made an order: let the database answer it


# KEYS[1] the pin's counter, KEYS[2] the buyer's idempotency mark (or ""); ARGV[1] the quantity.
_TAKE = """
if KEYS[2] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then return -2 end
local left = redis.call('GET', KEYS[1])
if not left then return -1 end
if tonumber(left) < tonumber(ARGV[1]) then return -3 end
redis.call('DECRBY', KEYS[1], ARGV[1])
return 1
"""
# Give places back only to a counter that exists (a reloaded one already counts them).
_GIVE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end
return -1
"""
_ANSWERS = {1: Gate.HELD, -1: Gate.MISSING, -2: Gate.REPLAY, -3: Gate.SOLD_OUT}


def key(pin_id: int) -> str:
    return f"{PREFIX}{pin_id}"


def replay_key(user_id: int, idempotency_key: str) -> str:
    return f"live:idem:{user_id}:{idempotency_key}"


def take(redis: Any, pin_id: int, quantity: int, *, user_id: int,
         idempotency_key: str | None) -> Gate:
    """Hold `quantity` places at the gate (one round trip). Redis errors propagate: the caller
    then skips the gate."""
    mark = replay_key(user_id, idempotency_key) if idempotency_key else ""
    return _ANSWERS[int(script(redis, _TAKE)(keys=[key(pin_id), mark], args=[quantity]))]


def load(redis: Any, pin_id: int, left: int, ttl_s: int) -> None:
    """Set a missing counter to `left` (read from the database), expiring after `ttl_s`."""
    redis.set(key(pin_id), max(left, 0), nx=True, ex=ttl_s)


def give(redis: Any, pin_id: int, quantity: int) -> None:
    """Give places held at the gate back (the database refused the order, or it failed)."""
    script(redis, _GIVE)(keys=[key(pin_id)], args=[quantity])


def settle(redis: Any, pin_id: int, left: int) -> None:
    """The database said only `left` places are left: lower the counter to that (it keeps its
    expiry). Other requests still in flight may give theirs back later: the counter can only
    err high."""
    redis.set(key(pin_id), max(left, 0), xx=True, keepttl=True)


def forget(redis: Any, pin_ids: list[int]) -> None:
    """Drop counters (places were given back): the next request reloads them."""
    if pin_ids:
        redis.delete(*[key(p) for p in set(pin_ids)])


def remember(redis: Any, user_id: int, idempotency_key: str | None, order_id: int, ttl_s: int) -> None:
    """Mark that this buyer's key made an order, so its replay passes the gate."""
    if idempotency_key:
        redis.set(replay_key(user_id, idempotency_key), order_id, ex=ttl_s)
