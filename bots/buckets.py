"""Token buckets in Redis, shared by every process that sends: the outbound sender's rate limits.

Each bucket is a GCRA cell (the token bucket expressed as one timestamp): Redis keeps the
bucket's "theoretical arrival time" `tat` in microseconds of Redis' own clock (`TIME`), so
every process agrees on it. A bucket refilling `rate` tokens a second with room for `burst`
tokens lets a message through at `tat - (burst - 1) / rate`, and taking a token moves `tat`
on by `1 / rate`.

`take(*buckets)` is one atomic Lua call over several buckets at once (say: the platform's
overall bucket, the chat's and the group's): it finds the earliest moment all of them allow a
message, RESERVES that moment in every bucket and returns how many seconds away it is, so the
caller sleeps exactly that long and sends without asking again. With `max_wait` a moment
further away than that is not reserved (the caller puts the message back for later).
`take_many` does the same for a whole batch of messages in one round trip (a drain reserves
hundreds of sends per call), and `pause(bucket, seconds)` holds a bucket shut, for a 429's
`retry_after`.

Keys (see `Limits.for_message`): `qianxing:tb:{platform}:all` (overall), `...:paid` (paid
broadcast, instead of the overall one), `...:chat:{id}` and `...:group:{id}`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis import Redis

    from qianxing.settings import Settings

PREFIX = "qianxing:tb"

# ARGV: max_wait_us, n_requests, then per request: n_keys, then per key: interval_us, tau_us,
# shared (1: the platform-wide bucket). KEYS: every request's keys, in order.
# Returns per request: reserved (1/0), wait_us.
#
# Requests with the same chat keys form a group that keeps its order; the groups are served in
# rounds (every group's first request, then every second one ...), each round in order of the
# moment the chat buckets allow, so a chat that must wait never blocks the shared bucket for
# chats that need not (GCRA keeps one timestamp per bucket: reserving a moment in the future
# would otherwise shut everything before it). A request whose moment is beyond max_wait is not
# reserved, and neither are the later ones of its group.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max_wait = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local tats, dirty = {}, {}
local function tat_of(key)
  local v = tats[key]
  if v == nil then
    v = tonumber(redis.call('GET', key) or '0') or 0
    tats[key] = v
  end
  if v < now then v = now end
  return v
end
local groups, order = {}, {}
local ki, ai = 1, 3
for r = 1, n do
  local nk = tonumber(ARGV[ai]); ai = ai + 1
  local req = {idx = r, keys = {}, iv = {}, tau = {}, shared = {}}
  local sig = {}
  for j = 1, nk do
    req.keys[j] = KEYS[ki]
    req.iv[j] = tonumber(ARGV[ai]); req.tau[j] = tonumber(ARGV[ai + 1]); req.shared[j] = ARGV[ai + 2] == '1'
    if not req.shared[j] then sig[#sig + 1] = KEYS[ki] end
    ki = ki + 1; ai = ai + 3
  end
  local name = table.concat(sig, '|')
  if name == '' then name = '#' .. r end
  local g = groups[name]
  if g == nil then
    g = {items = {}, blocked = nil}
    groups[name] = g
    order[#order + 1] = g
  end
  g.items[#g.items + 1] = req
end
local out = {}
local round = 1
while true do
  local batch, any = {}, false
  for _, g in ipairs(order) do
    local req = g.items[round]
    if req ~= nil then
      any = true
      if g.blocked then
        out[req.idx] = {0, g.blocked}
      else
        local tl = now
        for j = 1, #req.keys do
          if not req.shared[j] and tat_of(req.keys[j]) - req.tau[j] > tl then
            tl = tat_of(req.keys[j]) - req.tau[j]
          end
        end
        req.tl = tl; req.g = g
        batch[#batch + 1] = req
      end
    end
  end
  if not any then break end
  table.sort(batch, function(a, b) if a.tl ~= b.tl then return a.tl < b.tl end return a.idx < b.idx end)
  for _, req in ipairs(batch) do
    local allowed = req.tl
    for j = 1, #req.keys do
      if req.shared[j] and tat_of(req.keys[j]) - req.tau[j] > allowed then
        allowed = tat_of(req.keys[j]) - req.tau[j]
      end
    end
    local wait = allowed - now
    if wait <= max_wait then
      for j = 1, #req.keys do
        local v = tat_of(req.keys[j])
        if v < allowed then v = allowed end
        tats[req.keys[j]] = v + req.iv[j]
        dirty[req.keys[j]] = true
      end
      out[req.idx] = {1, wait}
    else
      req.g.blocked = wait
      out[req.idx] = {0, wait}
    end
  end
  round = round + 1
end
local flat = {}
for r = 1, n do
  flat[#flat + 1] = out[r][1]
  flat[#flat + 1] = out[r][2]
end
for key, _ in pairs(dirty) do
  local ms = math.floor((tats[key] - now) / 1000) + 1000
  redis.call('SET', key, string.format('%.0f', tats[key]), 'PX', ms)
end
return flat
"""

# KEYS[1]: bucket; ARGV: pause_us, tau_us. Shut the bucket until now + pause.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local want = now + tonumber(ARGV[1]) + tonumber(ARGV[2])
if want > tat then
  redis.call('SET', KEYS[1], string.format('%.0f', want), 'PX', math.floor((want - now) / 1000) + 1000)
end
return 1
"""


@dataclass(frozen=True)
class Bucket:
    key: str
    rate: float  # tokens per second
    burst: int = 1  # tokens it holds when full
    shared: bool = False  # platform-wide (every chat draws from it), not one chat's

    @property
    def interval_us(self) -> int:
        return max(1, round(1_000_000 / self.rate))

    @property
    def tau_us(self) -> int:
        return (max(1, self.burst) - 1) * self.interval_us


class Buckets:
    """The shared buckets of one Redis."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._take = redis.register_script(_TAKE)
        self._pause = redis.register_script(_PAUSE)

    def take(self, *buckets: Bucket, max_wait: float = math.inf) -> float:
        """Reserve the earliest moment every bucket allows one message; return the seconds
        until it (0: send now). A moment more than `max_wait` away is returned but not taken."""
        (_, wait), = self.take_many([buckets], max_wait=max_wait)
        return wait

    def take_many(self, requests: Sequence[Sequence[Bucket]], *,
                  max_wait: float = math.inf) -> list[tuple[bool, float]]:
        """`take` for a batch in one round trip, in order: per request (reserved, wait_s)."""
        if not requests:
            return []
        keys: list[str] = []
        args: list[Any] = [_us(max_wait), len(requests)]
        for buckets in requests:
            args.append(len(buckets))
            for bucket in buckets:
                keys.append(bucket.key)
                args += [bucket.interval_us, bucket.tau_us, 1 if bucket.shared else 0]
        raw = self._take(keys=keys, args=args)
        return [(bool(raw[i]), int(raw[i + 1]) / 1_000_000) for i in range(0, len(raw), 2)]

    def pause(self, bucket: Bucket, seconds: float) -> None:
        """Hold the bucket shut for `seconds` from now (a 429's retry_after)."""
        self._pause(keys=[bucket.key], args=[_us(seconds), bucket.tau_us])


def _us(seconds: float) -> int:
    return 2**52 if math.isinf(seconds) else max(0, round(seconds * 1_000_000))


@dataclass(frozen=True)
class Limits:
    """The platforms' limits (settings), and which buckets a message goes through.

    Bursts: the overall buckets hold 5% of a second's worth (so a flood of sends never goes
    above the rate in any one-second window by more than that); a chat holds 3 (Telegram
    tolerates short bursts in a chat) and so does a group.
    """

    telegram_per_s: float = 30.0
    telegram_per_chat_per_s: float = 1.0
    telegram_per_group_per_min: float = 20.0
    telegram_paid_per_s: float = 1000.0
    wechat_per_s: float = 50.0
    wxa_per_s: float = 50.0  # mini-program subscribe messages
    chat_burst: int = 3
    group_burst: int = 3
    overall_burst_share: float = 0.05
    prefix: str = PREFIX  # a benchmark keeps its buckets apart from the service's

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Limits:
        values: dict[str, Any] = dict(
            telegram_per_s=settings.TELEGRAM_RATE_PER_S,
            telegram_per_chat_per_s=settings.TELEGRAM_RATE_PER_CHAT_PER_S,
            telegram_per_group_per_min=settings.TELEGRAM_RATE_PER_GROUP_PER_MIN,
            telegram_paid_per_s=settings.TELEGRAM_PAID_BROADCAST_PER_S,
            wechat_per_s=settings.WECHAT_OA_RATE_PER_S,
            wxa_per_s=settings.WXA_SUBSCRIBE_RATE_PER_S,
        )
        values.update(overrides)
        return cls(**values)

    def _overall(self, name: str, rate: float) -> Bucket:
        return Bucket(name, rate, max(1, math.ceil(rate * self.overall_burst_share)), shared=True)

    def overall(self, platform: str, *, paid: bool = False) -> Bucket | None:
        if platform == "telegram":
            if paid:
                return self._overall(f"{self.prefix}:telegram:paid", self.telegram_paid_per_s)
            return self._overall(f"{self.prefix}:telegram:all", self.telegram_per_s)
        if platform == "wechat":
            return self._overall(f"{self.prefix}:wechat:all", self.wechat_per_s)
        if platform == "wxa":
            return self._overall(f"{self.prefix}:wxa:all", self.wxa_per_s)
        return None  # the console has no limits

    def chat(self, platform: str, chat_id: str) -> Bucket | None:
        if platform != "telegram":
            return None
        return Bucket(f"{self.prefix}:telegram:chat:{chat_id}", self.telegram_per_chat_per_s, self.chat_burst)

    def group(self, platform: str, chat_id: str) -> Bucket | None:
        if platform != "telegram":
            return None
        return Bucket(f"{self.prefix}:telegram:group:{chat_id}", self.telegram_per_group_per_min / 60.0,
                      self.group_burst)

    def for_message(self, platform: str, chat_id: str, chat_kind: str = "private", *,
                    paid: bool = False) -> list[Bucket]:
        """Every bucket one message to `chat_id` takes a token from."""
        found = [self.overall(platform, paid=paid), self.chat(platform, chat_id)]
        if chat_kind == "group":
            found.append(self.group(platform, chat_id))
        return [b for b in found if b is not None]
