"""A creator's personal funnel against creators of the same star level (issue 16, the funnel
hint): video plays -> live-room entries -> orders, as models.levels.funnel counts them
(activity_event video_play / live_entry, sold orders with the creator as seller).

Three steps, each compared with the median of the active creators of the same rank:
- `plays`: video plays (over the peers with at least one play: most creators of a level may
  never have posted, and a median of 0 would compare with nobody);
- `entries`: live entries per play, basis points (over the peers with at least one play);
- `orders`: orders per live entry, basis points (over the peers with at least one entry).
The weakest step is the one with the lowest own / median ratio among the steps whose median
is above 0 and that the creator reached (a rate of entries needs plays, a rate of orders needs
entries: without plays, plays is the weakest step); None when no peer has any figure yet.
Medians are the lower median (an integer of the data). Three GROUP BY queries over the peers,
whatever their number; the medians of a rank are then kept for MEDIAN_CACHE_S in Redis when a
client is given.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from models.db import execute
from models.network import SOLD, Creator

STEPS = ("plays", "entries", "orders")
MEDIAN_CACHE_S = 600


@dataclass(frozen=True)
class Medians:
    peers: int  # active creators of the rank
    plays: int
    entry_bp: int
    order_bp: int


@dataclass(frozen=True)
class Comparison:
    rank: int
    plays: int
    entries: int
    orders: int
    medians: Medians
    weakest: str | None  # one of STEPS, None: nothing to compare with yet

    @property
    def entry_bp(self) -> int:
        return self.entries * 10_000 // self.plays if self.plays else 0

    @property
    def order_bp(self) -> int:
        return self.orders * 10_000 // self.entries if self.entries else 0

    def as_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "plays": self.plays, "live_entries": self.entries, "orders": self.orders,
                "entry_bp": self.entry_bp, "order_bp": self.order_bp, "weakest": self.weakest,
                "peers": {"count": self.medians.peers, "plays": self.medians.plays,
                          "entry_bp": self.medians.entry_bp, "order_bp": self.medians.order_bp}}


def _ratio(part: int, whole: int) -> int:
    return part * 10_000 // whole if whole else 0


def _own(creator_id: int) -> tuple[int, int, int]:
    plays, entries = execute(
        'SELECT COALESCE(SUM(CASE WHEN kind = %s THEN "count" ELSE 0 END), 0), '
        'COALESCE(SUM(CASE WHEN kind = %s THEN "count" ELSE 0 END), 0) FROM activity_event WHERE creator_id = %s',
        ["video_play", "live_entry", creator_id]).fetchone()
    (orders,) = execute('SELECT COUNT(*) FROM "order" WHERE seller_id = %s AND status IN (%s, %s)',
                        [creator_id, *SOLD]).fetchone()
    return int(plays or 0), int(entries or 0), int(orders or 0)


def level_medians(rank: int) -> Medians:
    """The medians of the active creators of `rank` (three GROUP BY queries)."""
    (peers,) = execute("SELECT COUNT(*) FROM creator WHERE rank = %s AND active", [rank]).fetchone()
    activity = execute(
        'SELECT a.creator_id, SUM(CASE WHEN a.kind = %s THEN a."count" ELSE 0 END), '
        'SUM(CASE WHEN a.kind = %s THEN a."count" ELSE 0 END) FROM activity_event a '
        "JOIN creator c ON c.id = a.creator_id WHERE c.rank = %s AND c.active AND a.kind IN (%s, %s) "
        "GROUP BY a.creator_id", ["video_play", "live_entry", rank, "video_play", "live_entry"]).fetchall()
    sold = dict(execute(
        'SELECT o.seller_id, COUNT(*) FROM "order" o JOIN creator c ON c.id = o.seller_id '
        "WHERE c.rank = %s AND c.active AND o.status IN (%s, %s) GROUP BY o.seller_id", [rank, *SOLD]).fetchall())
    plays = {cid: int(p or 0) for cid, p, _ in activity}
    entries = {cid: int(e or 0) for cid, _, e in activity}
    play_values = [v for v in plays.values() if v > 0]
    entry_rates = [_ratio(entries[c], plays[c]) for c in plays if plays[c] > 0]
    order_rates = [_ratio(int(sold.get(c, 0)), entries[c]) for c in entries if entries[c] > 0]
    return Medians(int(peers), statistics.median_low(play_values) if play_values else 0,
                   statistics.median_low(entry_rates) if entry_rates else 0,
                   statistics.median_low(order_rates) if order_rates else 0)


def _cached_medians(rank: int, redis: Any) -> Medians:
    if redis is None:
        return level_medians(rank)
    key = f"qx:funnel:medians:{rank}"
    raw = redis.get(key)
    if raw is not None:
        try:
            return Medians(**json.loads(raw))
        except (TypeError, ValueError):
            pass
    found = level_medians(rank)
    redis.set(key, json.dumps(asdict(found)), ex=MEDIAN_CACHE_S)
    return found


def weakest(plays: int, entries: int, orders: int, m: Medians) -> str | None:
    """The step furthest below its median (own / median, lowest first; ties: the earlier step)."""
    steps = [("plays", plays, m.plays, True), ("entries", _ratio(entries, plays), m.entry_bp, plays > 0),
             ("orders", _ratio(orders, entries), m.order_bp, entries > 0)]
    ratios = [(own / median, step) for step, own, median, reached in steps if median > 0 and reached]
    if not ratios:
        return None
    return min(ratios, key=lambda r: (r[0], STEPS.index(r[1])))[1]


def compare(creator: Creator, *, redis: Any = None) -> Comparison:
    """The creator's funnel, the medians of the same rank and the weakest step."""
    plays, entries, orders = _own(creator.id)
    medians = _cached_medians(creator.rank, redis)
    return Comparison(creator.rank, plays, entries, orders, medians,
                      weakest(plays, entries, orders, medians))
