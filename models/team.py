"""Reading the creator network for operators: finding creators, a creator's upline and team
figures, and the team tree one level at a time.

Everything here is sized by what is shown, never by the network or the order table:
- a search or a list page is one keyset query (`id < after`, newest first) of PAGE rows;
- the tree shows a node's children PAGE at a time (`id > after`); each shown node's direct team
  size is one GROUP BY over the creator_parent index for the shown ids, and its 30-day GMV one
  GROUP BY for the shown sellers over an index that holds exactly the sold orders by seller and
  paid time (migration 0011): no per-node query and no scan of the orders of the whole team;
- a profile's team figures are two counts and one sum over the direct and second-level team.

GMV here is what `levels` and `network.team` count as a sale: orders paid or delivered
(refunded ones are not), by the time they were paid, over the last GMV_DAYS days.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from models.db import execute, placeholders, utcnow
from models.events import Event
from models.network import SOLD, Creator
from models.orders import Order
from models.users import User

PAGE = 100
GMV_DAYS = 30
# The statuses as literals, so that SQLite, too, matches the partial index of migration 0011.
_SOLD_SQL = "o.seller_id IS NOT NULL AND o.status IN (" + ", ".join(f"'{s}'" for s in SOLD) + ")"


def gmv_since(now: dt.datetime | None = None) -> dt.datetime:
    return (now or utcnow()) - dt.timedelta(days=GMV_DAYS)


def _stamp(moment: dt.datetime) -> object:
    return Order.paid_at.db_value(moment)


# ---- finding creators -----------------------------------------------------------------------

@dataclass(frozen=True)
class Found:
    id: int
    code: str
    name: str
    rank: int
    rank_cap: int | None
    active: bool
    openid: str
    parent_id: int | None
    created_at: dt.datetime


_FOUND = ('SELECT c.id, c.code, c.name, c.rank, c.rank_cap, c.active, u.openid, c.parent_id, c.created_at '
          'FROM creator c JOIN "user" u ON u.id = c.user_id')


def _found(rows: list[tuple]) -> list[Found]:
    out = []
    for cid, code, name, rank, cap, active, openid, parent, created in rows:
        created = created if isinstance(created, dt.datetime) else Creator.created_at.python_value(created)
        out.append(Found(cid, code, name, rank, cap, bool(active), openid, parent, created))
    return out


def search(query: str = "", *, before_id: int | None = None, limit: int = 50) -> tuple[list[Found], int | None]:
    """Creators newest first, `limit` per page; with a query, those whose code is it or starts
    with it, whose name contains it, or whose openid is it. Returns the page and the id to
    pass as `before_id` for the next one (None: this is the last page)."""
    query = " ".join((query or "").split())[:64]
    limit = max(1, min(limit, 200))
    where, params = [], []
    if query:
        like = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append("(c.code = %s OR c.code LIKE %s ESCAPE '\\' OR c.name LIKE %s ESCAPE '\\' OR u.openid = %s)")
        params += [query, like + "%", "%" + like + "%", query]
    if before_id:
        where.append("c.id < %s")
        params.append(before_id)
    sql = _FOUND + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY c.id DESC LIMIT %s"
    rows = _found(execute(sql, [*params, limit + 1]).fetchall())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def find(creator_id: int) -> Found | None:
    rows = _found(execute(_FOUND + " WHERE c.id = %s", (creator_id,)).fetchall())
    return rows[0] if rows else None


# ---- upline and team figures ------------------------------------------------------------------

def upline(creator: Creator) -> list[Found]:
    """The creator's parent and grandparent, nearest first (those that exist)."""
    ids = [i for i in (creator.parent_id, creator.grandparent_id) if i]
    if not ids:
        return []
    found = {f.id: f for f in _found(execute(_FOUND + f" WHERE c.id IN ({placeholders(ids)})", ids).fetchall())}
    return [found[i] for i in ids if i in found]


@dataclass(frozen=True)
class TeamFigures:
    direct: int  # creators bound directly under this one
    second: int  # ... under those
    direct_gmv_fen: int  # their sales over the last GMV_DAYS days
    second_gmv_fen: int
    own_gmv_fen: int  # the creator's own sales over the same days

    @property
    def team_gmv_fen(self) -> int:
        return self.direct_gmv_fen + self.second_gmv_fen


def figures(creator_id: int, now: dt.datetime | None = None) -> TeamFigures:
    """Team sizes and GMV_DAYS-day GMV of a creator's direct and second-level team."""
    direct = int(execute("SELECT COUNT(*) FROM creator WHERE parent_id = %s", (creator_id,)).fetchone()[0])
    second = int(execute("SELECT COUNT(*) FROM creator WHERE grandparent_id = %s", (creator_id,)).fetchone()[0])
    # One correlated sum per member over order_seller_sold (migration 0011): a nested loop of
    # index lookups, instead of a scan of every order paid in the window.
    sums = dict(execute(
        "SELECT k, SUM(g) FROM (SELECT CASE WHEN m.parent_id = %s THEN 1 ELSE 2 END AS k, "
        f'(SELECT SUM(o.amount_fen) FROM "order" o WHERE o.seller_id = m.id AND {_SOLD_SQL} AND o.paid_at >= %s) AS g '
        "FROM creator m WHERE m.parent_id = %s OR m.grandparent_id = %s) t GROUP BY k",
        (creator_id, _stamp(gmv_since(now)), creator_id, creator_id)).fetchall())
    own = gmv_of([creator_id], now).get(creator_id, 0)
    return TeamFigures(direct, second, int(sums.get(1) or 0), int(sums.get(2) or 0), own)


def gmv_of(creator_ids: list[int], now: dt.datetime | None = None) -> dict[int, int]:
    """Each seller's GMV_DAYS-day GMV (0 for none): one GROUP BY over the shown sellers only."""
    if not creator_ids:
        return {}
    rows = execute(
        f'SELECT o.seller_id, SUM(o.amount_fen) FROM "order" o WHERE o.seller_id IN ({placeholders(creator_ids)}) '
        f"AND {_SOLD_SQL} AND o.paid_at >= %s GROUP BY o.seller_id",
        [*creator_ids, _stamp(gmv_since(now))]).fetchall()
    found = {int(s): int(v or 0) for s, v in rows}
    return {cid: found.get(cid, 0) for cid in creator_ids}


def direct_sizes(creator_ids: list[int]) -> dict[int, int]:
    """How many creators are bound directly under each of these (0 for none)."""
    if not creator_ids:
        return {}
    rows = execute(f"SELECT parent_id, COUNT(*) FROM creator WHERE parent_id IN ({placeholders(creator_ids)}) "
                   "GROUP BY parent_id", creator_ids).fetchall()
    found = {int(p): int(n) for p, n in rows}
    return {cid: found.get(cid, 0) for cid in creator_ids}


# ---- the tree ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Node:
    id: int
    code: str
    name: str
    rank: int
    rank_cap: int | None
    active: bool
    direct_size: int
    gmv_fen: int  # GMV_DAYS days

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Level:
    """One page of a node's children: `more_after` is the id to continue after (None: done)."""

    parent_id: int
    nodes: list[Node]
    more_after: int | None

    def as_dict(self) -> dict:
        return {"parent_id": self.parent_id, "nodes": [n.as_dict() for n in self.nodes],
                "more_after": self.more_after}


def _nodes(rows: list[tuple], now: dt.datetime | None) -> list[Node]:
    ids = [r[0] for r in rows]
    sizes, gmv = direct_sizes(ids), gmv_of(ids, now)
    return [Node(cid, code, name, rank, cap, bool(active), sizes[cid], gmv[cid])
            for cid, code, name, rank, cap, active in rows]


def node(creator_id: int, now: dt.datetime | None = None) -> Node | None:
    """The tree's root: one creator with its figures."""
    rows = execute("SELECT id, code, name, rank, rank_cap, active FROM creator WHERE id = %s",
                   (creator_id,)).fetchall()
    return _nodes(rows, now)[0] if rows else None


def children(parent_id: int, *, after_id: int = 0, limit: int = PAGE, now: dt.datetime | None = None) -> Level:
    """The creators bound directly under `parent_id`, oldest first, `limit` after `after_id`:
    three queries, each sized by the page."""
    limit = max(1, min(limit, PAGE))
    rows = execute("SELECT id, code, name, rank, rank_cap, active FROM creator "
                   "WHERE parent_id = %s AND id > %s ORDER BY id LIMIT %s",
                   (parent_id, after_id or 0, limit + 1)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return Level(parent_id, _nodes(rows, now), rows[-1][0] if more and rows else None)


# ---- a creator's history and recent sales --------------------------------------------------------

HISTORY_TOPICS = ("creator.joined", "creator.bound", "creator.rebound", "creator.level_changed",
                  "creator.penalized", "creator.penalty_lifted")


def history(creator_id: int, limit: int = 30) -> list[Event]:
    """The creator's network and level events (joins, bindings, level changes, penalties), newest first."""
    return list(Event.select().where((Event.subject == f"creator:{creator_id}") & Event.topic.in_(HISTORY_TOPICS))
                .order_by(Event.id.desc()).limit(limit))


# ---- a creator's recent sales -------------------------------------------------------------------

def recent_sales(creator_id: int, limit: int = 20) -> list[Order]:
    """The newest orders the creator sold (any status), newest first."""
    return list(Order.select(Order.id, Order.no, Order.sku, Order.amount_fen, Order.markup_fen, Order.status,
                             Order.created_at, Order.paid_at)
                .where(Order.seller_id == creator_id).order_by(Order.id.desc()).limit(limit))


def openid_of(creator: Creator) -> str:
    return User.select(User.openid).where(User.id == creator.user_id).scalar() or ""
