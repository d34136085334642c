"""Star level evaluation: promoting creators to the level their metrics earn (upgrades only,
with the level-up notices and the one-time thousand-star bonus), and risk penalties, the only
way down (`penalize`, `lift_penalty`). The level table, the metrics and the pure rule they
apply are in models/levels.py.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from models import events, ledger
from models.db import db, execute, lock_rows, placeholders, utcnow
from models.errors import InvalidInput
from models.levels import Metrics, all_metrics, eligible_rank, table
from models.network import Creator
from models.notifications import LEASE_SECONDS, Notice, Notification, Notifier, enqueue_user_notices, send_user_notice
from models.users import User

# ---- evaluation: upgrades only -----------------------------------------------------------------

LEVEL_UP = "level_up"  # notification kind; key level_up:{creator}:{rank}:{channel}
THOUSAND_STAR_BONUS = "thousand_star_bonus"  # ledger kind
CHANGE_CHUNK = 500


def bonus_key(creator_id: int) -> str:
    return f"bonus:thousand_star:{creator_id}"


def level_up_key(creator_id: int, rank: int, channel: str) -> str:
    return f"{LEVEL_UP}:{creator_id}:{rank}:{channel}"


@dataclass(frozen=True)
class LevelChange:
    creator_id: int
    from_rank: int
    to_rank: int
    name: str
    bonus_fen: int = 0  # the thousand-star bonus posted with this change
    pushes: dict[str, str] = field(default_factory=dict)  # channel -> send_user_notice state

    def as_dict(self) -> dict:
        return {"creator_id": self.creator_id, "from": self.from_rank, "to": self.to_rank,
                "name": self.name, "bonus_fen": self.bonus_fen, "pushes": dict(self.pushes)}


def evaluate_levels(*, entry_videos: int, entry_invites: int, bonus_fen: int,
                    notifiers: Sequence[Notifier], actor: str = "system:levels") -> list[LevelChange]:
    """Promote every active creator to the highest rank its metrics earn, never above its
    rank_cap and never down (only `penalize` lowers a rank). Safe to run concurrently and
    repeatedly: each promotion is a compare-and-set on the creator's rank.

    Each change, in the same transaction: the creator's rank, a `creator.level_changed` event
    (from, to, reason, metrics) and a pending notice per channel (an outbox row); reaching the
    top level also posts the one-time bonus (ledger key `bonus:thousand_star:{id}`: paid once
    ever, even if the creator is penalised and promoted again). After commit every notice is
    pushed (each at most once); notices left pending by an earlier run are retried.
    """
    levels = table()
    if not levels:
        return []
    top = levels[-1].rank
    names = {lv.rank: lv.name for lv in levels}
    metrics = all_metrics()
    creators = execute("SELECT c.id, c.rank, c.rank_cap, c.user_id FROM creator c WHERE c.active").fetchall()
    wanted: list[tuple[int, int, int]] = []
    for cid, rank, cap, _ in creators:
        target = eligible_rank(metrics.get(cid, Metrics()), levels, entry_videos, entry_invites)
        if cap is not None:
            target = min(target, cap)
        if target > rank:
            wanted.append((cid, rank, target))
    users = {cid: user_id for cid, _, _, user_id in creators}
    changes: list[LevelChange] = []
    for start in range(0, len(wanted), CHANGE_CHUNK):
        chunk = wanted[start:start + CHANGE_CHUNK]
        with db.atomic():
            changes += _promote(chunk, metrics, names, top, bonus_fen, users,
                                [n.channel for n in notifiers], actor)
    pushed = _push(changes, notifiers, names, top) if notifiers else changes
    _retry_pending(notifiers, names, top, exclude={c.creator_id for c in changes})
    return pushed


def _promote(chunk: list[tuple[int, int, int]], metrics: dict[int, Metrics], names: dict[int, str],
             top: int, bonus_fen: int, users: dict[int, int], channels: list[str],
             actor: str) -> list[LevelChange]:
    by_move: dict[tuple[int, int], list[int]] = defaultdict(list)
    for cid, old, new in chunk:
        by_move[(old, new)].append(cid)
    changes: list[LevelChange] = []
    for (old, new), ids in sorted(by_move.items()):
        done = execute(
            f"UPDATE creator SET rank = %s WHERE id IN ({placeholders(ids)}) AND rank = %s AND active "
            "AND (rank_cap IS NULL OR rank_cap >= %s) RETURNING id", [new, *ids, old, new]).fetchall()
        for (cid,) in sorted(done):
            paid = 0
            if new == top and bonus_fen > 0 and ledger.post(
                    bonus_key(cid), THOUSAND_STAR_BONUS,
                    [ledger.Leg(ledger.REWARD_EXPENSE, bonus_fen),
                     ledger.Leg(ledger.creator_account(cid, ledger.AVAILABLE), -bonus_fen)],
                    memo=f"thousand-star bonus, creator {cid}"):
                paid = bonus_fen
            changes.append(LevelChange(cid, old, new, names[new], paid))
    if changes:
        execute(*events.many_statement("creator.level_changed", actor, [
            (f"creator:{c.creator_id}", {"from": c.from_rank, "to": c.to_rank, "reason": "evaluation",
                                         "bonus_fen": c.bonus_fen,
                                         "metrics": metrics.get(c.creator_id, Metrics()).as_dict()})
            for c in changes]))
        enqueue_user_notices([(level_up_key(c.creator_id, c.to_rank, ch), users[c.creator_id], ch, LEVEL_UP)
                              for c in changes for ch in channels])
    return changes


def level_up_notice(rank: int, name: str, top: int, bonus_fen: int) -> Notice:
    text = f"恭喜升级为{name}！"
    if rank == top and bonus_fen > 0:
        text += f"千星奖励{bonus_fen // 100}元已计入可提现余额。"
    return Notice(kind=LEVEL_UP, order_no="", order_id=0, product=name, amount_fen=bonus_fen,
                  when=utcnow().strftime("%Y-%m-%d %H:%M"), page="pages/earnings/index", text=text)


def _openids(creator_ids: set[int]) -> dict[int, tuple[int, str]]:
    if not creator_ids:
        return {}
    ids = sorted(creator_ids)
    rows = execute(f'SELECT c.id, u.id, u.openid FROM creator c JOIN "user" u ON u.id = c.user_id '
                   f"WHERE c.id IN ({placeholders(ids)})", ids).fetchall()
    return {cid: (uid, openid) for cid, uid, openid in rows}


def _push(changes: list[LevelChange], notifiers: Sequence[Notifier], names: dict[int, str],
          top: int) -> list[LevelChange]:
    who = _openids({c.creator_id for c in changes})
    out = []
    for change in changes:
        uid, openid = who[change.creator_id]
        notice = level_up_notice(change.to_rank, change.name, top, change.bonus_fen)
        pushes = {n.channel: send_user_notice(level_up_key(change.creator_id, change.to_rank, n.channel),
                                              User(id=uid, openid=openid), notice, n)
                  for n in notifiers}
        out.append(replace(change, pushes=pushes))
    return out


def _retry_pending(notifiers: Sequence[Notifier], names: dict[int, str], top: int, *,
                   exclude: set[int], limit: int = 200) -> int:
    """Push level-up notices an earlier run left pending (a transient failure, or a crash
    between commit and push). Returns how many were tried."""
    by_channel = {n.channel: n for n in notifiers}
    if not by_channel:
        return 0
    cutoff = utcnow() - dt.timedelta(seconds=LEASE_SECONDS)
    rows = list(Notification.select(Notification.key, Notification.channel).where(
        (Notification.order_id == 0) & (Notification.kind == LEVEL_UP)  # order_id: indexed
        & Notification.channel.in_(list(by_channel))
        & ((Notification.state == "pending")
           | ((Notification.state == "sending") & (Notification.claimed_at < cutoff)))).limit(limit))
    todo = []
    for row in rows:
        _, cid, rank, _ = row.key.split(":", 3)
        if int(cid) not in exclude and int(rank) in names:
            todo.append((row.key, row.channel, int(cid), int(rank)))
    who = _openids({cid for _, _, cid, _ in todo})
    for key, channel, cid, rank in todo:
        paid = _bonus_paid(cid) if rank == top else 0
        uid, openid = who[cid]
        send_user_notice(key, User(id=uid, openid=openid), level_up_notice(rank, names[rank], top, paid),
                         by_channel[channel])
    return len(todo)


def _bonus_paid(creator_id: int) -> int:
    row = execute("SELECT p.amount_fen FROM ledger_transaction t JOIN posting p ON p.txn_id = t.id "
                  "WHERE t.key = %s AND p.account = %s",
                  (bonus_key(creator_id), ledger.creator_account(creator_id, ledger.AVAILABLE))).fetchone()
    return -int(row[0]) if row else 0


# ---- risk penalties: the only way down ----------------------------------------------------------


def penalize(creator: Creator, to_rank: int, *, actor: str, reason: str) -> Creator:
    """A risk penalty: the creator drops to `to_rank` (if above it) and is never promoted above
    it until `lift_penalty`. Leaves a `creator.penalized` event, and `creator.level_changed`
    when the rank drops. Raises InvalidInput (invalid_rank, reason_required)."""
    top = max((lv.rank for lv in table()), default=0)
    if not isinstance(to_rank, int) or isinstance(to_rank, bool) or not 0 <= to_rank <= top:
        raise InvalidInput(f"the rank after a penalty must be 0-{top}", code="invalid_rank")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("a penalty needs a reason", code="reason_required")
    reason = reason.strip()[:200]
    with db.atomic():
        current = lock_rows(Creator.select().where(Creator.id == creator.id)).get()
        new_rank = min(current.rank, to_rank)
        Creator.update(rank=new_rank, rank_cap=to_rank).where(Creator.id == current.id).execute()
        subject = f"creator:{current.id}"
        events.record("creator.penalized", subject, actor, cap=to_rank, previous_cap=current.rank_cap,
                      reason=reason)
        if new_rank != current.rank:
            events.record("creator.level_changed", subject, actor, reason=f"penalty: {reason}",
                          **{"from": current.rank, "to": new_rank})
    return Creator.get_by_id(creator.id)


def lift_penalty(creator: Creator, actor: str, reason: str = "") -> Creator:
    """Remove a creator's rank cap (the next evaluation promotes as earned). Lifting when there
    is no penalty changes nothing."""
    with db.atomic():
        current = lock_rows(Creator.select().where(Creator.id == creator.id)).get()
        if current.rank_cap is not None:
            Creator.update(rank_cap=None).where(Creator.id == current.id).execute()
            events.record("creator.penalty_lifted", f"creator:{current.id}", actor,
                          previous_cap=current.rank_cap, reason=reason[:200])
    return Creator.get_by_id(creator.id)
