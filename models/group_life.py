"""Group-buy teams after placement (issue 14): payments advancing them to success
(`advance`, the delivery drain), expiry closing them (`close_team`, the delayed job and the
sweeper), members refunded (`on_refund` inside payments.refund_order; the retry bookkeeping of
refunds that fail at WeChat Pay). One transaction per team, the lock order of
models/group_seats.py. Callers import these through models/groupbuy.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from models import events, inventory, ledger
from models import group_rules as rules
from models.db import db, execute, execute_batch, lock_rows, placeholders, utcnow
from models.errors import NotFound
from models.group_seats import ACTOR, lock_team, move, move_statement, order_states, retake, stamp, units
from models.group_tables import GroupActivity, GroupMember, GroupTeam, MemberState, TeamState

VIRTUAL_ACCOUNT = "expense:group_virtual"  # the zero-amount leg that records a virtual completion


# ---- payments: advancing teams -----------------------------------------------------------------


@dataclass(frozen=True)
class Advanced:
    deliverable: list[int]  # member orders to deliver now (their team succeeded; group_hold cleared)
    refund: list[int]  # member orders to refund (their team failed, or a late payment found no seat)
    succeeded: list[int]  # teams that succeeded in this call
    progressed: list[int]  # teams that counted a new paid member in this call (their cards move)
    open_until: dict[int, dt.datetime]  # teams whose first payment this was: their expiry (their close job)


def advance(order_ids: list[int]) -> Advanced:
    """Paid member orders (the delivery drain hands over every paid order with group_hold), one
    transaction per team, the team row locked. A member's payment counts if it was made before
    its team expired: joining -> paid, paid_count + 1; a member that had left (its unpaid order
    expired, then was paid late) retakes a free seat of its open team, else is refunded; a
    payment for a team that failed is refunded, never delivered. When paid_count reaches the
    size the team succeeds in the same transaction: every paid member deliverable, group_hold
    cleared on their orders, event `group.succeeded`. Idempotent: run again (a batch retried),
    it lists every member of a succeeded team still to deliver and every member still to refund
    (delivery and refunds are idempotent too)."""
    deliverable: list[int] = []
    refund: list[int] = []
    succeeded: list[int] = []
    progressed: list[int] = []
    open_until: dict[int, dt.datetime] = {}
    teams = sorted({m.team_id for m in GroupMember.select(GroupMember.team).where(
        GroupMember.order_id.in_(list(order_ids)))}) if order_ids else []
    wanted = set(order_ids)
    for team_id in teams:
        with db.atomic():
            team = lock_team(team_id)
            now, paid_ids, failed_ids = utcnow(), [], []
            for member_id, order_id, state, status, paid_at in _members_paying(team_id, list(wanted)):
                if state == MemberState.REFUNDING:
                    refund.append(order_id)
                if status != "paid" or state not in (MemberState.JOINING, MemberState.LEFT):
                    continue
                in_time = team.state == TeamState.OPEN and paid_at is not None and paid_at <= team.expires_at
                if state == MemberState.LEFT and in_time and retake(team, member_id, now, rules.Event.REJOIN):
                    state = MemberState.JOINING
                if state == MemberState.JOINING and in_time:
                    paid_ids.append(member_id)
                else:
                    failed_ids.append(member_id)
                    refund.append(order_id)
            paid_now = len(paid_ids)
            statements = [move_statement(ids, event, now, paid=event == rules.Event.PAID)
                          for ids, event in ((paid_ids, rules.Event.PAID), (failed_ids, rules.Event.FAIL)) if ids]
            if paid_now:
                statements.append(("UPDATE group_team SET paid_count = paid_count + %s WHERE id = %s",
                                   (paid_now, team_id)))
            if statements:
                execute_batch(statements)
            if paid_now:
                team.paid_count += paid_now
                progressed.append(team_id)
            if team.state == TeamState.OPEN and rules.succeeded(team.paid_count, team.size):
                deliverable += _succeed(team, now, virtual_count=0)
                succeeded.append(team_id)
            elif team.state == TeamState.SUCCEEDED:  # a re-run: every member still to deliver, not only these
                deliverable += undelivered(team_id)
            elif paid_now and team.paid_count == paid_now and team.state == TeamState.OPEN:
                open_until[team_id] = team.expires_at
    return Advanced(sorted(set(deliverable)), sorted(set(refund)), succeeded, progressed, open_until)


def _members_paying(team_id: int, order_ids: list[int]) -> list[tuple[int, int, str, str, dt.datetime | None]]:
    """(member id, order id, member state, order status, paid_at) of these orders' members of
    the team, in one query."""
    if not order_ids:
        return []
    paid_at = GroupMember.paid_at.python_value
    return [(r[0], r[1], r[2], r[3], paid_at(r[4])) for r in execute(
        'SELECT m.id, m.order_id, m.state, o.status, o.paid_at FROM group_member m JOIN "order" o ON o.id = m.order_id '
        f"WHERE m.team_id = %s AND m.order_id IN ({placeholders(order_ids)}) ORDER BY m.id", (team_id, *order_ids))]


def undelivered(team_id: int) -> list[int]:
    """Orders of a succeeded team's deliverable members that are still to deliver."""
    return [r[0] for r in execute(
        'SELECT m.order_id FROM group_member m JOIN "order" o ON o.id = m.order_id '
        "WHERE m.team_id = %s AND m.state = %s AND o.status = %s ORDER BY m.order_id",
        (team_id, MemberState.DELIVERABLE.value, "paid"))]


def _succeed(team: GroupTeam, now: dt.datetime, *, virtual_count: int) -> list[int]:
    """The team succeeded (inside its locked transaction): paid members deliverable, their
    orders released for delivery; returns those order ids."""
    sources = rules.sources(rules.Event.SUCCEED)  # the paid members, moved as `move` would
    (target,) = {rules.next_state(s, rules.Event.SUCCEED) for s in sources}
    paid = execute_batch([
        ("UPDATE group_team SET state = %s, closed_at = %s, virtual_count = %s WHERE id = %s",
         (TeamState.SUCCEEDED.value, stamp(now), virtual_count, team.id)),
        (f"UPDATE group_member SET state = %s, updated_at = %s WHERE team_id = %s "
         f"AND state IN ({placeholders(sources)}) RETURNING order_id", (target, stamp(now), team.id, *sources)),
    ]).fetchall()
    team.state = TeamState.SUCCEEDED.value
    order_ids = sorted(r[0] for r in paid)
    if order_ids:
        execute(f'UPDATE "order" SET group_hold = %s WHERE id IN ({placeholders(order_ids)})', (False, *order_ids))
    topic = "group.virtual_completed" if virtual_count else "group.succeeded"
    events.record(topic, f"group_team:{team.id}", ACTOR, activity=team.activity_id, orders=order_ids,
                  virtual_count=virtual_count)
    if virtual_count:  # visible in the ledger: a zero-amount transaction whose memo says it
        ledger.post(f"group-virtual:{team.id}", "group_virtual",
                    [ledger.Leg(VIRTUAL_ACCOUNT, 0), ledger.Leg(ledger.SALES, 0)],
                    memo=f"team {team.id} of activity {team.activity_id}: {virtual_count} of {team.size} "
                         "seats filled virtually at expiry")
    return order_ids


def delivered(order_ids: list[int]) -> int:
    """Deliverable members whose orders were delivered (the delivery job, after fulfilment)."""
    if not order_ids:
        return 0
    return execute(f"UPDATE group_member SET state = %s, updated_at = %s WHERE order_id IN "
                   f"({placeholders(order_ids)}) AND state = %s",
                   (MemberState.DELIVERED.value, stamp(utcnow()), *order_ids, MemberState.DELIVERABLE.value)).rowcount


def stranded(cutoff: dt.datetime, limit: int) -> list[int]:
    """Paid member orders still waiting for `advance` since before `cutoff` (a drain that died
    after popping them): the sweep hands them to the drain again."""
    return [r[0] for r in execute(
        'SELECT o.id FROM group_member m JOIN "order" o ON o.id = m.order_id '
        f"WHERE m.state IN ({placeholders(stranded_states)}) AND o.status = %s AND o.group_hold "
        "AND o.paid_at <= %s ORDER BY o.id LIMIT %s",
        (*stranded_states, "paid", stamp(cutoff), limit))]


stranded_states = (MemberState.JOINING.value, MemberState.LEFT.value)


# ---- expiry ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Closed:
    team_id: int
    state: str  # the team's state after the call
    changed: bool  # this call closed it
    refund: list[int]  # member orders waiting for their refund (every call lists them again)
    deliverable: list[int]  # member orders to deliver (a virtual completion)
    cancelled: list[int]  # unpaid member orders this call cancelled
    virtual_count: int = 0


def due_teams(now: dt.datetime, limit: int) -> list[int]:
    """Open teams whose window has passed, oldest first (the (state, expires_at) index)."""
    return [t.id for t in GroupTeam.select(GroupTeam.id).where(
        (GroupTeam.state == TeamState.OPEN) & (GroupTeam.expires_at <= now))
        .order_by(GroupTeam.expires_at, GroupTeam.id).limit(limit)]


def expire_due(now: dt.datetime | None = None, *, limit: int = 200) -> list[int]:
    """Close up to `limit` expired open teams, one transaction each; the ids closed. The job
    (tasks/groupbuy.py) calls `close_team` itself to act on each outcome."""
    now = now or utcnow()
    return [t for t in due_teams(now, limit) if close_team(t, now=now).changed]


def close_team(team_id: int, *, now: dt.datetime | None = None) -> Closed:
    """Close a team whose window passed, in one transaction with the team locked. Unpaid
    members' orders are cancelled (stock given back, as the expiry job does: a group order
    holds no coupon or live place, checkout refuses those) and the members leave; a member who
    paid before the expiry counts as paid. Then `group_rules.close_decision`: virtually
    completed (virtual_count, event `group.virtual_completed`, a zero-amount ledger transaction
    `group-virtual:{team}` with a memo) or failed (paid members refunding, event `group.failed`).
    A team still open and unexpired, or already closed, is left as it is. Every call returns the
    members still waiting for a refund (and, of a succeeded team, for delivery), so a run killed
    after this commit and before the refunds finds them again."""
    now = now or utcnow()
    cancelled: list[int] = []
    deliverable: list[int] = []
    decision = rules.Closing("", 0)
    with db.atomic():
        team = lock_team(team_id)
        if team is None:
            raise NotFound(f"group-buy team {team_id} not found", code="group_team_not_found")
        changed = team.state == TeamState.OPEN and team.expires_at <= now
        if changed:
            members = list(GroupMember.select().where(GroupMember.team == team_id))
            orders = order_states([m.order_id for m in members])
            paid_now, late = 0, []
            for m in members:
                status, paid_at = orders.get(m.order_id, ("", None))
                if m.state == MemberState.JOINING and execute(
                        'UPDATE "order" SET status = %s WHERE id = %s AND status = %s',
                        ("cancelled", m.order_id, "pending")).rowcount:
                    inventory.release(m.order_id)
                    events.record("order.cancelled", f"order:{m.order_id}", ACTOR, reason="group_expired")
                    cancelled.append(m.order_id)
                    move([m.id], rules.Event.LEAVE, now)
                    execute("UPDATE group_team SET seats_taken = seats_taken - 1 WHERE id = %s", (team_id,))
                    units(team.activity_id, -1)
                elif m.state == MemberState.JOINING and status == "paid" and paid_at is not None \
                        and paid_at <= team.expires_at:
                    move([m.id], rules.Event.PAID, now, paid=True)
                    paid_now += 1
                elif m.state in (MemberState.JOINING, MemberState.LEFT) and status == "paid":
                    late.append(m.id)  # paid after the expiry, or for a seat it had lost
            if paid_now:
                execute("UPDATE group_team SET paid_count = paid_count + %s WHERE id = %s", (paid_now, team_id))
                team.paid_count += paid_now
            move(late, rules.Event.FAIL, now)
            decision = rules.close_decision(paid_count=team.paid_count, size=team.size,
                                            virtual_complete=_virtual(team.activity_id))
            if decision.state == TeamState.SUCCEEDED:
                deliverable = _succeed(team, now, virtual_count=decision.virtual_count)
            else:
                failing = [r[0] for r in execute("SELECT id FROM group_member WHERE team_id = %s AND state = %s",
                                                 (team_id, MemberState.PAID.value))]
                move(failing, rules.Event.FAIL, now)
                units(team.activity_id, -len(failing))
                execute("UPDATE group_team SET state = %s, closed_at = %s WHERE id = %s",
                        (TeamState.FAILED.value, stamp(now), team_id))
                team.state = TeamState.FAILED.value
                events.record("group.failed", f"group_team:{team_id}", ACTOR, activity=team.activity_id,
                              paid=team.paid_count, size=team.size)
        refund = [r[0] for r in execute("SELECT order_id FROM group_member WHERE team_id = %s AND state = %s "
                                        "ORDER BY order_id", (team_id, MemberState.REFUNDING.value))]
        if team.state == TeamState.SUCCEEDED:  # also on a re-run: what is still to deliver
            deliverable = undelivered(team_id)
    return Closed(team_id, team.state, changed, refund, deliverable, cancelled,
                  decision.virtual_count or team.virtual_count)


def _virtual(activity_id: int) -> bool:
    return bool(GroupActivity.select(GroupActivity.virtual_complete).where(GroupActivity.id == activity_id).scalar())


# ---- refunds -------------------------------------------------------------------------------------


def on_refund(order_id: int) -> None:
    """Inside payments.refund_order's final transaction (the order locked and refunded now): a
    member who paid (or held a seat) before success is refunded and frees its place (seats_taken
    and paid_count - 1, so someone else can take it); refunding (a failed team) or left (a late
    payment) -> refunded; after success (deliverable, delivered) -> refunded only, the team stays
    succeeded (the normal refund path)."""
    member = GroupMember.get_or_none(GroupMember.order_id == order_id)
    if member is None or member.state == MemberState.REFUNDED:
        return
    team = lock_rows(GroupTeam.select().where(GroupTeam.id == member.team_id)).get()
    now = utcnow()
    if not move([member.id], rules.Event.REFUNDED, now):
        return
    if member.state in rules.HOLDS_SEAT and team.state == TeamState.OPEN:
        paid = int(member.state == MemberState.PAID)
        execute("UPDATE group_team SET seats_taken = seats_taken - 1, paid_count = paid_count - %s WHERE id = %s",
                (paid, team.id))
        units(team.activity_id, -1)
    events.record("group.member_refunded", f"group_team:{team.id}", ACTOR, order=order_id, was=member.state)


def refund_failed(order_id: int, schedule: list[int], *, now: dt.datetime | None = None) -> dt.datetime:
    """A member's refund failed at WeChat Pay (the refund row says so): one more attempt
    counted, the next one due after `group_rules.refund_backoff`. Returns when it is due."""
    now = now or utcnow()
    attempts = (execute("SELECT attempts FROM refund WHERE order_id = %s", (order_id,)).fetchone() or (0,))[0] + 1
    due = now + dt.timedelta(seconds=rules.refund_backoff(attempts, schedule))
    execute("UPDATE refund SET attempts = %s, next_attempt_at = %s WHERE order_id = %s",
            (attempts, stamp(due), order_id))
    return due


def refunds_due(now: dt.datetime, limit: int, *, grace_s: int = 60) -> list[int]:
    """Member orders waiting for a refund that is due: the refund failed and its next try has
    come, or no refund was ever asked for (a lost job) `grace_s` after the member started waiting."""
    rows = execute(
        "SELECT m.order_id FROM group_member m LEFT JOIN refund r ON r.order_id = m.order_id "
        "WHERE m.state = %s AND ((r.id IS NULL AND m.updated_at <= %s) "
        "OR (r.state <> %s AND (r.next_attempt_at IS NULL OR r.next_attempt_at <= %s))) "
        "ORDER BY m.order_id LIMIT %s",
        (MemberState.REFUNDING.value, stamp(now - dt.timedelta(seconds=grace_s)), "succeeded", stamp(now), limit))
    return [r[0] for r in rows]


@dataclass(frozen=True)
class FailingRefund:
    order_id: int
    order_no: str
    team_id: int
    amount_fen: int
    attempts: int
    last_error: str | None
    next_attempt_at: dt.datetime | None


def failing_refunds(limit: int = 50) -> list[FailingRefund]:
    """For the admin: group-buy refunds that keep failing (attempts >= FAILING_AFTER, not done)."""
    at = GroupMember.paid_at.python_value
    rows = execute(
        'SELECT r.order_id, o.no, m.team_id, r.amount_fen, r.attempts, r.last_error, r.next_attempt_at '
        'FROM refund r JOIN group_member m ON m.order_id = r.order_id JOIN "order" o ON o.id = r.order_id '
        "WHERE r.state <> %s AND r.attempts >= %s ORDER BY r.attempts DESC, r.order_id LIMIT %s",
        ("succeeded", rules.FAILING_AFTER, limit))
    return [FailingRefund(r[0], r[1], r[2], r[3], r[4], r[5], at(r[6])) for r in rows]
