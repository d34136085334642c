"""Buyer notifications through one delivery interface, with every attempt recorded.

A notification is claimed with a lease before it is sent, so two workers running the same job
never push twice; a worker that dies mid-send frees the claim when the lease runs out.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Protocol

import peewee as pw

from models.db import BaseModel, db, execute, execute_batch, placeholders, utcnow
from models.errors import DomainError
from models.users import User

log = logging.getLogger(__name__)

LEASE_SECONDS = 60


class Notification(BaseModel):
    key = pw.CharField(max_length=96, unique=True)  # kind:order:channel, or a user notice's key
    order_id = pw.BigIntegerField(index=True)  # 0: a notice about no order (send_user_notice)
    user = pw.ForeignKeyField(User, on_delete="RESTRICT", index=False)
    channel = pw.CharField(max_length=32)
    kind = pw.CharField(max_length=32)
    state = pw.CharField(max_length=16, default="pending")  # pending, sending, sent, failed
    attempts = pw.IntegerField(default=0)
    last_error = pw.CharField(max_length=200, null=True)
    claimed_at = pw.DateTimeField(null=True)
    created_at = pw.DateTimeField(default=utcnow)
    sent_at = pw.DateTimeField(null=True)


class NotificationAttempt(BaseModel):
    notification = pw.ForeignKeyField(Notification, backref="attempt_rows", on_delete="RESTRICT")
    number = pw.IntegerField()
    ok = pw.BooleanField()
    error = pw.CharField(max_length=200, null=True)
    created_at = pw.DateTimeField(default=utcnow)


class NotifyError(DomainError):
    code = "notify_failed"

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Notice:
    """What the buyer is told. Never carries a card key: the buyer reveals it in the app."""

    kind: str
    order_no: str  # "" for a notice about no order (see send_user_notice)
    order_id: int  # 0 for a notice about no order
    product: str
    amount_fen: int
    when: str
    page: str
    text: str = ""  # the message itself, for notices that are not about a delivered order

    @property
    def about_order(self) -> bool:
        return self.order_id != 0


class Notifier(Protocol):
    channel: str

    def send(self, user: User, notice: Notice) -> None:
        """Push one notice. Raises NotifyError (transient or not)."""


def send_notice(order_id: int, notifier: Notifier, kind: str = "delivered") -> str:
    """Send one notice (see `send_notices`). Re-raises a transient NotifyError so a retry job is
    retried with backoff."""
    state, error = send_notices([order_id], notifier, kind)[order_id]
    if state == "retry":
        raise NotifyError(error or "notice failed", transient=True)
    return state


def send_notices(order_ids: list[int], notifier: Notifier,
                 kind: str = "delivered") -> dict[int, tuple[str, str | None]]:
    """Send one notice per order through a channel, each at most once, with a fixed number of
    statements per batch. Returns per order (state, error): 'sent', 'failed' (permanent),
    'retry' (transient: the caller schedules a retry) or 'busy'/'done' when another worker
    holds the claim or it was handled before."""
    ids = sorted(set(order_ids))
    if not ids:
        return {}
    channel = notifier.channel
    rows = execute(
        'SELECT o.id, o.no, o.amount_fen, o.delivered_at, o.user_id, u.openid, s.name '
        'FROM "order" o JOIN "user" u ON u.id = o.user_id JOIN sku s ON s.id = o.sku_id '
        f"WHERE o.id IN ({placeholders(ids)})", ids).fetchall()
    info = {row[0]: row for row in rows}
    now = utcnow()
    ts = Notification.created_at.db_value
    execute("INSERT INTO notification (key, order_id, user_id, channel, kind, state, attempts, "
            "created_at) VALUES " + ", ".join(["(%s, %s, %s, %s, %s, %s, 0, %s)"] * len(info))
            + " ON CONFLICT (key) DO NOTHING",
            [v for oid, row in info.items()
             for v in (f"{kind}:{oid}:{channel}", oid, row[4], channel, kind, "pending", ts(now))])
    keys = [f"{kind}:{oid}:{channel}" for oid in info]
    claimed = execute(
        "UPDATE notification SET state = %s, claimed_at = %s, attempts = attempts + 1 "
        f"WHERE key IN ({placeholders(keys)}) AND (state = %s OR (state = %s AND claimed_at < %s)) "
        "RETURNING id, order_id, attempts",
        ("sending", ts(now), *keys, "pending", "sending",
         ts(now - dt.timedelta(seconds=LEASE_SECONDS)))).fetchall()
    result: dict[int, tuple[str, str | None]] = {oid: ("busy", None) for oid in ids}
    attempts: list[tuple] = []
    sent: list[int] = []
    failed: list[tuple[int, str, str]] = []
    for note_id, oid, number in claimed:
        _, no, amount, delivered_at, user_id, openid, product = info[oid]
        delivered = Notification.created_at.python_value(delivered_at) or now
        notice = Notice(kind=kind, order_no=no, order_id=oid, product=product, amount_fen=amount,
                        when=delivered.strftime("%Y-%m-%d %H:%M"),
                        page=f"pages/vouchers/index?order={oid}")
        try:
            notifier.send(User(id=user_id, openid=openid), notice)
        except Exception as exc:  # noqa: BLE001 - one notice's failure must not stop the batch
            # A NotifyError says whether it is worth retrying; anything else (a bug that only
            # this order's data reaches) is retried on the schedule too, and recorded.
            transient = exc.transient if isinstance(exc, NotifyError) else True
            error = (exc.message if isinstance(exc, NotifyError) else
                     f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")[:200]
            if not isinstance(exc, NotifyError):
                log.exception("notice for order %s on %s failed", oid, channel)
            attempts.append((note_id, number, False, error, ts(utcnow())))
            failed.append((note_id, "pending" if transient else "failed", error))
            result[oid] = ("retry" if transient else "failed", error)
            continue
        attempts.append((note_id, number, True, None, ts(utcnow())))
        sent.append(note_id)
        result[oid] = ("sent", None)
    statements: list[tuple[str, tuple | list]] = []
    if attempts:
        statements.append((
            "INSERT INTO notification_attempt (notification_id, number, ok, error, created_at) "
            "VALUES " + ", ".join(["(%s, %s, %s, %s, %s)"] * len(attempts)),
            [v for row in attempts for v in row]))
    if sent:
        statements.append((f"UPDATE notification SET state = %s, sent_at = %s WHERE id IN ({placeholders(sent)})",
                           ("sent", ts(utcnow()), *sent)))
    statements += [("UPDATE notification SET state = %s, last_error = %s WHERE id = %s",
                    (state, error, note_id)) for note_id, state, error in failed]
    if statements:
        with db.atomic():
            execute_batch(statements)
    for oid in ids:
        if result[oid][0] == "busy":
            state = Notification.get_or_none(Notification.key == f"{kind}:{oid}:{channel}")
            if state is not None and state.state in ("sent", "failed"):
                result[oid] = (state.state, None)
    return result


def enqueue_user_notices(rows: list[tuple[str, int, str, str]]) -> None:
    """Record pending notices about no order, rows of (key, user id, channel, kind), inside the
    caller's transaction: an outbox, so a crash between the change and its push leaves the
    notice for a later `send_user_notice` with the same key. Existing keys are left alone."""
    if not rows:
        return
    now = Notification.created_at.db_value(utcnow())
    for start in range(0, len(rows), 1000):
        chunk = rows[start:start + 1000]
        execute("INSERT INTO notification (key, order_id, user_id, channel, kind, state, attempts, "
                "created_at) VALUES " + ", ".join(["(%s, 0, %s, %s, %s, %s, 0, %s)"] * len(chunk))
                + " ON CONFLICT (key) DO NOTHING",
                [v for key, user_id, channel, kind in chunk
                 for v in (key, user_id, channel, kind, "pending", now)])


def send_user_notice(key: str, user: User, notice: Notice, notifier: Notifier, *,
                     max_attempts: int = 5) -> str:
    """Push a notice that is about no order (a level-up, say) to one user through one channel,
    at most once per `key` (e.g. `level_up:{creator}:{rank}:{channel}`): the notification row
    (order_id 0) is claimed with a lease before sending and every try leaves an attempt row.

    Call it outside any transaction (the claim must be committed before the push). Returns
    'sent'; 'failed' (permanent, or the `max_attempts`-th transient failure); 'retry' (transient:
    left pending, a later call with the same key tries again); 'busy' (another worker holds
    the claim) or 'done' (sent or failed before).
    """
    ts = Notification.created_at.db_value
    now = utcnow()
    with db.atomic():
        execute("INSERT INTO notification (key, order_id, user_id, channel, kind, state, attempts, "
                "created_at) VALUES (%s, 0, %s, %s, %s, %s, 0, %s) ON CONFLICT (key) DO NOTHING",
                (key, user.id, notifier.channel, notice.kind, "pending", ts(now)))
        claimed = execute(
            "UPDATE notification SET state = %s, claimed_at = %s, attempts = attempts + 1 "
            "WHERE key = %s AND (state = %s OR (state = %s AND claimed_at < %s)) RETURNING id, attempts",
            ("sending", ts(now), key, "pending", "sending",
             ts(now - dt.timedelta(seconds=LEASE_SECONDS)))).fetchone()
    if claimed is None:
        row = Notification.get_or_none(Notification.key == key)
        return "done" if row is not None and row.state in ("sent", "failed") else "busy"
    note_id, number = claimed
    try:
        notifier.send(user, notice)
    except NotifyError as exc:
        error = exc.message[:200]
        state = "pending" if exc.transient and number < max_attempts else "failed"
        with db.atomic():
            execute_batch([
                ("INSERT INTO notification_attempt (notification_id, number, ok, error, created_at) "
                 "VALUES (%s, %s, %s, %s, %s)", (note_id, number, False, error, ts(utcnow()))),
                ("UPDATE notification SET state = %s, last_error = %s WHERE id = %s",
                 (state, error, note_id))])
        return "retry" if state == "pending" else "failed"
    with db.atomic():
        execute_batch([
            ("INSERT INTO notification_attempt (notification_id, number, ok, error, created_at) "
             "VALUES (%s, %s, %s, %s, %s)", (note_id, number, True, None, ts(utcnow()))),
            ("UPDATE notification SET state = %s, sent_at = %s WHERE id = %s",
             ("sent", ts(utcnow()), note_id))])
    return "sent"


# ---- operator retries (the admin's failed pushes) ---------------------------------------------


def failed(limit: int = 50, before_id: int | None = None) -> list[Notification]:
    """Failed notices, newest first (the partial index notification_failed, migration 0009)."""
    query = Notification.select().where(Notification.state == "failed")
    if before_id is not None:
        query = query.where(Notification.id < before_id)
    return list(query.order_by(Notification.id.desc()).limit(limit))


def requeue_failed(ids: list[int]) -> list[tuple[int, int, str, str]]:
    """An operator's retry: these failed notices back to `pending` (as `qianxing orders
    redeliver` does for an order's notices), so the next push claims them. Returns (id,
    order_id, channel, kind) of each notice requeued; the caller queues its push after commit
    (an order notice: `tasks.queues.notify`; a level-up: the level evaluation's retry)."""
    ids = sorted({int(i) for i in ids})
    if not ids:
        return []
    rows = execute(f"UPDATE notification SET state = %s WHERE id IN ({placeholders(ids)}) AND state = %s "
                   "RETURNING id, order_id, channel, kind", ("pending", *ids, "failed")).fetchall()
    return sorted((int(r[0]), int(r[1]), str(r[2]), str(r[3])) for r in rows)
