"""What a group-buy team says in chat (issue 14): the group card, its progress, the notices when
a team succeeds or fails, their outbox keys, and the reads behind them.

The rule of what is shown is pure (`progress`, `time_left`, `card_text`, the notice texts):
one place, used by the chat command (bots/commands/groupbuy.py), the progress posts and notices
(tasks/group_notices.py), the share page (miniapp_api/share.py) and the team poster. Texts are
Chinese, as group welcomes and delivery notices are: a card is read by a whole group.

Keys (one outbox row per logical message, so a job run twice sends once):
- `progress_key(team, paid)`: the team's progress in its community group at that paid count;
- `succeeded_key(team)`: "拼团成功，正在发货" in the group;
- `member_key(team, kind, user)`: a member's private notice (kind "ok" or "failed").

Reads: `card_of` / `cards_of` (team, activity and retail price in one query), `active_activities`,
`joinable` (open teams with a free seat, closest to filling first), `team_of_user`, and
`members_to_notify` with each member's reach (`reach`: Telegram, the WeChat 48-hour window, a
mini-program subscribe consent of topic CONSENT_TOPIC), judged by models/reminders.py
`channel_for`, the one reachability rule. Nothing here imports models.orders or
models.payments (they import models.groupbuy).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from models import group_rules
from models.chat import Platform
from models.db import execute, placeholders, utcnow
from models.groupbuy import GroupActivity, GroupMember, GroupTeam, MemberState, TeamState
from models.money import rmb
from models.reminders import WXA, Push, Target, channel_for, user_targets
from models.wakeup import SubscribeConsent

TEAM_PAGE = "pages/group/index"
CONSENT_TOPIC = "groupbuy"  # the SubscribeConsent topic a member's private notice may use
THING_MAX = 20  # a subscribe message's `thing` value
OK, FAILED = "ok", "failed"
# Members who hold a place in the team and hear how it ends.
HOLDING = (MemberState.PAID.value, MemberState.DELIVERABLE.value, MemberState.DELIVERED.value)
REFUNDING = (MemberState.REFUNDING.value, MemberState.REFUNDED.value, MemberState.PAID.value)


@dataclass(frozen=True)
class TeamCard:
    """A team as its card shows it."""

    team_id: int
    activity_id: int
    title: str
    size: int
    paid: int
    seats_taken: int
    state: str
    group_price_fen: int
    retail_fen: int
    expires_at: dt.datetime
    chat_platform: str | None = None
    chat_id: str | None = None
    virtual: int = 0


@dataclass(frozen=True)
class ActivityLine:
    id: int
    title: str
    size: int
    group_price_fen: int
    retail_fen: int
    ends_at: dt.datetime
    starts_at: dt.datetime | None = None
    active: bool = True

    def open_at(self, now: dt.datetime) -> bool:
        return self.active and (self.starts_at is None or self.starts_at <= now) and self.ends_at > now


# ---- the rule (pure) ---------------------------------------------------------------------------


def progress(paid: int, size: int) -> str:
    """'2/3，还差1人'; a full team '3/3，已成团' (the rule is models/group_rules.py's)."""
    return group_rules.progress(max(0, min(paid, size)), size)


def shown_paid(card: TeamCard) -> int:
    """The places a card counts as taken: paid members, plus seats filled virtually at expiry."""
    return card.paid + card.virtual


def time_left(expires_at: dt.datetime, now: dt.datetime) -> str:
    """'还剩 2小时05分', '还剩 3分钟' (a started minute counts), '已截止'."""
    seconds = int((expires_at - now).total_seconds())
    if seconds <= 0:
        return "已截止"
    minutes = -(-seconds // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"还剩 {days}天{hours}小时"
    if hours:
        return f"还剩 {hours}小时{minutes:02d}分"
    return f"还剩 {minutes}分钟"


def share_url(base: str, team_id: int) -> str:
    """The team's public share link (the card's button, the poster's QR)."""
    return f"{base.rstrip('/')}/group/{team_id}"


def team_path(team_id: int) -> str:
    """The team's page in the mini-program."""
    return f"{TEAM_PAGE}?team={team_id}"


def activity_path(activity_id: int) -> str:
    """The activity's page in the mini-program (where a team is started)."""
    return f"{TEAM_PAGE}?activity={activity_id}"


def price_line(card: TeamCard | ActivityLine) -> str:
    return f"拼团价 {rmb(card.group_price_fen)}（单买 {rmb(card.retail_fen)}）· {card.size}人团"


def status_line(card: TeamCard, now: dt.datetime) -> str:
    if card.state == TeamState.SUCCEEDED:
        return "拼团成功，正在发货"
    if card.state == TeamState.FAILED:
        return "拼团未成功，已付款项原路退回"
    if card.expires_at <= now:
        return "已截止，等待结算"
    if card.seats_taken >= card.size:
        return "名额已满，等待付款"
    return time_left(card.expires_at, now)


def card_text(card: TeamCard, now: dt.datetime, *, link: str | None = None) -> str:
    """The group card: title, group price vs retail, progress, time left or outcome, and the
    share link when the platform shows links in text (WeChat, the console)."""
    lines = [f"🛒 拼团：{card.title}", price_line(card), f"进度：{progress(shown_paid(card), card.size)}",
             status_line(card, now)]
    if joinable_now(card, now):
        lines.append(f"参团：{link}" if link else "点下面的按钮参团，付款即占位。")
    return "\n".join(lines)


def joinable_now(card: TeamCard, now: dt.datetime) -> bool:
    return card.state == TeamState.OPEN and card.expires_at > now and card.seats_taken < card.size


def card_payload(card: TeamCard, now: dt.datetime, *, platform: str, share_base: str) -> dict:
    """The card as an outbox payload for the team's group: on Telegram the join link is a URL
    button, elsewhere it is in the text."""
    link = share_url(share_base, card.team_id)
    if platform == Platform.TELEGRAM.value:
        payload: dict = {"text": card_text(card, now), "link": link}
        if joinable_now(card, now):
            payload["buttons"] = [[{"text": f"参团（{progress(shown_paid(card), card.size)}）", "url": link}]]
        return payload
    return {"text": card_text(card, now, link=link), "link": link}


def succeeded_group_text(card: TeamCard) -> str:
    return f"🎉 拼团成功：{card.title}（{progress(card.size, card.size)}），正在发货，请留意私信通知。"


def succeeded_member_text(card: TeamCard) -> str:
    return f"你参加的拼团「{card.title}」已成团，正在为你发货，发货后会再通知你。"


def failed_member_text(card: TeamCard, amount_fen: int) -> str:
    return (f"很抱歉，你参加的拼团「{card.title}」未能在截止前成团，"
            f"已付的 {rmb(amount_fen)} 正在原路退回，请留意微信支付的退款通知。")


def _fit(text: str) -> str:
    return text if len(text) <= THING_MAX else text[:THING_MAX - 1] + "…"


def member_payload(card: TeamCard, kind: str, push: Push, *, amount_fen: int, template_id: str,
                   share_base: str) -> dict:
    """A member's private notice as stored in the outbox (bots.sender.payload_of's form); the
    subscribe message adds its template, fields and page."""
    text = succeeded_member_text(card) if kind == OK else failed_member_text(card, amount_fen)
    if push.platform == WXA:
        return {"text": text, "template_id": template_id, "page": team_path(card.team_id),
                "data": {"thing1": {"value": _fit(card.title)},
                         "phrase2": {"value": "拼团成功" if kind == OK else "拼团失败"},
                         "thing3": {"value": _fit("正在发货" if kind == OK else f"{rmb(amount_fen)}原路退回")}}}
    found: dict = {"text": text}
    if share_base:
        found["link"] = share_url(share_base, card.team_id)
    return found


def progress_key(team_id: int, paid: int) -> str:
    return f"group:{team_id}:p{paid}"


def succeeded_key(team_id: int) -> str:
    return f"group:{team_id}:ok"


def member_key(team_id: int, kind: str, user_id: int) -> str:
    return f"group:{team_id}:{kind}:u{user_id}"


# ---- reads --------------------------------------------------------------------------------------

_CARD_SQL = ("SELECT t.id, t.activity_id, a.title, t.size, t.paid_count, t.seats_taken, t.state, "
             "a.group_price_fen, s.retail_price_fen, t.expires_at, t.chat_platform, t.chat_id, t.virtual_count "
             "FROM group_team t JOIN group_activity a ON a.id = t.activity_id JOIN sku s ON s.id = a.sku_id ")


def _card(row: tuple) -> TeamCard:
    expires = GroupTeam.expires_at.python_value(row[9])
    return TeamCard(int(row[0]), int(row[1]), row[2], int(row[3]), int(row[4]), int(row[5]), row[6], int(row[7]),
                    int(row[8]), expires, row[10], row[11], int(row[12] or 0))


def cards_of(team_ids: list[int]) -> list[TeamCard]:
    """The cards of these teams (unknown ids left out), in id order: one query."""
    ids = sorted({int(t) for t in team_ids})
    if not ids:
        return []
    rows = execute(_CARD_SQL + f"WHERE t.id IN ({placeholders(ids)}) ORDER BY t.id", ids).fetchall()
    return [_card(r) for r in rows]


def card_of(team_id: int) -> TeamCard | None:
    found = cards_of([team_id])
    return found[0] if found else None


def joinable(activity_id: int, now: dt.datetime, limit: int) -> list[TeamCard]:
    """Open teams of the activity with a free seat, the closest to filling first (then the
    oldest): the ones a card offers to join."""
    rows = execute(_CARD_SQL + "WHERE t.activity_id = %s AND t.state = %s AND t.expires_at > %s "
                   "AND t.seats_taken < t.size ORDER BY t.paid_count DESC, t.id LIMIT %s",
                   [activity_id, TeamState.OPEN.value, GroupTeam.expires_at.db_value(now), limit]).fetchall()
    return [_card(r) for r in rows]


_ACTIVITY_SQL = ("SELECT a.id, a.title, a.size, a.group_price_fen, s.retail_price_fen, a.ends_at, a.starts_at, "
                 "a.active FROM group_activity a JOIN sku s ON s.id = a.sku_id ")


def _activity(r: tuple) -> ActivityLine:
    return ActivityLine(int(r[0]), r[1], int(r[2]), int(r[3]), int(r[4]), GroupActivity.ends_at.python_value(r[5]),
                        GroupActivity.starts_at.python_value(r[6]), bool(r[7]))


def active_activities(now: dt.datetime, limit: int) -> list[ActivityLine]:
    """Activities open now (active, started, not ended), oldest first."""
    rows = execute(_ACTIVITY_SQL + "WHERE a.active AND a.starts_at <= %s AND a.ends_at > %s ORDER BY a.id LIMIT %s",
                   [GroupActivity.starts_at.db_value(now), GroupActivity.ends_at.db_value(now), limit]).fetchall()
    return [_activity(r) for r in rows]


def activity_line(activity_id: int) -> ActivityLine | None:
    rows = execute(_ACTIVITY_SQL + "WHERE a.id = %s", [activity_id]).fetchall()
    return _activity(rows[0]) if rows else None


def team_of_user(user_id: int, activity_id: int) -> int | None:
    """The user's latest team in this activity (as a member who has neither left nor been
    refunded), or None."""
    return (GroupMember.select(GroupMember.team).join(GroupTeam, on=(GroupMember.team == GroupTeam.id))
            .where((GroupMember.user_id == user_id) & (GroupTeam.activity == activity_id)
                   & GroupMember.state.not_in([MemberState.LEFT.value, MemberState.REFUNDED.value]))
            .order_by(GroupMember.team.desc()).limit(1).scalar())


def is_member(user_id: int, team_id: int) -> bool:
    return GroupMember.select().where((GroupMember.user_id == user_id) & (GroupMember.team == team_id)
                                      & (GroupMember.state != MemberState.LEFT.value)).exists()


@dataclass(frozen=True)
class Recipient:
    member_id: int
    user_id: int
    order_id: int
    amount_fen: int
    target: Target


def reach(user_ids: list[int], now: dt.datetime) -> dict[int, Target]:
    """How each user can be reached (models.reminders.Target): their most recently active
    Telegram and WeChat accounts, their mini-program openid and whether a CONSENT_TOPIC
    subscribe consent is left. Three indexed queries."""
    users = sorted(set(user_ids))
    if not users:
        return {}
    consents = {user_id for (user_id,) in SubscribeConsent.select(SubscribeConsent.user_id)
                .where(SubscribeConsent.user_id.in_(users) & (SubscribeConsent.topic == CONSENT_TOPIC)
                       & (SubscribeConsent.remaining > 0)).tuples()}
    return user_targets(users, now, consents)


def members_to_notify(team_id: int, states: tuple[str, ...], now: dt.datetime) -> list[Recipient]:
    """The team's members in these states with their order's amount and their reach."""
    rows = execute(
        f'SELECT m.id, m.user_id, m.order_id, o.amount_fen FROM group_member m JOIN "order" o ON o.id = m.order_id '
        f"WHERE m.team_id = %s AND m.state IN ({placeholders(states)}) ORDER BY m.id",
        [team_id, *states]).fetchall()
    targets = reach([int(r[1]) for r in rows], now)
    return [Recipient(int(r[0]), int(r[1]), int(r[2]), int(r[3]), targets[int(r[1])]) for r in rows]


def push_for(recipient: Recipient, now: dt.datetime) -> Push | None:
    """Where a member's notice goes (models.reminders.channel_for: Telegram, the WeChat window,
    else a subscribe consent of CONSENT_TOPIC), or None."""
    return channel_for(recipient.target, now, consent_ok=True)


def use_consents(user_ids: list[int]) -> None:
    """One subscribe consent used per user (the notices just written went out on it)."""
    if user_ids:
        (SubscribeConsent.update(remaining=SubscribeConsent.remaining - 1, updated_at=utcnow())
         .where(SubscribeConsent.user_id.in_(sorted(set(user_ids))) & (SubscribeConsent.topic == CONSENT_TOPIC)
                & (SubscribeConsent.remaining > 0)).execute())
