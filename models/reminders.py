"""Reminder pushes for reserved live sessions: the rule (which message is due for which
reservation, on which channel, at time t), the messages, and the planner's progress.

The rule, as pure functions of a session's plan, a reservation's reach and the time:

- **Reminders** at each offset of LIVE_REMINDER_OFFSETS before the planned start (T-24h, T-10m,
  T-0). A reminder is *due* at `start - offset`; it is written from LIVE_REMINDER_AHEAD_S
  before that (its outbox rows wait for the due moment, `not_before`, so sending starts on
  time) until LIVE_REMINDER_LATE_S after it (`due_kinds`): one found later (the worker was
  down, the reservation came after it) is skipped, never sent late. A reservation made after a
  reminder's due moment does not get that reminder. The session must be scheduled (or live:
  a creator who starts a little early still has the T-0 "it started" reminder sent).
- **Notices**: a rescheduled session (plan_version > 0, still scheduled, start ahead) sends a
  "rescheduled" notice once per plan version; a cancelled one a "cancelled" notice once.
  Reminders of an older plan that are still waiting in the outbox are superseded (`supersede`).
- **Channel** (`channel_for`), per reservation: a Telegram private message when the user has a
  Telegram identity; else a WeChat customer-service message while the 48-hour window is open
  (ChatIdentity.last_inbound_at, with a margin for the send); else the mini-program subscribe
  message, only while the reservation's consent is unused and only for the reminder chosen by
  LIVE_SUBSCRIBE_REMINDER_OFFSET (or the cancellation notice: that reminder will never come);
  else nobody can be reached and nothing is written.

Exactly once: every message is an outbox row keyed `live:{session}:v{plan}:{kind}:r{reservation}`
(one per reservation and reminder, whichever channel carries it), and the planner's progress
per (session, plan, kind) is a `ReminderRun` row whose `cursor` (the last reservation handled)
moves in the same transaction as the chunk's outbox rows and consent updates
(tasks/reminders.py). A run killed between chunks resumes after its cursor; a chunk written
twice writes no second row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import peewee as pw

from models import live_rules
from models.broadcasts import WECHAT_WINDOW
from models.chat import ChatIdentity, Platform
from models.db import BaseModel, execute, placeholders, utcnow
from models.live import LiveSession, LiveState
from models.reservations import Reservation
from models.users import User

WXA = "wxa"  # the sender's platform of mini-program subscribe messages
WINDOW_MARGIN = dt.timedelta(minutes=10)  # a customer-service message must arrive inside the window
NOTICE_WITHIN = dt.timedelta(days=1)  # a cancellation notice is written at most this long after it
LIVE_PAGE = "pages/live/index"
RESCHEDULED, CANCELLED = "rescheduled", "cancelled"
THING_MAX = 20  # a subscribe message's `thing` value


class ReminderRun(BaseModel):
    """The planner's progress on one message kind of one plan of a session."""

    session = pw.ForeignKeyField(LiveSession, on_delete="CASCADE", index=False)
    plan_version = pw.IntegerField()
    kind = pw.CharField(max_length=16)  # t<offset>, rescheduled, cancelled
    cursor = pw.BigIntegerField(default=0)  # the last reservation id handled
    written = pw.IntegerField(default=0)  # outbox rows written
    skipped = pw.IntegerField(default=0)  # reservations nobody could be reached for, or too late
    done = pw.BooleanField(default=False)
    created_at = pw.DateTimeField(default=utcnow)
    finished_at = pw.DateTimeField(null=True)

    class Meta:
        indexes = ((("session", "plan_version", "kind"), True),)


# ---- the rule (pure) ------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    offsets: tuple[int, ...]  # seconds before the start, largest first
    subscribe_offset: int  # the reminder a mini-program consent is used for
    late_s: int  # written at most this long after due
    ahead_s: int = 0  # written from this long before due (sent at due)
    tz: str = "Asia/Shanghai"
    template_id: str = "live-reminder-template"

    @classmethod
    def from_settings(cls, settings: Any) -> Policy:
        return cls(tuple(settings.reminder_offsets), settings.LIVE_SUBSCRIBE_REMINDER_OFFSET,
                   settings.LIVE_REMINDER_LATE_S, settings.LIVE_REMINDER_AHEAD_S, settings.LIVE_TIMEZONE,
                   settings.LIVE_SUBSCRIBE_TEMPLATE_ID)


@dataclass(frozen=True)
class Plan:
    """A session as the rule sees it."""

    id: int
    title: str
    state: str
    start: dt.datetime | None  # planned start, naive UTC
    plan_version: int
    cancelled_at: dt.datetime | None = None
    changed_at: dt.datetime | None = None  # the last reschedule or cancellation

    @classmethod
    def of(cls, s: LiveSession) -> Plan:
        return cls(s.id, s.title, s.state, s.scheduled_at, s.plan_version, s.cancelled_at, s.updated_at)


@dataclass(frozen=True)
class Target:
    """A reservation and how its user can be reached."""

    reservation_id: int
    user_id: int
    reserved_at: dt.datetime
    wxa_consent: bool
    telegram_chat: str | None = None
    wechat_chat: str | None = None
    wechat_seen: dt.datetime | None = None
    miniapp_openid: str | None = None  # None for chat-only users (placeholder openids)


@dataclass(frozen=True)
class Push:
    platform: str
    chat_id: str
    uses_consent: bool = False


def reminder_kind(offset: int) -> str:
    return f"t{offset}"


def offset_of(kind: str) -> int | None:
    return int(kind[1:]) if kind.startswith("t") and kind[1:].isdigit() else None


def due_at(plan: Plan, kind: str) -> dt.datetime | None:
    offset = offset_of(kind)
    if offset is None or plan.start is None:
        return None
    return plan.start - dt.timedelta(seconds=offset)


def due_kinds(plan: Plan, now: dt.datetime, policy: Policy) -> list[str]:
    """The message kinds whose run may START now: reminders inside [due - ahead_s, due + late_s] of a
    scheduled or live session; the notice of a rescheduled (start ahead) or cancelled session."""
    if plan.state == LiveState.CANCELLED:
        recent = plan.cancelled_at is None or now - plan.cancelled_at <= NOTICE_WITHIN
        return [CANCELLED] if recent else []
    if plan.state not in (LiveState.SCHEDULED, LiveState.LIVE) or plan.start is None:
        return []
    kinds = []
    if plan.plan_version > 0 and plan.state == LiveState.SCHEDULED and now < plan.start:
        kinds.append(RESCHEDULED)
    late, ahead = dt.timedelta(seconds=policy.late_s), dt.timedelta(seconds=policy.ahead_s)
    for offset in policy.offsets:
        due = plan.start - dt.timedelta(seconds=offset)
        if due - ahead <= now <= due + late:
            kinds.append(reminder_kind(offset))
    return kinds


def may_continue(plan: Plan, kind: str, now: dt.datetime, policy: Policy) -> bool:
    """Whether an unfinished run of this plan may write more now: never after the start plus
    late_s for reminders (a run that fell that far behind stops rather than send late), while
    the start is ahead for a reschedule notice, within NOTICE_WITHIN for a cancellation."""
    if kind == CANCELLED:
        return plan.state == LiveState.CANCELLED and (plan.cancelled_at is None
                                                      or now - plan.cancelled_at <= NOTICE_WITHIN)
    if plan.state not in (LiveState.SCHEDULED, LiveState.LIVE) or plan.start is None:
        return False
    if kind == RESCHEDULED:
        return now < plan.start
    return now <= plan.start + dt.timedelta(seconds=policy.late_s)


def channel_for(target: Target, now: dt.datetime, *, consent_ok: bool) -> Push | None:
    """Where this user is reached: Telegram, else the WeChat window, else (when `consent_ok`
    and a consent is left) the mini-program subscribe message, else nowhere."""
    if target.telegram_chat:
        return Push(Platform.TELEGRAM.value, target.telegram_chat)
    if target.wechat_chat and target.wechat_seen is not None \
            and now - target.wechat_seen < WECHAT_WINDOW - WINDOW_MARGIN:
        return Push(Platform.WECHAT.value, target.wechat_chat)
    if consent_ok and target.wxa_consent and target.miniapp_openid:
        return Push(WXA, target.miniapp_openid, uses_consent=True)
    return None


def push_for(plan: Plan, kind: str, target: Target, now: dt.datetime, policy: Policy) -> Push | None:
    """The one message of `kind` for this reservation, or None (reserved after the reminder
    was due, or after the change a notice is about, or unreachable)."""
    due = due_at(plan, kind)
    if due is not None and target.reserved_at > due:
        return None
    if kind in (RESCHEDULED, CANCELLED) and plan.changed_at is not None and target.reserved_at > plan.changed_at:
        return None
    consent_ok = kind == CANCELLED or kind == reminder_kind(policy.subscribe_offset)
    return channel_for(target, max(now, due) if due is not None else now, consent_ok=consent_ok)


# ---- what the messages say --------------------------------------------------------------------


def live_path(session_id: int) -> str:
    """The session's page in the mini-program."""
    return f"{LIVE_PAGE}?id={session_id}"


def share_url(share_base: str, session_id: int) -> str:
    """The session's public share link (reminders' link, the card, the poster's QR)."""
    return f"{share_base.rstrip('/')}/live/{session_id}"


def local_time(when: dt.datetime, tz: str) -> str:
    return live_rules.local_time(when, tz, "%m月%d日 %H:%M")


def _ahead(offset: int) -> str:
    if offset % 86400 == 0:
        return f"{offset // 86400}天"
    if offset % 3600 == 0:
        return f"{offset // 3600}小时"
    return f"{max(1, offset // 60)}分钟"


def text_of(plan: Plan, kind: str, tz: str) -> str:
    when = local_time(plan.start, tz) if plan.start else ""
    title = plan.title or f"直播 {plan.id}"
    if kind == CANCELLED:
        return f"很抱歉，你预约的直播「{title}」已取消。"
    if kind == RESCHEDULED:
        return f"你预约的直播「{title}」改期了，新的开播时间：{when}（北京时间）。开播前会再提醒你。"
    offset = offset_of(kind) or 0
    if offset == 0:
        return f"你预约的直播「{title}」开播啦！快进直播间：小程序「{live_path(plan.id)}」"
    return f"你预约的直播「{title}」将在{_ahead(offset)}后开播（{when}，北京时间），记得准时来看！"


def _fit(text: str) -> str:
    return text if len(text) <= THING_MAX else text[:THING_MAX - 1] + "…"


def payload(plan: Plan, kind: str, platform: str, policy: Policy, share_base: str) -> dict[str, Any]:
    """The stored message (bots.sender.payload_of's form); the subscribe message adds its
    template, fields and page."""
    text = text_of(plan, kind, policy.tz)
    if platform == WXA:
        note = {CANCELLED: "直播已取消", RESCHEDULED: "直播改期"}.get(
            kind, "直播即将开始" if offset_of(kind) else "直播开始啦")
        when = live_rules.local_time(plan.start, policy.tz)
        return {"text": text, "template_id": policy.template_id, "page": live_path(plan.id),
                "data": {"thing1": {"value": _fit(plan.title or f"直播 {plan.id}")}, "time2": {"value": when},
                         "thing3": {"value": note}}}
    found: dict[str, Any] = {"text": text}
    if kind != CANCELLED and share_base:
        found["link"] = share_url(share_base, plan.id)
    return found


def message_key(plan: Plan, kind: str, reservation_id: int) -> str:
    return f"live:{plan.id}:v{plan.plan_version}:{kind}:r{reservation_id}"


def run_id(session_id: int, plan_version: int, kind: str) -> str:
    """The outbox `broadcast_id` of a run's rows (indexed: superseding finds them by it)."""
    return f"live-{session_id}-v{plan_version}-{kind}"


# ---- reading what the planner needs -----------------------------------------------------------


def sessions_to_plan(now: dt.datetime, policy: Policy) -> list[LiveSession]:
    """Sessions a reminder or notice may be due for: scheduled or live with the start inside
    the offsets' reach, future rescheduled ones, recently cancelled ones (index on (state,
    scheduled_at))."""
    reach = dt.timedelta(seconds=max(policy.offsets) + policy.ahead_s + 60)
    late = dt.timedelta(seconds=policy.late_s)
    near = ((LiveSession.state.in_([LiveState.SCHEDULED.value, LiveState.LIVE.value]))
            & (LiveSession.scheduled_at >= now - late) & (LiveSession.scheduled_at <= now + reach))
    moved = ((LiveSession.state == LiveState.SCHEDULED.value) & (LiveSession.scheduled_at > now)
             & (LiveSession.plan_version > 0))
    cancelled = ((LiveSession.state == LiveState.CANCELLED.value) & (LiveSession.plan_version > 0)
                 & ((LiveSession.cancelled_at.is_null()) | (LiveSession.cancelled_at >= now - NOTICE_WITHIN)))
    return list(LiveSession.select().where(near | moved | cancelled).order_by(LiveSession.id))


def runs_of(session_id: int, plan_version: int) -> dict[str, ReminderRun]:
    return {r.kind: r for r in ReminderRun.select().where((ReminderRun.session == session_id)
                                                         & (ReminderRun.plan_version == plan_version))}


def open_run(session_id: int, plan_version: int, kind: str) -> ReminderRun:
    """The run's row, created on first use (safe when two planners race)."""
    ReminderRun.insert(session=session_id, plan_version=plan_version, kind=kind).on_conflict_ignore().execute()
    return ReminderRun.get((ReminderRun.session == session_id) & (ReminderRun.plan_version == plan_version)
                           & (ReminderRun.kind == kind))


def targets_after(session_id: int, after_id: int, limit: int) -> list[Target]:
    """The next `limit` reservations after `after_id` with their users' reach: two indexed
    queries per chunk (reservations by keyset, then the users' Telegram and WeChat identities)."""
    rows = (Reservation.select(Reservation.id, Reservation.user, Reservation.created_at, Reservation.wxa_consent,
                               User.openid)
            .join(User, on=(Reservation.user == User.id))
            .where((Reservation.session == session_id) & (Reservation.id > after_id))
            .order_by(Reservation.id).limit(limit).tuples())
    rows = list(rows)
    if not rows:
        return []
    reach = chat_reach(sorted({r[1] for r in rows}))
    found = []
    for rid, user_id, created_at, consent, openid in rows:
        tg, wx = reach.get((user_id, Platform.TELEGRAM.value)), reach.get((user_id, Platform.WECHAT.value))
        found.append(Target(rid, user_id, created_at, bool(consent), tg[0] if tg else None, wx[0] if wx else None,
                            wx[1] if wx else None, openid if openid and ":" not in openid else None))
    return found


def chat_reach(user_ids: list[int]) -> dict[tuple[int, str], tuple[str, dt.datetime | None]]:
    """(user, platform) -> (chat id, last inbound) of each user's most recently active Telegram
    and WeChat account: one indexed query (reminders, wake-up pushes, group-buy notices)."""
    reach: dict[tuple[int, str], tuple[str, dt.datetime | None]] = {}
    if not user_ids:
        return reach
    identities = (ChatIdentity.select(ChatIdentity.user, ChatIdentity.platform, ChatIdentity.chat_id,
                                      ChatIdentity.last_inbound_at)
                  .where(ChatIdentity.user.in_(list(user_ids))
                         & ChatIdentity.platform.in_([Platform.TELEGRAM.value, Platform.WECHAT.value]))
                  .order_by(ChatIdentity.id).tuples())
    for user_id, platform, chat_id, seen in identities:
        known = reach.get((user_id, platform))
        if known is None or (seen is not None and (known[1] is None or seen > known[1])):
            reach[(user_id, platform)] = (chat_id, seen)  # the most recently active account
    return reach


def user_targets(user_ids: list[int], now: dt.datetime, consented: set[int]) -> dict[int, Target]:
    """Each user's reach as a Target (no reservation: id 0, `now` as its time) for pushes that
    are not reminders; `consented`: the users with a subscribe consent of the push's topic left.
    Two indexed queries."""
    reach = chat_reach(user_ids)
    openids = dict(User.select(User.id, User.openid).where(User.id.in_(list(user_ids))).tuples()) if user_ids else {}
    out = {}
    for user_id in user_ids:
        tg, wx = reach.get((user_id, Platform.TELEGRAM.value)), reach.get((user_id, Platform.WECHAT.value))
        openid = openids.get(user_id)
        out[user_id] = Target(0, user_id, now, user_id in consented, tg[0] if tg else None,
                              wx[0] if wx else None, wx[1] if wx else None,
                              openid if openid and ":" not in openid else None)
    return out


# ---- writing the planner's progress ----------------------------------------------------------


def advance(run: ReminderRun, cursor: int, written: int, skipped: int) -> bool:
    """Move the run's cursor from where this planner read it (compare-and-set: False when
    another planner moved it first; the caller rolls its chunk back)."""
    moved = (ReminderRun.update(cursor=cursor, written=ReminderRun.written + written,
                                skipped=ReminderRun.skipped + skipped)
             .where((ReminderRun.id == run.id) & (ReminderRun.cursor == run.cursor) & (~ReminderRun.done))
             .execute())
    if moved:
        run.cursor = cursor
    return bool(moved)


def finish(run: ReminderRun, now: dt.datetime) -> None:
    ReminderRun.update(done=True, finished_at=now).where((ReminderRun.id == run.id) & (~ReminderRun.done)).execute()


def consume_consents(reservation_ids: Sequence[int], now: dt.datetime) -> None:
    """The subscribe consents used by the messages just written (same transaction)."""
    if reservation_ids:
        Reservation.update(wxa_consent=False, updated_at=now).where(Reservation.id.in_(list(reservation_ids))).execute()


def supersede(plan: Plan, policy: Policy) -> int:
    """Reminders of the session's older plans still waiting in the outbox are never sent:
    their rows are marked failed ("superseded"), and a subscribe consent such a row had used
    is given back. Returns the rows superseded."""
    old = [run_id(plan.id, version, reminder_kind(o)) for version in range(plan.plan_version)
           for o in policy.offsets]
    if not old:
        return 0
    rows = execute(
        "UPDATE outbound_message SET state = 'failed', last_error = %s, claimed_at = NULL "
        f"WHERE broadcast_id IN ({placeholders(old)}) AND state = 'pending' RETURNING key, platform",
        ["superseded: the session was rescheduled or cancelled", *old]).fetchall()
    rearm = [int(key.rsplit(":r", 1)[1]) for key, platform in rows if platform == WXA]
    if rearm:
        Reservation.update(wxa_consent=True, updated_at=utcnow()).where(Reservation.id.in_(rearm)).execute()
    return len(rows)
