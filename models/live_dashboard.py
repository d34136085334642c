"""The live dashboard's figures: counters in Redis, updated as events happen, read in a few
Redis commands per refresh (never a scan of the orders), and reconciled with the database when
the session ends.

Per session `S` (keys `qx:live:S:*`, functions take the Redis client as an argument):
- `viewers`  sorted set viewer -> last seen (epoch s): online = members seen within the viewer
  timeout (`entered` from the tracking route's live_entry events, `heartbeat` from the room);
- `uv`       HyperLogLog of viewers (unique viewers; about 0.8% error at scale, exact when small);
- `turnup`   set of viewers who had reserved (checked once when a viewer comes online);
- `paid`     set of order ids already counted: `order_paid` counts an order once, however often
  the delivery job that reports it runs (one Lua script: SADD, then the increments);
- `stats`    hash: orders, gmv_fen, placed, placed_fen, peak;
- `buyers`   set of buyer ids; `units` / `sales` hashes sku id -> units / fen;
- `built`    marker: the paid counters hold every paid order of the database. Missing (first look
  at a session, or Redis lost its data), `snapshot` replays the session's paid orders from the
  database through the same once-per-order script, in keyset chunks, then sets it;
- `hist`     list of samples (one per LIVE_DASHBOARD_SAMPLE_S) the hint rules look back over.

`models.live_reconcile.reconcile(session_id, redis)` (tasks/live_dashboard.py, after the session
ends) recomputes orders, GMV, buyers and per-product sales from the database (paid and delivered
orders: expired and refunded ones do not count), stores them in `live_session_stats` (the table
is here: the snapshot of a reconciled session reads its final figures) and overwrites the
counters with them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import peewee as pw

from models.db import BaseModel, JSONText, execute, utcnow
from models.errors import Conflict, NotFound
from models.live import LivePin, LiveSession, LiveState

PREFIX = "qx:live"
SOLD = ("paid", "delivered")  # order states that count as sales (as models.network.SOLD)
CHUNK = 1000  # orders per keyset chunk when replaying or reconciling
STATE_CACHE_S = 5  # a session's state is read from the database at most this often per session
RESERVATION_CACHE_S = 10  # the reservation count (turn-up's denominator)
KEEP_AFTER_RECONCILE_S = 7 * 86400  # counters of a reconciled session expire after this

# Counts an order once: SADD of its id, then the increments, atomically.
# KEYS: paid, stats, buyers, units, sales; ARGV: order id, user id, sku id, amount fen, quantity
_PAID_ONCE = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'orders', 1)
  redis.call('HINCRBY', KEYS[2], 'gmv_fen', ARGV[4])
  redis.call('SADD', KEYS[3], ARGV[2])
  redis.call('HINCRBY', KEYS[4], ARGV[3], ARGV[5])
  redis.call('HINCRBY', KEYS[5], ARGV[3], ARGV[4])
  return 1
end
return 0
"""
# Keeps the highest online count seen. KEYS: stats; ARGV: online
_PEAK = """
local p = tonumber(redis.call('HGET', KEYS[1], 'peak') or '0')
if tonumber(ARGV[1]) > p then redis.call('HSET', KEYS[1], 'peak', ARGV[1]) end
return math.max(p, tonumber(ARGV[1]))
"""


class LiveSessionStats(BaseModel):
    """The final figures of an ended session, from the database (reconcile)."""

    session = pw.ForeignKeyField(LiveSession, primary_key=True, on_delete="CASCADE")
    orders = pw.IntegerField(default=0)  # paid and delivered orders
    gmv_fen = pw.BigIntegerField(default=0)
    buyers = pw.IntegerField(default=0)
    orders_placed = pw.IntegerField(default=0)  # every order placed in the session, any state
    unique_viewers = pw.IntegerField(default=0)  # from Redis at reconcile time (0 if it was lost)
    peak_online = pw.IntegerField(default=0)
    reservations = pw.IntegerField(default=0)
    turned_up = pw.IntegerField(default=0)
    products = JSONText(default=list)  # [{"sku_id", "units", "gmv_fen"}]
    reconciled_at = pw.DateTimeField(default=utcnow)


@dataclass(frozen=True)
class DashboardPolicy:
    """The settings the dashboard reads (LIVE_VIEWER_TIMEOUT_S, LIVE_DASHBOARD_SAMPLE_S,
    LIVE_DASHBOARD_HISTORY)."""

    viewer_timeout_s: int = 60
    sample_every_s: int = 15
    history: int = 240

    @classmethod
    def of(cls, settings: Any) -> DashboardPolicy:
        return cls(settings.LIVE_VIEWER_TIMEOUT_S, settings.LIVE_DASHBOARD_SAMPLE_S, settings.LIVE_DASHBOARD_HISTORY)


def key(session_id: int, name: str) -> str:
    return f"{PREFIX}:{session_id}:{name}"


def _epoch(now: dt.datetime) -> float:
    return now.replace(tzinfo=dt.UTC).timestamp()


def paid_keys(session_id: int, suffix: str = "") -> list[str]:
    return [key(session_id, n + suffix) for n in ("paid", "stats", "buyers", "units", "sales")]


# ---- the session's state, cached ----------------------------------------------------------------

def session_state(redis: Any, session_id: int) -> str | None:
    """The session's state (None: no such session), read from the database at most every
    STATE_CACHE_S seconds per session: entries and heartbeats arrive by the thousand."""
    cached = redis.get(key(session_id, "state"))
    if cached is not None:
        value = cached.decode() if isinstance(cached, bytes) else str(cached)
        return value or None
    row = LiveSession.select(LiveSession.state).where(LiveSession.id == session_id).first()
    state = row.state if row else ""
    redis.set(key(session_id, "state"), state, ex=STATE_CACHE_S)
    return state or None


# ---- events -------------------------------------------------------------------------------------

def entered(redis: Any, session_id: int, viewer_id: int, now: dt.datetime) -> bool:
    """A viewer entered the live room (a live_entry event of the tracking route). Counted only
    while the session is live; a viewer who had reserved counts towards turn-up (checked when
    the viewer comes online, not on every heartbeat). True when counted."""
    if session_state(redis, session_id) != LiveState.LIVE:
        return False
    pipe = redis.pipeline(transaction=False)
    # GT: an entry reported late (tracking batches) never moves a newer heartbeat back
    pipe.zadd(key(session_id, "viewers"), {str(viewer_id): _epoch(now)}, gt=True)
    pipe.pfadd(key(session_id, "uv"), str(viewer_id))
    new_online, _ = pipe.execute()
    if new_online and _reserved(session_id, viewer_id):
        redis.sadd(key(session_id, "turnup"), str(viewer_id))
    return True


def entries_tracked(redis: Any, entries: list[tuple[str, dt.datetime]], viewer_id: int,
                    now: dt.datetime) -> int:
    """The tracking route's hook: live-room entries (ref = session id, when it happened) of one
    logged-in viewer, after they were stored. Refs that are no session id are ignored. Returns
    the entries counted."""
    counted = 0
    for ref, at in entries:
        if ref.isascii() and ref.isdigit() and len(ref) <= 18:
            at = at if at.tzinfo is None else at.astimezone(dt.UTC).replace(tzinfo=None)
            counted += entered(redis, int(ref), viewer_id, min(at, now))
    return counted


def heartbeat(redis: Any, session_id: int, viewer_id: int, now: dt.datetime, *,
              viewer_timeout_s: int = 60) -> int:
    """A logged-in viewer is still in the room: refreshes their last-seen time (a viewer who
    stops sending is gone after the timeout). Returns the viewers online. Raises NotFound
    (live_not_found) and Conflict (session_not_live)."""
    state = session_state(redis, session_id)
    if state is None:
        raise NotFound(f"live session {session_id} not found", code="live_not_found")
    if state != LiveState.LIVE:
        raise Conflict("the session is not live", code="session_not_live")
    entered(redis, session_id, viewer_id, now)
    viewers, cutoff = key(session_id, "viewers"), _epoch(now) - viewer_timeout_s
    pipe = redis.pipeline(transaction=False)
    pipe.zremrangebyscore(viewers, "-inf", f"({cutoff}")  # the gone viewers leave the set
    pipe.zcard(viewers)
    return int(pipe.execute()[1])


def order_placed(redis: Any, session_id: int, sku_id: int, amount_fen: int) -> None:
    """An order was placed in the session (called after the placement committed)."""
    pipe = redis.pipeline(transaction=False)
    pipe.hincrby(key(session_id, "stats"), "placed", 1)
    pipe.hincrby(key(session_id, "stats"), "placed_fen", int(amount_fen))
    pipe.execute()


def order_paid(redis: Any, session_id: int, sku_id: int, amount_fen: int, *, order_id: int,
               user_id: int, quantity: int = 1) -> bool:
    """A paid order of the session: counted once per order id (the job reporting it may run
    twice). True when counted now."""
    args = (order_id, user_id, sku_id, int(amount_fen), int(quantity))
    return bool(redis.eval(_PAID_ONCE, 5, *paid_keys(session_id), *args))


def orders_paid(redis: Any, order_ids: list[int]) -> int:
    """The delivery hook: of these paid orders, count those placed in a live session (one
    indexed query, then one script call per live order in one round trip). Returns how many
    were counted now."""
    live = _live_orders(order_ids)
    if not live:
        return 0
    pipe = redis.pipeline(transaction=False)
    for order_id, session_id, user_id, sku_id, amount, quantity in live:
        pipe.eval(_PAID_ONCE, 5, *paid_keys(session_id), order_id, user_id, sku_id, amount, quantity)
    return sum(int(n) for n in pipe.execute())


def _live_orders(order_ids: list[int]) -> list[tuple[int, int, int, int, int, int]]:
    ids = sorted({int(i) for i in order_ids})
    found: list[tuple[int, int, int, int, int, int]] = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        marks = ", ".join(["%s"] * len(chunk))
        found += execute(
            'SELECT id, live_id, user_id, sku_id, amount_fen, quantity FROM "order" '
            f"WHERE id IN ({marks}) AND live_id IS NOT NULL AND status IN (%s, %s)",
            [*chunk, *SOLD]).fetchall()
    return found


# ---- reading ------------------------------------------------------------------------------------

def as_int(value: Any) -> int:
    return int(value) if value not in (None, b"", "") else 0


def _reserved(session_id: int, user_id: int) -> bool:
    try:
        from models import reservations
    except ImportError:  # reservations not installed: nobody reserved
        return False
    return bool(reservations.is_reserved(session_id, user_id))


def reservation_count(redis: Any, session_id: int) -> int:
    cached = redis.get(key(session_id, "resv"))
    if cached is not None:
        return as_int(cached)
    try:
        from models import reservations
    except ImportError:
        count = 0
    else:
        count = int(reservations.count(session_id))
    redis.set(key(session_id, "resv"), count, ex=RESERVATION_CACHE_S)
    return count


def _offers(session_id: int) -> dict[int, dict]:
    """Current tier price and stock per pin (models/live_prices.py: from its sold-out gate)."""
    try:
        from models import live_prices
    except ImportError:
        return {}
    return live_prices.offers(session_id) or {}


def sold_order_chunks(session_id: int) -> Iterator[list[tuple[Any, ...]]]:
    """The session's sold orders, (id, user_id, sku_id, amount_fen, quantity), in keyset chunks
    of CHUNK by id."""
    after = 0
    while True:
        rows = execute(
            'SELECT id, user_id, sku_id, amount_fen, quantity FROM "order" '
            "WHERE live_id = %s AND status IN (%s, %s) AND id > %s ORDER BY id LIMIT %s",
            [session_id, *SOLD, after, CHUNK]).fetchall()
        if not rows:
            return
        yield rows
        after = rows[-1][0]


def ensure_built(redis: Any, session_id: int) -> bool:
    """Make the paid counters whole: when the `built` marker is missing (first look, or Redis
    lost its data) replay the session's paid orders from the database through the once-per-order
    script, in keyset chunks, then set the marker. One replay at a time per session. True when
    the counters are known whole."""
    if redis.exists(key(session_id, "built")):
        return True
    if not redis.set(key(session_id, "rebuild"), 1, nx=True, ex=60):
        return False  # another request is replaying: show what is there
    try:
        for rows in sold_order_chunks(session_id):
            pipe = redis.pipeline(transaction=False)
            for order_id, user_id, sku_id, amount, quantity in rows:
                pipe.eval(_PAID_ONCE, 5, *paid_keys(session_id), order_id, user_id, sku_id, amount, quantity)
            pipe.execute()
        redis.set(key(session_id, "built"), 1)
    finally:
        redis.delete(key(session_id, "rebuild"))
    return True


def _ratio_bp(part: int, whole: int) -> int:
    return part * 10_000 // whole if whole else 0


def snapshot(redis: Any, session_id: int, *, now: dt.datetime | None = None,
             policy: DashboardPolicy | None = None) -> dict[str, Any]:
    """The session's figures now: online and peak viewers, unique viewers, placed and paid
    orders, GMV (fen), buyers, conversion (buyers / unique viewers, basis points), reservations
    and turn-up, and per pinned product its sales with the current tier price and what is left
    (live_prices.offers). A few Redis commands and two small indexed reads; a reconciled session
    shows its stored final figures. Raises NotFound (live_not_found)."""
    now, policy = now or utcnow(), policy or DashboardPolicy()
    session, final = _session_and_final(session_id)
    whole = True if final else ensure_built(redis, session_id)
    cutoff = _epoch(now) - policy.viewer_timeout_s
    pipe = redis.pipeline(transaction=False)
    pipe.zcount(key(session_id, "viewers"), cutoff, "+inf")
    pipe.pfcount(key(session_id, "uv"))
    pipe.scard(key(session_id, "turnup"))
    pipe.hgetall(key(session_id, "stats"))
    pipe.scard(key(session_id, "buyers"))
    pipe.hgetall(key(session_id, "units"))
    pipe.hgetall(key(session_id, "sales"))
    online, uv, turnup, stats, buyers, units, sales = pipe.execute()
    stats = {(k.decode() if isinstance(k, bytes) else k): as_int(v) for k, v in stats.items()}
    units = {int(k): as_int(v) for k, v in units.items()}
    sales = {int(k): as_int(v) for k, v in sales.items()}
    live_now = session.state == LiveState.LIVE
    online = int(online) if live_now else 0
    peak = max(stats.get("peak", 0), online)
    figures = {"orders": stats.get("orders", 0), "gmv_fen": stats.get("gmv_fen", 0), "buyers": int(buyers),
               "orders_placed": stats.get("placed", 0), "unique_viewers": int(uv), "peak_online": peak,
               "turned_up": int(turnup)}
    reservations = reservation_count(redis, session_id)
    if final is not None:
        figures.update(orders=final.orders, gmv_fen=final.gmv_fen, buyers=final.buyers,
                       orders_placed=final.orders_placed, unique_viewers=max(final.unique_viewers, int(uv)),
                       peak_online=max(final.peak_online, peak), turned_up=max(final.turned_up, int(turnup)))
        units = {p["sku_id"]: p["units"] for p in final.products}
        sales = {p["sku_id"]: p["gmv_fen"] for p in final.products}
        reservations = max(reservations, final.reservations)
    return {
        "session_id": session_id, "title": session.title, "state": session.state,
        "as_of": now.isoformat() + "Z", "final": final is not None, "complete": whole,
        "online": online, **figures,
        "conversion_bp": _ratio_bp(figures["buyers"], figures["unique_viewers"]),
        "reservations": reservations, "turnup_bp": _ratio_bp(figures["turned_up"], reservations),
        "products": _products(session_id, units, sales),
    }


class _Final:
    """A live_session_stats row as the snapshot reads it."""

    def __init__(self, row: tuple) -> None:
        (self.orders, self.gmv_fen, self.buyers, self.orders_placed, self.unique_viewers, self.peak_online,
         self.turned_up, self.reservations, products) = row
        self.products = LiveSessionStats.products.python_value(products) or []


class _Session:
    def __init__(self, title: str, state: str) -> None:
        self.title, self.state = title, state


def _session_and_final(session_id: int) -> tuple[_Session, _Final | None]:
    """The session's title and state and its final figures, if reconciled: one query (plain
    SQL: the dashboard is read every second or two)."""
    row = execute(
        "SELECT ls.title, ls.state, st.session_id, st.orders, st.gmv_fen, st.buyers, st.orders_placed, "
        "st.unique_viewers, st.peak_online, st.turned_up, st.reservations, st.products "
        "FROM live_session ls LEFT JOIN live_session_stats st ON st.session_id = ls.id WHERE ls.id = %s",
        [session_id]).fetchone()
    if row is None:
        raise NotFound(f"live session {session_id} not found", code="live_not_found")
    return _Session(row[0], row[1]), (_Final(row[3:]) if row[2] is not None else None)


def _products(session_id: int, units: dict[int, int], sales: dict[int, int]) -> list[dict[str, Any]]:
    """Per pinned product (and any other product sold in the session): sales and tier stock."""
    offers = _offers(session_id)
    pins = execute("SELECT p.id, p.sku_id, p.slot_at, s.code, s.name FROM live_pin p JOIN sku s ON s.id = p.sku_id "
                   "WHERE p.session_id = %s ORDER BY p.position, p.id", [session_id]).fetchall()
    names = {sku_id: (code, name) for _pin, sku_id, _slot, code, name in pins}
    out = [_product(sku_id, names, units, sales, pin_id=pin_id, offer=offers.get(pin_id),
                    slot_at=LivePin.slot_at.python_value(slot))
           for pin_id, sku_id, slot, _code, _name in pins]
    unpinned = sorted(set(units) - set(names))
    if unpinned:  # sold in the session without being pinned (a shared product link)
        from models.catalog import Sku

        names.update({i: (c, n) for i, c, n in Sku.select(Sku.id, Sku.code, Sku.name)
                      .where(Sku.id.in_(unpinned)).tuples()})
        out += [_product(sku_id, names, units, sales) for sku_id in unpinned]
    return out


def _product(sku_id: int, names: dict, units: dict, sales: dict, *, pin_id: int | None = None,
             offer: dict | None = None, slot_at: dt.datetime | None = None) -> dict[str, Any]:
    code, name = names.get(sku_id, ("", ""))
    offer = offer or {}
    return {"sku_id": sku_id, "sku": code, "name": name, "pin_id": pin_id,
            "slot_at": slot_at.isoformat() + "Z" if slot_at else None,
            "units": units.get(sku_id, 0), "gmv_fen": sales.get(sku_id, 0),
            "price_fen": offer.get("price_fen"), "tier": offer.get("tier"),
            "left_at_tier": offer.get("left_at_tier"), "left_total": offer.get("left_total"),
            "sold_out": bool(offer.get("sold_out", False))}


# ---- history (what the hint rules look back over) -----------------------------------------------

SAMPLED = ("online", "unique_viewers", "orders", "gmv_fen", "buyers", "conversion_bp", "turnup_bp")


def sample(redis: Any, snap: dict[str, Any], now: dt.datetime, policy: DashboardPolicy) -> bool:
    """Keep one sample of the figures per `sample_every_s` of `now` (at most `history`
    samples) and the peak online count. True when a sample was taken."""
    session_id = snap["session_id"]
    redis.eval(_PEAK, 1, key(session_id, "stats"), int(snap["online"]))
    last = redis.lindex(key(session_id, "hist"), 0)
    t = round(_epoch(now), 3)
    if last is not None and t - json.loads(last)["t"] < policy.sample_every_s:
        return False  # two lookers at once may both sample: one extra point, harmless
    point = {"t": t, **{k: snap[k] for k in SAMPLED}}
    pipe = redis.pipeline(transaction=False)
    pipe.lpush(key(session_id, "hist"), json.dumps(point))
    pipe.ltrim(key(session_id, "hist"), 0, policy.history - 1)
    pipe.execute()
    return True


def history(redis: Any, session_id: int) -> list[dict[str, Any]]:
    """The kept samples, oldest first."""
    return [json.loads(raw) for raw in reversed(redis.lrange(key(session_id, "hist"), 0, -1))]
