"""The reservation lottery's job (issue 13): `run_draws`, every 10 s (tasks/periodic.py PERIODIC).

Each run closes the lotteries that are due (models/lottery.py `due`: cancelled, started, or
LIVE_LOTTERY_DRAW_DELAY_S past their planned start) with `run_draw`, then walks the winners
still waiting for something: their prize order (placed and confirmed by `grant_prize`, then
queued for the usual delivery drain) and their notice (through the one sender, keyed per winner
and platform); last, the reservations of drawn lotteries that did not win get the lottery_loser
campaign coupon (issue 14, `tasks.wakeup.issue_loser_coupons`: in chunks, resumable).
Everything is idempotent through database keys (the lottery's state flip and audit key, the
winner rows, the order's idempotency key, the outbox keys, the coupon grants' source keys), so
RQ running a job twice, or two runs overlapping, changes nothing; a run killed half-way leaves
the rest to the next one (a paid prize whose delivery was never queued is found by the delivery sweep).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from bots.notify import WECHAT_WINDOW, WINDOW_MARGIN
from bots.sender import Sender
from bots.types import Reply
from models import lottery
from models.chat import ChatIdentity, Platform
from models.db import connection, utcnow
from models.failures import is_unavailable
from models.live import LiveSession
from models.lottery import Lottery, LotteryWinner
from models.orders import Status
from tasks import queues
from tasks.context import runtime
from tasks.wakeup import issue_loser_coupons

if TYPE_CHECKING:
    from qianxing.wiring import Runtime

log = logging.getLogger(__name__)

CHUNK = 200


def run_draws(now: dt.datetime | None = None) -> dict[str, int]:
    """Periodic: close due lotteries, grant and announce prizes. Returns counts for the log."""
    rt = runtime()
    now = now or utcnow()
    counts = {"closed": 0, "granted": 0, "waiting": 0, "notified": 0, "failed": 0}
    with connection():
        delay = dt.timedelta(seconds=rt.settings.LIVE_LOTTERY_DRAW_DELAY_S)
        for session_id in lottery.due(now, delay):
            try:
                state, closed = lottery.run_draw(session_id, now=now)
            except Exception as exc:
                _isolate(exc, f"lottery of live session {session_id}", counts)
                continue
            if closed:
                counts["closed"] += 1
                log.info("lottery of live session %s closed: %s", session_id, state)
        after = 0
        while batch := lottery.open_winners(after, CHUNK):
            for winner in batch:
                try:
                    _serve(rt, winner, counts)
                except Exception as exc:
                    _isolate(exc, f"lottery winner {winner.id}", counts)
            after = batch[-1].id
    issue_loser_coupons(now=now)  # the lottery_loser campaign coupon to the drawn lotteries' losers (logs)
    return counts


def _serve(rt: Runtime, winner: LotteryWinner, counts: dict[str, int]) -> None:
    """The winner's prize order (then queued for delivery) and notice, whichever is missing."""
    if winner.order_id is None:
        order = lottery.grant_prize(winner, rt.policy)
        if order is None:
            counts["waiting"] += 1
        else:
            counts["granted"] += 1
            if order.status == Status.PAID:
                queues.deliver(order.id)
    if not winner.notified:
        announce(rt.sender, winner)
        lottery.mark_notified(winner.id)
        counts["notified"] += 1


def _isolate(exc: Exception, what: str, counts: dict[str, int]) -> None:
    """One lottery or winner that fails never holds back the others (the next run tries it
    again); an unavailable database fails the whole run, which RQ retries."""
    if is_unavailable(exc):
        raise exc
    counts["failed"] += 1
    log.error("%s failed: %s", what, type(exc).__name__)


def _identity(user_id: int, platform: str) -> ChatIdentity | None:
    return (ChatIdentity.select().where((ChatIdentity.user == user_id) & (ChatIdentity.platform == platform))
            .order_by(ChatIdentity.last_inbound_at.desc(nulls="LAST"), ChatIdentity.id.desc()).first())


def announce(sender: Sender, winner: LotteryWinner) -> list[str]:
    """Tell a winner through their chat accounts (Telegram; WeChat inside its 48-hour window):
    one outbox row per platform under `lottery:{session}:{reservation}:{platform}`. A winner
    with no chat account learns it from the prize's delivery notice and the session page.
    Returns the platforms written to."""
    lot = Lottery.select(Lottery, LiveSession).join(LiveSession).where(Lottery.id == winner.lottery_id).get()
    prize = lot.prize_sku.name
    text = (f"恭喜！你预约的直播「{lot.session.title}」抽奖中奖了（第 {winner.rank} 名）。\n"
            f"奖品「{prize}」免费送出，发货后在「我的卡券」查看。")
    key = lottery.prize_key(lot.session_id, winner.reservation_id)
    sent: list[str] = []
    telegram = _identity(winner.user_id, Platform.TELEGRAM.value)
    if telegram is not None:
        sender.enqueue(f"{key}:{Platform.TELEGRAM.value}", Platform.TELEGRAM.value, telegram.chat_id, Reply(text=text))
        sent.append(Platform.TELEGRAM.value)
    wechat = _identity(winner.user_id, Platform.WECHAT.value)
    seen = wechat.last_inbound_at if wechat is not None else None
    if wechat is not None and seen is not None and utcnow() - seen < WECHAT_WINDOW - WINDOW_MARGIN:
        sender.enqueue(f"{key}:{Platform.WECHAT.value}", Platform.WECHAT.value, wechat.chat_id, Reply(text=text))
        sent.append(Platform.WECHAT.value)
    return sent
