"""Campaign coupons handed out in bulk (issue 14): the dormant-buyer wake-up, the lottery losers'
coupon, and the mini-program subscribe consents a promotion push may use.

- **Wake-up** (`tasks/wakeup.py` runs it daily). A buyer is *dormant* when they paid at least
  once and their last paid order is older than WAKEUP_DORMANT_DAYS (`dormant_after`, keyset over
  users). A buyer is woken at most once per *period*, days since the epoch // WAKEUP_PERIOD_DAYS
  (`period_of`): `WakeupSent` is unique per (user, period) and `claim` inserts the rows of a
  chunk with ON CONFLICT DO NOTHING, so only the buyers whose row is new in this transaction go
  on (a second or concurrent run of the job claims nobody twice). For the claimed buyers, in the
  same transaction, the job issues the wakeup campaign coupon (`coupons.issue`, source_key
  `wakeup:<period>`), picks the channel with the reminders' rule (`reminders.channel_for`:
  Telegram, the WeChat 48-hour window, else the mini-program subscribe message while a "promo"
  consent remains, taken by `take_consents`), writes the pushes and `record`s the channel
  (None: nobody could be reached; the coupon is in the wallet all the same) and the grant.
- **Lottery losers**: after a reservation lottery is drawn, every reservation that did not win
  gets the lottery_loser campaign coupon (`issue_to_losers`), source_key `lottery:<session>`,
  streamed in keyset chunks; the run's cursor (`CampaignRun`, unique per run key) moves in each
  chunk's transaction, so a killed run resumes where it stopped. No coupon configured when the
  lottery is drawn: the run is closed at once and nothing is issued.
- **Subscribe consents**: each wx.requestSubscribeMessage the shopper accepts allows one
  message on that topic (`accept_consent`, capped at SUBSCRIBE_CONSENT_MAX).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence

import peewee as pw

from models import coupons
from models.db import BaseModel, db, execute, placeholders, utcnow
from models.errors import InvalidInput
from models.lottery import Lottery, LotteryState, LotteryWinner
from models.orders import Order
from models.reminders import Push, Target, channel_for, user_targets
from models.reservations import Reservation

EPOCH = dt.date(1970, 1, 1)
PROMO = "promo"
GROUPBUY = "groupbuy"  # a group-buy team's result (models/group_cards.py)
TOPICS = frozenset({PROMO, GROUPBUY})
ACCEPT_MAX = 10  # consents one wx.requestSubscribeMessage call can give (templates per call, with margin)
CHUNK = 500
WAKEUP, LOTTERY_LOSER = "wakeup", "lottery_loser"
LOSER_LOOKBACK = dt.timedelta(days=2)  # lotteries drawn this recently are checked for their losers' run


class WakeupSent(BaseModel):
    user_id = pw.BigIntegerField()
    period = pw.IntegerField()  # days since the epoch // WAKEUP_PERIOD_DAYS
    grant_id = pw.BigIntegerField(null=True)
    channel = pw.CharField(max_length=16, null=True)  # None: no channel reached them
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "wakeup_sent"
        indexes = ((("user_id", "period"), True), (("period", "id"), False))


class SubscribeConsent(BaseModel):
    """Mini-program subscribe-message consents a user gave for a topic (each allows one message)."""

    user_id = pw.BigIntegerField()
    topic = pw.CharField(max_length=24)  # promo | groupbuy
    remaining = pw.IntegerField(default=0)
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "subscribe_consent"
        indexes = ((("user_id", "topic"), True),)
        constraints = [pw.SQL("CHECK (remaining >= 0)")]


class CampaignRun(BaseModel):
    """Progress of one bulk hand-out of a campaign coupon (`lottery:<session>` for the losers)."""

    run_key = pw.CharField(max_length=64, unique=True)
    coupon_id = pw.BigIntegerField(null=True)  # None: no campaign coupon was active, nothing issued
    cursor = pw.BigIntegerField(default=0)  # the last item (reservation id) handled
    issued = pw.IntegerField(default=0)
    done = pw.BooleanField(default=False)
    created_at = pw.DateTimeField(default=utcnow)
    finished_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "campaign_run"


TABLES: list[type[pw.Model]] = [WakeupSent, SubscribeConsent, CampaignRun]


# ---- subscribe consents ----------------------------------------------------------------------


def accept_consent(user_id: int, topic: str, accepted: int, *, cap: int) -> int:
    """The shopper accepted `accepted` subscribe messages of `topic` (1..ACCEPT_MAX): add them,
    never above `cap`. Returns the consents now held. Raises InvalidInput (nothing written)."""
    if topic not in TOPICS:
        raise InvalidInput(f"topic must be one of: {', '.join(sorted(TOPICS))}", code="invalid_topic")
    if isinstance(accepted, bool) or not isinstance(accepted, int) or not 1 <= accepted <= ACCEPT_MAX:
        raise InvalidInput(f"accepted is 1-{ACCEPT_MAX}", code="invalid_accepted")
    now = utcnow()
    with db.atomic():
        SubscribeConsent.insert(user_id=user_id, topic=topic, remaining=0, updated_at=now).on_conflict_ignore() \
            .execute()
        execute("UPDATE subscribe_consent SET remaining = CASE WHEN remaining + %s > %s THEN %s "
                "ELSE remaining + %s END, updated_at = %s WHERE user_id = %s AND topic = %s",
                (accepted, cap, max(cap, 0), accepted, SubscribeConsent.updated_at.db_value(now), user_id, topic))
        return int(SubscribeConsent.select(SubscribeConsent.remaining)
                   .where((SubscribeConsent.user_id == user_id) & (SubscribeConsent.topic == topic)).scalar())


def consents_of(user_id: int, topic: str = PROMO) -> int:
    found = SubscribeConsent.select(SubscribeConsent.remaining).where(
        (SubscribeConsent.user_id == user_id) & (SubscribeConsent.topic == topic)).scalar()
    return int(found or 0)


def take_consents(user_ids: Sequence[int], topic: str = PROMO) -> set[int]:
    """Use one consent of each of these users (inside the caller's transaction); returns the
    users who had one left (a conditional UPDATE: never below zero)."""
    if not user_ids:
        return set()
    rows = execute(f"UPDATE subscribe_consent SET remaining = remaining - 1, updated_at = %s "
                   f"WHERE topic = %s AND remaining > 0 AND user_id IN ({placeholders(user_ids)}) RETURNING user_id",
                   [SubscribeConsent.updated_at.db_value(utcnow()), topic, *user_ids]).fetchall()
    return {int(r[0]) for r in rows}


def give_back_consents(user_ids: Sequence[int], topic: str = PROMO) -> None:
    if user_ids:
        execute(f"UPDATE subscribe_consent SET remaining = remaining + 1 "
                f"WHERE topic = %s AND user_id IN ({placeholders(user_ids)})", [topic, *user_ids])


# ---- the wake-up rule -------------------------------------------------------------------------


def period_of(now: dt.datetime, period_days: int) -> int:
    """The wake-up period `now` falls in: days since 1970-01-01 // period_days."""
    return (now.date() - EPOCH).days // max(period_days, 1)


def dormant_after(after_user_id: int, *, now: dt.datetime, dormant_days: int, period: int,
                  limit: int = CHUNK) -> list[int]:
    """The next `limit` dormant buyers (ascending user id after `after_user_id`) not yet woken in
    `period`: at least one paid order, none paid within `dormant_days` of `now`. Each probe of a
    user's orders uses the (user_id, ...) index of "order"."""
    cutoff = Order.paid_at.db_value(now - dt.timedelta(days=dormant_days))
    rows = execute(
        'SELECT u.id FROM "user" u WHERE u.id > %s '
        'AND EXISTS (SELECT 1 FROM "order" o WHERE o.user_id = u.id AND o.paid_at IS NOT NULL) '
        'AND NOT EXISTS (SELECT 1 FROM "order" o WHERE o.user_id = u.id AND o.paid_at >= %s) '
        "AND NOT EXISTS (SELECT 1 FROM wakeup_sent w WHERE w.user_id = u.id AND w.period = %s) "
        "ORDER BY u.id LIMIT %s", (after_user_id, cutoff, period, limit)).fetchall()
    return [int(r[0]) for r in rows]


def claim(user_ids: Sequence[int], period: int, now: dt.datetime | None = None) -> list[int]:
    """Insert the (user, period) rows of these buyers; returns those whose row is new (inside the
    caller's transaction: a concurrent run waits for it, then claims none of them)."""
    if not user_ids:
        return []
    when = WakeupSent.created_at.db_value(now or utcnow())
    values = ", ".join(["(%s, %s, %s)"] * len(user_ids))
    params: list = []
    for user_id in user_ids:
        params += [user_id, period, when]
    rows = execute(f"INSERT INTO wakeup_sent (user_id, period, created_at) VALUES {values} "
                   "ON CONFLICT (user_id, period) DO NOTHING RETURNING user_id", params).fetchall()
    return sorted(int(r[0]) for r in rows)


def reach_of(user_ids: Sequence[int], topic: str = PROMO) -> dict[int, Target]:
    """How each user may be reached (models/reminders.Target: Telegram chat, WeChat chat and when
    they last wrote, the mini-program openid and whether a consent of `topic` remains): three
    indexed queries per chunk."""
    if not user_ids:
        return {}
    ids = list(user_ids)
    consented = {int(r[0]) for r in SubscribeConsent.select(SubscribeConsent.user_id).where(
        SubscribeConsent.user_id.in_(ids) & (SubscribeConsent.topic == topic)
        & (SubscribeConsent.remaining > 0)).tuples()}
    return user_targets(ids, utcnow(), consented)


def channels(targets: Iterable[Target], now: dt.datetime) -> dict[int, Push | None]:
    """The channel of each user by the reminders' rule (a subscribe message only while a consent
    remains)."""
    return {t.user_id: channel_for(t, now, consent_ok=True) for t in targets}


def record(period: int, channel_of: dict[int, str | None], *, coupon_id: int, source_key: str) -> None:
    """Write the channel each claimed buyer was reached on and their grant (one UPDATE per
    channel, one for the grants)."""
    by_channel: dict[str | None, list[int]] = {}
    for user_id, channel in channel_of.items():
        by_channel.setdefault(channel, []).append(user_id)
    for channel, users in by_channel.items():
        if channel is not None:
            execute(f"UPDATE wakeup_sent SET channel = %s WHERE period = %s AND user_id IN ({placeholders(users)})",
                    [channel, period, *users])
    users = list(channel_of)
    if users:
        execute("UPDATE wakeup_sent SET grant_id = (SELECT g.id FROM coupon_grant g WHERE g.coupon_id = %s "
                "AND g.source_key = %s AND g.user_id = wakeup_sent.user_id) "
                f"WHERE period = %s AND user_id IN ({placeholders(users)})",
                [coupon_id, source_key, period, *users])


def message_key(period: int, user_id: int) -> str:
    return f"wakeup:{period}:u{user_id}"


def source_key(period: int) -> str:
    return f"wakeup:{period}"


def sent_in(period: int) -> dict[str | None, int]:
    """Buyers woken in a period, by channel (None: unreachable): for the operator and the tests."""
    rows = (WakeupSent.select(WakeupSent.channel, pw.fn.COUNT(WakeupSent.id))
            .where(WakeupSent.period == period).group_by(WakeupSent.channel).tuples())
    return {channel: int(n) for channel, n in rows}


# ---- lottery losers ---------------------------------------------------------------------------


def lottery_run_key(session_id: int) -> str:
    return f"lottery:{session_id}"


def losers_due(now: dt.datetime, limit: int = 50) -> list[tuple[int, int]]:
    """(session id, lottery id) of lotteries drawn within LOSER_LOOKBACK whose losers' run is not
    done yet (two indexed queries)."""
    drawn = list(Lottery.select(Lottery.session, Lottery.id)
                 .where((Lottery.state == LotteryState.DRAWN.value) & (Lottery.drawn_at >= now - LOSER_LOOKBACK))
                 .order_by(Lottery.id).tuples())
    if not drawn:
        return []
    done = {key for (key,) in CampaignRun.select(CampaignRun.run_key).where(
        CampaignRun.run_key.in_([lottery_run_key(s) for s, _l in drawn]) & CampaignRun.done).tuples()}
    return [(int(s), int(lot)) for s, lot in drawn if lottery_run_key(s) not in done][:limit]


def losers_after(session_id: int, lottery_id: int, after_id: int, limit: int) -> list[tuple[int, int]]:
    """The next reservations of the session after `after_id` that did not win, as
    (reservation id, user id)."""
    won = LotteryWinner.select(LotteryWinner.reservation_id).where(
        (LotteryWinner.lottery == lottery_id) & (LotteryWinner.reservation_id == Reservation.id))
    rows = (Reservation.select(Reservation.id, Reservation.user)
            .where((Reservation.session == session_id) & (Reservation.id > after_id) & ~pw.fn.EXISTS(won))
            .order_by(Reservation.id).limit(limit).tuples())
    return [(int(r), int(u)) for r, u in rows]


def open_run(run_key: str, campaign: str) -> CampaignRun:
    """The run's row, created on first use with the campaign coupon active then (or none: the
    run is done at once). Safe when two runs race (the unique key)."""
    found = CampaignRun.get_or_none(CampaignRun.run_key == run_key)
    if found is not None:
        return found
    coupon = coupons.campaign_coupon(campaign)
    now = utcnow()
    CampaignRun.insert(run_key=run_key, coupon_id=coupon.id if coupon else None, done=coupon is None,
                       created_at=now, finished_at=None if coupon else now).on_conflict_ignore().execute()
    return CampaignRun.get(CampaignRun.run_key == run_key)


def issue_to_losers(session_id: int, lottery_id: int, *, now: dt.datetime | None = None,
                    chunk: int = CHUNK, on_chunk: Callable[[int], None] | None = None) -> int:
    """Give every reservation of a drawn lottery that did not win the lottery_loser coupon, one
    transaction per chunk (issue + cursor, compare-and-set: a second runner's chunk rolls back).
    `on_chunk(cursor)` runs after each committed chunk (the tests' crash point). Returns the
    grants issued by this call."""
    run = open_run(lottery_run_key(session_id), LOTTERY_LOSER)
    issued = 0
    key = lottery_run_key(session_id)
    while not run.done and run.coupon_id is not None:
        try:
            with db.atomic():
                rows = losers_after(session_id, lottery_id, run.cursor, chunk)
                if not rows:
                    CampaignRun.update(done=True, finished_at=utcnow()).where(
                        (CampaignRun.id == run.id) & ~CampaignRun.done).execute()
                    run.done = True
                    break
                users = list(dict.fromkeys(u for _r, u in rows))
                new = coupons.issue(run.coupon_id, users, source=LOTTERY_LOSER, source_key=key, now=now)
                moved = (CampaignRun.update(cursor=rows[-1][0], issued=CampaignRun.issued + new)
                         .where((CampaignRun.id == run.id) & (CampaignRun.cursor == run.cursor)
                                & ~CampaignRun.done).execute())
                if not moved:
                    raise _Lost
        except _Lost:
            return issued  # another runner moved the cursor first: this chunk rolled back, it goes on
        run.cursor = rows[-1][0]
        issued += new
        if on_chunk is not None:
            on_chunk(run.cursor)
    return issued


class _Lost(Exception):
    """Another runner moved a campaign run's cursor first."""
