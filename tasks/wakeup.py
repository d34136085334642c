"""Campaign jobs (issue 14): the daily dormant-buyer wake-up (`wake_dormant`) and the lottery
losers' coupons (`issue_loser_coupons`, after the draws). The rules and queries are
models/wakeup.py; these jobs only orchestrate.

One run of `wake_dormant`:
1. no active wakeup campaign coupon: log and stop;
2. stream the dormant buyers not woken in this period in keyset chunks of CHUNK (never all in
   memory); per chunk ONE transaction claims their (user, period) rows (only new rows go on),
   issues the coupon (source_key `wakeup:<period>`), picks each buyer's channel, takes the
   subscribe consents the mini-program pushes use, writes the pushes through the one sender
   (`Sender.write`, key `wakeup:<period>:u<user>`) and records channel and grant;
3. schedules one drain per platform written to (after the commit).
A push the sender refuses (a bad chat id) costs only that buyer's push: the chunk is written
message by message, the refused one is recorded without a channel and its consent given back.
Running the job twice, or two at once, wakes nobody twice: the unique (user, period) key.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from redis.exceptions import RedisError

from models import coupons, wakeup
from models.coupons import Coupon
from models.db import connection, db, utcnow
from models.failures import is_unavailable
from models.reminders import WXA
from models.wakeup import CHUNK
from tasks.context import runtime

log = logging.getLogger(__name__)

COUPON_PAGE = "pages/coupons/index"
THING_MAX = 20


def wake_dormant(*, now: dt.datetime | None = None, chunk: int = CHUNK) -> dict[str, Any]:
    """Daily (tasks/periodic.py): wake the dormant buyers (see the module docstring). Returns counts."""
    rt = runtime()
    settings = rt.settings
    totals: dict[str, Any] = {"woken": 0, "pushed": 0, "unreachable": 0, "refused": 0}
    platforms: set[str] = set()
    with connection():
        coupon = coupons.campaign_coupon(wakeup.WAKEUP)
        if coupon is None:
            log.info("wake-up: no active wakeup campaign coupon; nobody woken")
            return {"skipped": "no wakeup campaign coupon"}
        when = now or utcnow()
        period = wakeup.period_of(when, settings.WAKEUP_PERIOD_DAYS)
        totals["period"] = period
        after = 0
        try:
            while True:
                batch = wakeup.dormant_after(after, now=when, dormant_days=settings.WAKEUP_DORMANT_DAYS,
                                             period=period, limit=chunk)
                if not batch:
                    break
                with db.atomic():
                    _chunk(rt, coupon, batch, period, when, totals, platforms)
                after = batch[-1]
                if platforms:
                    _schedule(rt, platforms)  # sending starts while the rest is written
        finally:
            _schedule(rt, platforms)
    if totals["woken"]:
        log.info("wake-up: %s", totals)
    return totals


def _chunk(rt: Any, coupon: Coupon, batch: list[int], period: int, now: dt.datetime, totals: dict[str, Any],
           platforms: set[str]) -> None:
    """One chunk, inside its transaction."""
    claimed = wakeup.claim(batch, period, now)
    if not claimed:
        return
    key = wakeup.source_key(period)
    coupons.issue(coupon.id, claimed, source=wakeup.WAKEUP, source_key=key, now=now)
    pushes = wakeup.channels(wakeup.reach_of(claimed).values(), now)
    wanting = [u for u, p in pushes.items() if p is not None and p.uses_consent]
    took = wakeup.take_consents(wanting)
    bodies: dict[str, dict[str, Any]] = {}
    messages = []
    for user_id in claimed:
        push = pushes.get(user_id)
        if push is None or (push.uses_consent and user_id not in took):
            continue
        body = bodies.get(push.platform)
        if body is None:
            body = bodies[push.platform] = payload(coupon, push.platform, now, rt.settings)
        messages.append((wakeup.message_key(period, user_id), push.platform, push.chat_id, body))
    refused = _write(rt, messages)
    if refused:
        wakeup.give_back_consents([u for u in refused if pushes[u] is not None and pushes[u].uses_consent])
    channel_of: dict[int, str | None] = {}
    for user_id in claimed:
        push = pushes.get(user_id)
        ok = push is not None and user_id not in refused and (not push.uses_consent or user_id in took)
        channel_of[user_id] = push.platform if ok and push is not None else None
    wakeup.record(period, channel_of, coupon_id=coupon.id, source_key=key)
    reached = [c for c in channel_of.values() if c is not None]
    platforms.update(reached)
    totals["woken"] += len(claimed)
    totals["pushed"] += len(reached)
    totals["unreachable"] += len(claimed) - len(reached)
    totals["refused"] += len(refused)


def _write(rt: Any, messages: list[tuple[str, str, str, dict[str, Any]]]) -> set[int]:
    """Write the chunk's pushes in bulk; if the sender refuses one, write them one by one (a
    savepoint each) and return the users whose push was refused."""
    if not messages:
        return set()
    try:
        with db.atomic():
            rt.sender.write(messages)
            return set()
    except Exception as exc:
        if is_unavailable(exc):
            raise
    refused = set()
    for message in messages:
        try:
            with db.atomic():
                rt.sender.write([message])
        except Exception as exc:
            if is_unavailable(exc):
                raise
            user_id = int(message[0].rsplit(":u", 1)[1])
            refused.add(user_id)
            log.warning("wake-up push for user %s refused: %s", user_id, type(exc).__name__)
    return refused


def _fit(text: str) -> str:
    return text if len(text) <= THING_MAX else text[:THING_MAX - 1] + "…"


def payload(coupon: Coupon, platform: str, now: dt.datetime, settings: Any) -> dict[str, Any]:
    """The wake-up message (bots.sender.payload_of's form; the subscribe message adds its template)."""
    from models.live_rules import local_time

    until = local_time(coupons.grant_expiry(coupon, now), settings.LIVE_TIMEZONE, "%Y-%m-%d %H:%M")
    text = (f"好久不见！送你一张优惠券「{coupon.name}」，{until}（北京时间）前有效，"
            f"打开小程序「我的优惠券」即可使用。")
    if platform == WXA:
        return {"text": text, "template_id": settings.WAKEUP_SUBSCRIBE_TEMPLATE_ID, "page": COUPON_PAGE,
                "data": {"thing1": {"value": _fit(coupon.name)}, "time2": {"value": until},
                         "thing3": {"value": "老朋友回归礼"}}}
    return {"text": text}


def _schedule(rt: Any, platforms: set[str]) -> None:
    for platform in sorted(platforms):
        try:
            rt.sender.schedule(platform, None)
        except RedisError:  # the periodic drains find the rows
            log.error("could not schedule the %s drain for wake-up pushes", platform)


def issue_loser_coupons(*, now: dt.datetime | None = None) -> dict[str, int]:
    """After the draws (tasks/lottery.py calls it at the end of each run): every lottery drawn
    recently whose losers' run is not done gets it (models/wakeup.issue_to_losers). One failing
    lottery never holds back the others; an unavailable database fails the run."""
    counts = {"lotteries": 0, "issued": 0, "failed": 0}
    with connection():
        when = now or utcnow()
        for session_id, lottery_id in wakeup.losers_due(when):
            try:
                counts["issued"] += wakeup.issue_to_losers(session_id, lottery_id, now=when)
                counts["lotteries"] += 1
            except Exception as exc:
                if is_unavailable(exc):
                    raise
                counts["failed"] += 1
                log.error("lottery losers' coupons of live session %s failed: %s", session_id, type(exc).__name__)
    if counts["issued"]:
        log.info("lottery losers' coupons: %s", counts)
    return counts
