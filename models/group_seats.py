"""Group-buy seats (issue 14): starting and joining a team inside the order's transaction
(`prepare` -> `take_seat`), seats freed by unpaid orders that end (`released`) and taken back by
late payments (`reclaim`), and the helpers the other group-buy modules share (conditional member
transitions after models/group_rules.py, the lock order). Callers import these through
models/groupbuy.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from models import group_rules as rules
from models.db import execute, execute_batch, is_postgres, lock_rows, placeholders, utcnow
from models.errors import Conflict, InvalidInput, InvalidState, NotFound
from models.group_tables import GroupActivity, GroupMember, GroupTeam, MemberState, TeamState

if TYPE_CHECKING:
    from models.orders import Order
    from models.users import User

# ---- services ---------------------------------------------------------------------------------
#
# Locks, always in this order: the member orders (FOR UPDATE, by id), the team row, the activity
# row. Placement locks the buyer, writes its new order, then the team (join) or the activity
# (start, whose new team nobody else can hold yet); a refund locks its order, then the team.
# SQLite transactions are IMMEDIATE: one writer at a time, no locks to order.

ACTOR = "system:groupbuy"


def stamp(value: dt.datetime) -> object:
    return GroupTeam.expires_at.db_value(value)


def units(activity_id: int, delta: int) -> None:
    """units_taken is kept only for activities with a stock limit (without one the activity row
    is never touched by a join, so joins of different teams never queue behind it)."""
    execute("UPDATE group_activity SET units_taken = units_taken + %s WHERE id = %s AND stock IS NOT NULL",
            (delta, activity_id))


def move_statement(member_ids: list[int], event: str, now: dt.datetime, *, paid: bool = False
                   ) -> tuple[str, list]:
    """The statement of `move` (to batch it with others)."""
    sources = rules.sources(event)
    (target,) = {rules.next_state(s, event) for s in sources}
    extra = ", paid_at = %s" if paid else ""
    return (f"UPDATE group_member SET state = %s, updated_at = %s{extra} "
            f"WHERE id IN ({placeholders(member_ids)}) AND state IN ({placeholders(sources)})",
            [target, stamp(now), *([stamp(now)] if paid else []), *member_ids, *sources])


def move(member_ids: list[int], event: str, now: dt.datetime, *, paid: bool = False) -> int:
    """Members to the state `event` leads to, only from the states it may leave (the table of
    models/group_rules.py; every event has one target): a repeated event changes nothing.
    Returns how many moved."""
    if not member_ids:
        return 0
    return execute(*move_statement(member_ids, event, now, paid=paid)).rowcount


# The member orders of a team, locked by id (PostgreSQL): the first step of the lock order.
_LOCK_MEMBER_ORDERS = ('SELECT o.id FROM "order" o JOIN group_member m ON m.order_id = o.id '
                       "WHERE m.team_id = %s ORDER BY o.id FOR UPDATE OF o")


def lock_team(team_id: int) -> GroupTeam | None:
    """The team row locked, after its members' orders (see the lock order above); on
    PostgreSQL both in one round trip."""
    query = GroupTeam.select().where(GroupTeam.id == team_id)
    if not is_postgres():
        return query.first()
    sql, params = query.for_update().sql()
    row = execute_batch([(_LOCK_MEMBER_ORDERS, (team_id,)), (sql, params)]).fetchone()
    if row is None:
        return None
    return GroupTeam(**{f.name: f.python_value(v) for f, v in zip(GroupTeam._meta.sorted_fields, row, strict=True)})


def order_states(order_ids: list[int]) -> dict[int, tuple[str, dt.datetime | None]]:
    """status and paid_at of these orders."""
    if not order_ids:
        return {}
    paid_at = GroupMember.paid_at.python_value
    return {r[0]: (r[1], paid_at(r[2])) for r in execute(
        f'SELECT id, status, paid_at FROM "order" WHERE id IN ({placeholders(order_ids)})', order_ids)}


# ---- placing: start or join ---------------------------------------------------------------------


def _teams_in(user_id: int, activity_id: int) -> int:
    return execute(
        "SELECT COUNT(*) FROM group_member m JOIN group_team t ON t.id = m.team_id "
        f"WHERE m.user_id = %s AND t.activity_id = %s AND m.state IN ({placeholders(rules.COUNTS_FOR_LIMIT)})",
        (user_id, activity_id, *rules.COUNTS_FOR_LIMIT)).fetchone()[0]


def _is_member(user_id: int, team_id: int) -> bool:
    return execute(
        f"SELECT 1 FROM group_member WHERE team_id = %s AND user_id = %s "
        f"AND state IN ({placeholders(rules.COUNTS_FOR_LIMIT)})",
        (team_id, user_id, *rules.COUNTS_FOR_LIMIT)).fetchone() is not None


def _facts(team: GroupTeam) -> rules.TeamFacts:
    return rules.TeamFacts(team.state, team.expires_at, team.seats_taken, team.size)


def open_team_ids(activity_id: int, *, exclude: int | None = None, limit: int = 5) -> list[int]:
    """Open, unexpired teams of an activity with a free seat, fullest first (where a shopper
    refused with group_full may go instead)."""
    query = (GroupTeam.select(GroupTeam.id)
             .where((GroupTeam.activity == activity_id) & (GroupTeam.state == TeamState.OPEN)
                    & (GroupTeam.expires_at > utcnow()) & (GroupTeam.seats_taken < GroupTeam.size))
             .order_by(GroupTeam.seats_taken.desc(), GroupTeam.id).limit(limit + 1))
    return [t.id for t in query if t.id != exclude][:limit]


def _full(activity_id: int, team_id: int) -> Conflict:
    others = open_team_ids(activity_id, exclude=team_id)
    where = f"; open teams of this activity: {', '.join(map(str, others))}" if others else \
        "; start a new team instead"
    return Conflict(f"this team is full{where}", code="group_full")


# One round trip for everything `prepare` checks: the activity, its SKU's code and whether it is
# for sale, the team (join), the buyer's membership of it, the buyer's teams in the activity and
# (start, new leaders only) whether the buyer ever paid an order.
_ACTIVITY_COLUMNS = (
    "a.id, a.active, a.starts_at, a.ends_at, a.size, a.window_s, a.group_price_fen, a.per_user_limit, "
    "a.max_teams, a.stock, a.leader_must_be_new, s.code, COALESCE(s.active AND p.active, FALSE)"
)
_ACTIVITY_SKU = "LEFT JOIN sku s ON s.id = a.sku_id LEFT JOIN product p ON p.id = s.product_id"
_TEAMS_IN = (
    "(SELECT COUNT(*) FROM group_member m JOIN group_team t ON t.id = m.team_id "
    f"WHERE m.user_id = %s AND t.activity_id = {{activity}} AND m.state IN ({placeholders(rules.COUNTS_FOR_LIMIT)}))"
)
_IS_MEMBER = (
    "EXISTS (SELECT 1 FROM group_member WHERE team_id = {team} AND user_id = %s "
    f"AND state IN ({placeholders(rules.COUNTS_FOR_LIMIT)}))"
)
_PREPARE_JOIN = (
    f"SELECT {_ACTIVITY_COLUMNS}, t.id, t.state, t.expires_at, t.seats_taken, t.size, "
    f"{_IS_MEMBER.format(team='t.id')}, {_TEAMS_IN.format(activity='a.id')} "
    f"FROM group_team t JOIN group_activity a ON a.id = t.activity_id {_ACTIVITY_SKU} WHERE t.id = %s"
)
_PREPARE_START = (
    f"SELECT {_ACTIVITY_COLUMNS}, {_TEAMS_IN.format(activity='a.id')}, "
    'CASE WHEN a.leader_must_be_new THEN EXISTS (SELECT 1 FROM "order" WHERE user_id = %s '
    "AND paid_at IS NOT NULL) ELSE FALSE END "
    f"FROM group_activity a {_ACTIVITY_SKU} WHERE a.id = %s"
)


def _activity_of(row: tuple) -> tuple[GroupActivity, str | None]:
    """The activity (the fields placement uses, not a saved row) and its SKU's code."""
    at = GroupActivity.starts_at.python_value
    return GroupActivity(
        id=row[0], active=bool(row[1]), starts_at=at(row[2]), ends_at=at(row[3]), size=row[4], window_s=row[5],
        group_price_fen=row[6], per_user_limit=row[7], max_teams=row[8], stock=row[9],
        leader_must_be_new=bool(row[10])), row[11]


def prepare(user: User, group: tuple[str, int], *, sku_code: str, quantity: int
            ) -> tuple[int, Callable[[Order], None]]:
    """Before a group-buy order is placed (models/checkout.py): check the activity or team and
    return (group unit price, `take_seat`, run inside the order's transaction). `group` is
    ("start", activity id) or ("join", team id). Refusals (nothing written): invalid_quantity
    (only 1), group_wrong_sku, group_activity_closed, group_leader_not_new, group_limit,
    group_expired / group_closed, group_already_member, group_full (409, naming other open teams),
    group_activity_not_found / group_team_not_found (404). `take_seat` checks again under the
    locks (the buyer row, then the team), so concurrent requests never exceed a limit. Reads
    everything in one query, including whether the SKU is for sale (unknown_sku, 404, as
    `orders.place_order` says; the caller passes `sku_checked=True` to it)."""
    kind, ref = group
    if kind not in ("start", "join") or not isinstance(ref, int) or isinstance(ref, bool):
        raise InvalidInput("group is ('start', activity id) or ('join', team id)", code="invalid_group")
    if quantity != 1:
        raise InvalidInput("a group-buy order is for one unit", code="invalid_quantity")
    now = utcnow()
    team: rules.TeamFacts | None = None
    if kind == "join":
        row = execute(_PREPARE_JOIN, (user.id, *rules.COUNTS_FOR_LIMIT, user.id, *rules.COUNTS_FOR_LIMIT,
                                      ref)).fetchone()
        if row is None:
            raise NotFound(f"group-buy team {ref} not found", code="group_team_not_found")
        team = rules.TeamFacts(row[14], GroupTeam.expires_at.python_value(row[15]), row[16], row[17])
        already_member, teams_in, has_paid = bool(row[18]), row[19], False
    else:
        row = execute(_PREPARE_START, (user.id, *rules.COUNTS_FOR_LIMIT, user.id, ref)).fetchone()
        if row is None:
            raise NotFound(f"group-buy activity {ref} not found", code="group_activity_not_found")
        already_member, teams_in, has_paid = False, row[13], bool(row[14])
    activity, code = _activity_of(row)
    if code != sku_code:
        raise InvalidInput("this SKU is not the activity's", code="group_wrong_sku")
    if team is None:
        rules.check_open(activity.active, activity.starts_at, activity.ends_at, now)
    elif not activity.active:
        raise InvalidState("this group-buy activity is not open", code="group_activity_closed")
    else:
        try:
            rules.can_join(team, now, already_member=already_member)
        except Conflict as exc:
            if exc.code == "group_full":
                raise _full(activity.id, ref) from None
            raise
    if team is None and activity.leader_must_be_new and has_paid:
        raise Conflict("only a buyer without an earlier paid order can start this team", code="group_leader_not_new")
    rules.check_user_limit(teams_in, activity.per_user_limit)
    if not row[12]:  # what orders.place_order would say (it trusts this check: `sku_checked`)
        raise NotFound(f"unknown SKU {sku_code!r}", code="unknown_sku")

    def take_seat(order: Order) -> None:
        _take_seat(order, user.id, activity, ref if team is not None else None)

    return activity.group_price_fen, take_seat


# The seat of a join, in one statement: a free seat of the open, unexpired team, the buyer not
# in it already and under the activity's per-user limit (checked again under the buyer's lock).
_JOIN_SEAT = (
    "UPDATE group_team SET seats_taken = seats_taken + 1 WHERE id = %s AND state = %s "
    f"AND seats_taken < size AND expires_at > %s AND NOT {_IS_MEMBER.format(team='%s')} "
    f"AND {_TEAMS_IN.format(activity='%s')} < %s RETURNING expires_at"
)
# A new team, in one statement, only while the buyer is under the activity's per-user limit.
_START_TEAM = (
    "INSERT INTO group_team (activity_id, leader_user_id, state, size, seats_taken, paid_count, "
    "virtual_count, expires_at, created_at) SELECT %s, %s, %s, %s, 1, 0, 0, %s, %s "
    f"WHERE {_TEAMS_IN.format(activity='%s')} < %s RETURNING id, expires_at"
)
# The member row and the order's hold (the SQLite path, and after a refusal nothing runs).
_MEMBER = ("INSERT INTO group_member (team_id, user_id, order_id, leader, state, created_at, updated_at) "
           "VALUES (%s, %s, %s, %s, %s, %s, %s)")
_HOLD = 'UPDATE "order" SET group_hold = %s, expires_at = %s WHERE id = %s'
# PostgreSQL: the seat (or the new team), the member row and the order's hold in one statement;
# nothing is written when the seat is refused. The order's deadline is `rules.order_deadline`
# (the earlier of its own and its team's). Parameters: the seat's, then user, order, state,
# created, updated, order. Returns the team id and its expiry.
_WITH_MEMBER_PG = (
    "WITH seat AS ({seat}), "
    "member AS (INSERT INTO group_member (team_id, user_id, order_id, leader, state, created_at, updated_at) "
    "SELECT id, %s, %s, {leader}, %s, %s, %s FROM seat) "
    'UPDATE "order" o SET group_hold = TRUE, expires_at = LEAST(o.expires_at, seat.expires_at) FROM seat '
    "WHERE o.id = %s RETURNING seat.id, seat.expires_at"
)
_JOIN_SEAT_PG = _WITH_MEMBER_PG.format(seat=_JOIN_SEAT.replace("RETURNING expires_at", "RETURNING id, expires_at"),
                                       leader="FALSE")
_START_TEAM_PG = _WITH_MEMBER_PG.format(seat=_START_TEAM, leader="TRUE")


def _take_seat(order: Order, user_id: int, activity: GroupActivity, team_id: int | None) -> None:
    """Inside the order's transaction (the buyer's row is locked): the limits again, then the
    seat by conditional statements (the limit inside them); anything refused raises and the
    whole order rolls back."""
    now, joined = utcnow(), is_postgres()  # PostgreSQL: the member row and the hold with the seat
    limit = (user_id, activity.id, *rules.COUNTS_FOR_LIMIT, activity.per_user_limit)  # _TEAMS_IN < limit
    member = (user_id, order.id, MemberState.JOINING.value, stamp(now), stamp(now), order.id)
    if team_id is None:  # start: the activity's counters, then the team with its leader
        if activity.max_teams is not None or activity.stock is not None:
            if not execute(
                    "UPDATE group_activity SET teams_started = teams_started + %s, units_taken = units_taken + %s "
                    "WHERE id = %s AND active AND starts_at <= %s AND ends_at > %s "
                    "AND (max_teams IS NULL OR teams_started < max_teams) "
                    "AND (stock IS NULL OR units_taken + 1 <= stock)",
                    (int(activity.max_teams is not None), int(activity.stock is not None), activity.id,
                     stamp(now), stamp(now))).rowcount:
                rules.check_user_limit(_teams_in(user_id, activity.id), activity.per_user_limit)
                raise Conflict("this group-buy activity has no team or unit left", code="group_sold_out")
        expires = rules.team_expiry(now, activity.window_s, activity.ends_at)
        team = (activity.id, user_id, TeamState.OPEN.value, activity.size, stamp(expires), stamp(now), *limit)
        row = (execute(_START_TEAM_PG, (*team, *member)) if joined else execute(_START_TEAM, team)).fetchone()
        if row is None:  # over the limit (the count is under the buyer's lock, so it says so)
            teams_in = _teams_in(user_id, activity.id)
            rules.check_user_limit(max(teams_in, activity.per_user_limit), activity.per_user_limit)
        team_id, leader = row[0], True
    else:  # join: one seat by a conditional update on the team row
        seat = (team_id, TeamState.OPEN.value, stamp(now), team_id, user_id, *rules.COUNTS_FOR_LIMIT, *limit)
        row = (execute(_JOIN_SEAT_PG, (*seat, *member)) if joined else execute(_JOIN_SEAT, seat)).fetchone()
        if row is None:  # which refusal, in the order of the checks: limit, team, membership
            rules.check_user_limit(_teams_in(user_id, activity.id), activity.per_user_limit)
            rules.can_join(_facts(GroupTeam.get_by_id(team_id)), now, already_member=False)
            if _is_member(user_id, team_id):
                raise Conflict("you are already in this team", code="group_already_member")
            raise _full(activity.id, team_id)
        if activity.stock is not None and not execute(
                "UPDATE group_activity SET units_taken = units_taken + 1 WHERE id = %s AND units_taken + 1 <= stock",
                (activity.id,)).rowcount:
            raise Conflict("this group-buy activity has no unit left", code="group_sold_out")
        expires, leader = GroupTeam.expires_at.python_value(row[-1]), False
    order.expires_at = rules.order_deadline(order.expires_at, expires)
    order.group_hold = True
    if joined:
        return
    execute_batch([
        (_MEMBER, (team_id, user_id, order.id, leader, MemberState.JOINING.value, stamp(now), stamp(now))),
        (_HOLD, (True, stamp(order.expires_at), order.id)),
    ])


# ---- unpaid orders ending, late payments ---------------------------------------------------------


def released(order_ids: list[int]) -> int:
    """Free the seats of these unpaid orders (expired or cancelled): called by
    models/orders.py (`release_extras`) inside its transaction, after the order's conditional
    status change. Member joining -> left, seats_taken - 1 (and the activity's unit), exactly
    once (a conditional update). Returns how many seats were freed."""
    if not order_ids:
        return 0
    rows = execute("SELECT m.id, m.team_id, t.activity_id FROM group_member m JOIN group_team t ON t.id = m.team_id "
                   f"WHERE m.order_id IN ({placeholders(order_ids)}) AND m.state = %s",
                   (*order_ids, MemberState.JOINING.value)).fetchall()
    freed, now = 0, utcnow()
    for member_id, team_id, activity_id in rows:
        if move([member_id], rules.Event.LEAVE, now):
            execute("UPDATE group_team SET seats_taken = seats_taken - 1 WHERE id = %s", (team_id,))
            units(activity_id, -1)
            freed += 1
    return freed


def reclaim(order_id: int) -> bool:
    """A late payment of an expired member order (payments._revive, in its savepoint): a member
    that left retakes a seat if its team is still open, unexpired and not full. True when the
    order holds a seat again (or is no group order, or never lost its seat); False: refund it."""
    member = GroupMember.get_or_none(GroupMember.order_id == order_id)
    if member is None or member.state != MemberState.LEFT:
        return True
    team = lock_rows(GroupTeam.select().where(GroupTeam.id == member.team_id)).get()
    return retake(team, member.id, utcnow(), rules.Event.REJOIN)


def retake(team: GroupTeam, member_id: int, now: dt.datetime, event: str) -> bool:
    if team.state != TeamState.OPEN or team.expires_at <= now:
        return False
    if not execute("UPDATE group_team SET seats_taken = seats_taken + 1 WHERE id = %s AND seats_taken < size",
                   (team.id,)).rowcount:
        return False
    activity = GroupActivity.get_by_id(team.activity_id)
    if activity.stock is not None and not execute(
            "UPDATE group_activity SET units_taken = units_taken + 1 WHERE id = %s AND units_taken + 1 <= stock",
            (activity.id,)).rowcount:
        execute("UPDATE group_team SET seats_taken = seats_taken - 1 WHERE id = %s", (team.id,))
        return False
    team.seats_taken += 1
    return bool(move([member_id], event, now))


def team_of_order(order_id: int) -> int | None:
    """The team an order is a member's order of (None: not a group-buy order)."""
    return GroupMember.select(GroupMember.team).where(GroupMember.order_id == order_id).scalar()


def held(order_ids: list[int]) -> list[int]:
    """Which of these orders wait for their team (group_hold)."""
    if not order_ids:
        return []
    return [r[0] for r in execute(
        f'SELECT id FROM "order" WHERE id IN ({placeholders(order_ids)}) AND group_hold', order_ids)]
