"""The end of a live session's dashboard: its final figures recomputed from the database and
the Redis counters overwritten with them (models/live_dashboard.py keeps the counters).

Run by the sweep in tasks/live_dashboard.py (`reconcile_ended`) once a session has been ended
for LIVE_DASHBOARD_RECONCILE_DELAY_S (orders placed in the room and paid just after the end
are in by then), and by `qianxing live reconcile-dashboard SESSION` by hand."""

from __future__ import annotations

import datetime as dt
from typing import Any

from models.db import db, execute, utcnow
from models.errors import NotFound
from models.live import LiveSession, LiveState
from models.live_dashboard import (
    KEEP_AFTER_RECONCILE_S,
    LiveSessionStats,
    as_int,
    key,
    paid_keys,
    reservation_count,
    sold_order_chunks,
)


def reconcile(session_id: int, redis: Any, *, now: dt.datetime | None = None) -> LiveSessionStats:
    """The session's final figures from the database: paid and delivered orders, GMV, distinct
    buyers, per-product units and GMV, and every order placed (keyset chunks: memory stays
    bounded). Stored in live_session_stats (one row per session; a second run rewrites it), then
    the Redis counters are overwritten with them: built in scratch keys and renamed into place
    in one MULTI, so a reader never sees them half written. Raises NotFound (live_not_found)."""
    now = now or utcnow()
    if not LiveSession.select().where(LiveSession.id == session_id).exists():
        raise NotFound(f"live session {session_id} not found", code="live_not_found")
    scratch = paid_keys(session_id, ":new")
    redis.delete(*scratch)
    orders = gmv = 0
    units: dict[int, int] = {}
    sales: dict[int, int] = {}
    for rows in sold_order_chunks(session_id):
        pipe = redis.pipeline(transaction=False)
        pipe.sadd(scratch[0], *[r[0] for r in rows])
        pipe.sadd(scratch[2], *{r[1] for r in rows})
        pipe.execute()
        for _order_id, _user_id, sku_id, amount, quantity in rows:
            orders, gmv = orders + 1, gmv + amount
            units[sku_id] = units.get(sku_id, 0) + quantity
            sales[sku_id] = sales.get(sku_id, 0) + amount
    buyers = int(redis.scard(scratch[2]))
    placed, placed_fen = execute('SELECT COUNT(*), COALESCE(SUM(amount_fen), 0) FROM "order" WHERE live_id = %s',
                                 [session_id]).fetchone()
    pipe = redis.pipeline(transaction=False)
    pipe.pfcount(key(session_id, "uv"))
    pipe.hget(key(session_id, "stats"), "peak")
    pipe.scard(key(session_id, "turnup"))
    uv, peak, turnup = pipe.execute()
    products = [{"sku_id": s, "units": units[s], "gmv_fen": sales[s]} for s in sorted(units)]
    figures = dict(orders=orders, gmv_fen=gmv, buyers=buyers, orders_placed=int(placed),
                   unique_viewers=int(uv), peak_online=as_int(peak), turned_up=int(turnup),
                   reservations=reservation_count(redis, session_id), products=products, reconciled_at=now)
    with db.atomic():
        stats = LiveSessionStats.get_or_none(LiveSessionStats.session == session_id)
        if stats is None:
            stats = LiveSessionStats.create(session=session_id, **figures)
        else:
            LiveSessionStats.update(**figures).where(LiveSessionStats.session == session_id).execute()
            stats = LiveSessionStats.get_by_id(session_id)
    _overwrite(redis, session_id, scratch, stats, units, sales, int(placed_fen))
    return stats


def _overwrite(redis: Any, session_id: int, scratch: list[str], stats: LiveSessionStats,
               units: dict[int, int], sales: dict[int, int], placed_fen: int) -> None:
    """Replace the paid counters with the reconciled figures in one MULTI (the scratch sets
    exist exactly when there were paid orders)."""
    paid, hash_, buyers, units_key, sales_key = paid_keys(session_id)
    pipe = redis.pipeline(transaction=True)
    pipe.delete(paid, buyers, units_key, sales_key)
    if stats.orders:
        pipe.rename(scratch[0], paid)
        pipe.rename(scratch[2], buyers)
        pipe.hset(units_key, mapping={str(k): v for k, v in units.items()})
        pipe.hset(sales_key, mapping={str(k): v for k, v in sales.items()})
    pipe.hset(hash_, mapping={"orders": stats.orders, "gmv_fen": stats.gmv_fen, "placed": stats.orders_placed,
                              "placed_fen": placed_fen})
    pipe.set(key(session_id, "built"), 1)
    for name in ("paid", "stats", "buyers", "units", "sales", "built", "viewers", "uv", "turnup", "hist"):
        pipe.expire(key(session_id, name), KEEP_AFTER_RECONCILE_S)
    pipe.execute()


def unreconciled(now: dt.datetime, *, delay_s: int, within: dt.timedelta = dt.timedelta(days=7),
                 limit: int = 50) -> list[int]:
    """Sessions that ended at least `delay_s` ago (late payments of orders placed in the room
    have come in), within `within`, and have no final figures yet: the sweep's work, oldest
    first (the partial index on ended_at, migration 0018)."""
    rows = execute(
        "SELECT ls.id FROM live_session ls LEFT JOIN live_session_stats st ON st.session_id = ls.id "
        "WHERE ls.ended_at IS NOT NULL AND ls.ended_at <= %s AND ls.ended_at > %s AND ls.state = %s "
        "AND st.session_id IS NULL ORDER BY ls.ended_at LIMIT %s",
        [_db_time(now - dt.timedelta(seconds=delay_s)), _db_time(now - within), LiveState.ENDED.value,
         limit]).fetchall()
    return [r[0] for r in rows]


def _db_time(value: dt.datetime) -> Any:
    return LiveSession.ended_at.db_value(value)
