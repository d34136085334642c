"""What the order-scope risk rules share (issue 15): the batch, SQL dialect helpers, the
batch's signals, index probes of many keys in one query, and exact sliding windows.

Windows ("N orders from one IP in M minutes") are found exactly: an order is caught when some
window of the rule's length that contains it holds enough orders. The signals sharing a key
with the batch's orders, within the batch's time span widened by twice the window, are read
in one query per key kind: a scan of the `at` index over that span when it holds few more
rows than the batch (a batch of consecutive orders and a short window), else one probe per
key of the risk_signal (hash, at, user_id, order_id) index, index-only, where keys with a
single row (nearly every honest one) are counted in SQL and never brought back. The windows
are slid over them in Python (two pointers, linear in the rows read).
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from models.db import execute, is_postgres

LINKED_MAX = 20  # linked order ids kept in a hit's evidence
SLACK_S = 86_400  # placed -> paid: orders expire long before a day
EPOCH = dt.datetime(1970, 1, 1)
SPAN_MIN_ORDERS = 500  # below this a batch probes its keys (per-order and small re-scores)
SPAN_MAX_WIDEN = 2  # ... and when the widened span would read over (1 + this) times the batch


@dataclass(frozen=True)
class Batch:
    lo: int  # exclusive
    hi: int  # inclusive
    orders: dict[int, tuple[int, int | None]]  # order id -> (buyer user id, seller creator id)
    cache: dict[Any, Any] = field(default_factory=dict, compare=False)  # reads shared by the rules
    run: dict[Any, Any] = field(default_factory=dict, compare=False)  # kept across one call's batches


Found = dict[int, dict[str, Any]]


# -- SQL dialect helpers --------------------------------------------------------------------------

def shift(expr: str, seconds: int) -> str:
    """`expr` (a timestamp column) moved by whole seconds, comparable with stored timestamps."""
    seconds = int(seconds)
    if is_postgres():
        return f"({expr} + interval '{seconds} seconds')"
    return f"strftime('%Y-%m-%d %H:%M:%f', {expr}, '{seconds:+d} seconds')"


def probe(cols: list[str], source: str, on: str, values: Iterable[Any],
          kind: str = "text") -> tuple[str, list[Any]]:
    """`SELECT cols` of the rows of `source` (a table with its alias, or joins) matching each
    of `values` (hex hashes or integers) by `on`, a condition naming the value `k.v` (its own
    parameters follow the values' one). One index probe per value, whatever the tables' size:
    on PostgreSQL the values are one array literal unnested into a LATERAL subquery (OFFSET 0
    keeps the planner from turning it into a hash join over a whole table), on SQLite
    `json_each`."""
    values = list(values)
    if is_postgres():
        inner = ", ".join(f"{c} AS c{i}" for i, c in enumerate(cols))
        return (f"SELECT n.* FROM unnest(%s::{kind}[]) AS k(v) CROSS JOIN LATERAL "
                f"(SELECT {inner} FROM {source} WHERE {on} OFFSET 0) n",
                ["{" + ",".join(str(v) for v in values) + "}"])
    return (f"SELECT {', '.join(cols)} FROM (SELECT value AS v FROM json_each(%s)) AS k, {source} "
            f"WHERE {on}", [json.dumps(values)])


def listed(values: list[Any]) -> str:
    """Values as one parameter: an array literal on PostgreSQL, a JSON list on SQLite."""
    if is_postgres():
        return "{" + ",".join(str(v) for v in values) + "}"
    return json.dumps(values)


def epoch(expr: str) -> str:
    """Seconds since 1970 of a timestamp column, as a float."""
    if is_postgres():
        return f"EXTRACT(EPOCH FROM {expr})::float8"
    return f"((julianday({expr}) - 2440587.5) * 86400.0)"


# -- windows ------------------------------------------------------------------------------------

def dense(rows: list[tuple[float, int, int]], window: float, need: int, *, distinct: bool = False,
          min_users: int = 1) -> set[int]:
    """The order ids of `rows` (time, order id, user id; sorted) that lie in some window of
    `window` seconds holding >= `need` rows (distinct users when `distinct`) from >= `min_users`
    users."""
    n = len(rows)
    if n < need or n < min_users:
        return set()
    cover = [0] * (n + 1)
    users: Counter[int] = Counter()
    i = 0
    for j in range(n):
        users[rows[j][2]] += 1
        while rows[i][0] < rows[j][0] - window:
            users[rows[i][2]] -= 1
            if not users[rows[i][2]]:
                del users[rows[i][2]]
            i += 1
        count = len(users) if distinct else j - i + 1
        if count >= need and len(users) >= min_users:
            cover[i] += 1
            cover[j + 1] -= 1
    found, running = set(), 0
    for k in range(n):
        running += cover[k]
        if running > 0:
            found.add(rows[k][1])
    return found


def linked(rows: list[tuple[float, int, int]], members: set[int], at: float, window: float) -> list[int]:
    times = [r[0] for r in rows]
    lo, hi = bisect.bisect_left(times, at - window), bisect.bisect_right(times, at + window)
    return sorted(r[1] for r in rows[lo:hi] if r[1] in members)


def add(found: Found, order_id: int, kind: str, key: str, count: int, linked: list[int]) -> None:
    ev = found.setdefault(order_id, {"shared": [], "orders": []})
    ev["shared"].append({"kind": kind, "hash": key[:8], "count": count})
    ev["orders"] = sorted(set(ev["orders"]) | set(linked))[:LINKED_MAX]


_KEYS = {"ip": "ip_hash", "device": "device_hash", "payer": "payer_hash"}


def signals(batch: Batch) -> list[tuple]:
    """(order id, user id, epoch at, ip hash, device hash, payer hash) of the batch's orders'
    signals: one range scan of risk_signal's order_id index, shared by the rules."""
    if "signals" not in batch.cache:
        batch.cache["signals"] = [r for r in execute(
            f"SELECT order_id, user_id, {epoch('at')}, ip_hash, device_hash, payer_hash FROM risk_signal "
            "WHERE order_id > %s AND order_id <= %s", (batch.lo, batch.hi)).fetchall() if r[0] in batch.orders]
    return batch.cache["signals"]


def stamp(seconds: float) -> str | dt.datetime:
    moment = EPOCH + dt.timedelta(seconds=seconds)
    return moment if is_postgres() else moment.isoformat(" ")


def neighbours(batch: Batch, kind: str, window_s: int, need: int) -> list[tuple]:
    """(key, order id, user id, epoch at) of every order signal sharing a `kind` key with an
    order of the batch, within the batch's time span widened by twice `window_s`: every window
    that touches a row within one window of a batch order is seen whole, so what a batch finds
    (evidence included) does not depend on where the batches were cut. Keys with fewer than
    min(`need`, 2) such rows (nearly every honest key: the order alone) are left out.

    One query: the rows of the widened span (`_spanned`), when that is cheap; else on
    PostgreSQL one probe per key of the (hash, at, user_id, order_id) index, index-only, its
    rows counted and kept when enough (SQLite: the keys counted, then the rows of those that
    reach the count)."""
    least = min(need, 2)
    if (kind, window_s, least) in batch.cache:
        return batch.cache[(kind, window_s, least)]
    col = _KEYS[kind]
    index = {"ip": 3, "device": 4, "payer": 5}[kind]
    mine = signals(batch)
    found = sorted({r[index] for r in mine if r[index] is not None})
    rows: list[tuple] = []
    spanned = _spanned(batch, window_s, mine) if found else None
    if spanned is not None:  # one range scan beat a probe per key: count and keep in Python
        wanted = set(found)
        rows = [(r[index], r[0], r[1], r[2]) for r in spanned if r[index] in wanted]
        sizes = Counter(r[0] for r in rows)
        rows = [r for r in rows if sizes[r[0]] >= least]
        found = []
    if found:
        span = (stamp(min(r[2] for r in mine) - 2 * window_s), stamp(max(r[2] for r in mine) + 2 * window_s))
        near = f"x.{col} = k.v AND x.at >= %s AND x.at <= %s AND x.order_id IS NOT NULL"
        cols = [f"x.{col}", "x.order_id", "x.user_id", epoch("x.at")]
        if least > 1 and is_postgres():  # one probe per key: its rows, counted, kept when enough
            sql = (f"SELECT n.c0, n.c1, n.c2, n.c3 FROM unnest(%s::text[]) AS k(v) CROSS JOIN LATERAL "
                   f"(SELECT {', '.join(f'{c} AS c{i}' for i, c in enumerate(cols))}, count(*) OVER () AS n "
                   f"FROM risk_signal x WHERE {near} OFFSET 0) n WHERE n.n >= %s")
            rows = execute(sql, (listed(found), *span, least)).fetchall()
            found = []
        if least > 1 and found:  # SQLite: the keys with enough rows, then their rows
            sql = (f"SELECT k.v FROM (SELECT value AS v FROM json_each(%s)) AS k JOIN risk_signal x "
                   f"ON {near} GROUP BY k.v HAVING count(*) >= %s")
            found = sorted(k for (k,) in execute(sql, (json.dumps(found), *span, least)).fetchall())
        if found:
            sql, params = probe(cols, "risk_signal x", near, found)
            rows = execute(sql, (*params, *span)).fetchall()
    batch.cache[(kind, window_s, least)] = rows
    return rows


def _spanned(batch: Batch, window_s: int, mine: list[tuple]) -> list[tuple] | None:
    """Every order signal (order id, user id, epoch at, ip, device, payer hash) placed within
    the batch's time span widened by twice `window_s`, when that span holds few more rows than
    the batch: a batch of consecutive orders whose span is long next to the window. Then one
    scan of the `at` index reads what a probe per key would; else None (probe)."""
    first, last = min(r[2] for r in mine), max(r[2] for r in mine)
    if (len(mine) < SPAN_MIN_ORDERS or batch.hi - batch.lo > 2 * len(batch.orders)
            or 4 * window_s > SPAN_MAX_WIDEN * (last - first)):
        return None
    if ("span", window_s) not in batch.cache:
        batch.cache[("span", window_s)] = execute(
            f"SELECT order_id, user_id, {epoch('at')}, ip_hash, device_hash, payer_hash FROM risk_signal "
            "WHERE at >= %s AND at <= %s AND order_id IS NOT NULL",
            (stamp(first - 2 * window_s), stamp(last + 2 * window_s))).fetchall()
    return batch.cache[("span", window_s)]


def created(user_ids: Iterable[int]) -> dict[int, float]:
    """user -> epoch of the account's creation."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    return {u: float(t) for u, t in execute(*probe(["u.id", epoch("u.created_at")], '"user" u', "u.id = k.v",
                                                   ids, "bigint")).fetchall()}


def windows(batch: Batch, found: Found, kind: str, rows: Iterable[tuple], window: float, need: int, *,
             distinct: bool, keep: Callable[[tuple], bool] | None = None) -> None:
    groups: dict[str, list[tuple[float, int, int]]] = defaultdict(list)
    for row in rows:
        if keep is None or keep(row):
            groups[row[0]].append((float(row[3]), row[1], row[2]))
    for key, group in groups.items():
        if len(group) < need or not any(oid in batch.orders for _, oid, _ in group):
            continue
        group.sort()
        members = dense(group, window, need, distinct=distinct)
        for at, oid, _ in group:
            if oid in members and oid in batch.orders:
                near = linked(group, members, at, window)
                count = len({u for _, o, u in group if o in set(near)}) if distinct else len(near)
                add(found, oid, kind, key, count, near)
