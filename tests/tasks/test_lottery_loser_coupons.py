"""The lottery losers' campaign (tasks/lottery.py then tasks/wakeup.issue_loser_coupons): after a
draw, every reservation that did not win gets the lottery_loser coupon once, in chunks that a
killed run resumes; a lottery closed with no coupon configured, or below its threshold, hands
out nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from models import wakeup
from models.coupons import CouponGrant
from models.db import db, utcnow
from models.lottery import Lottery, LotteryWinner
from models.reservations import Reservation
from models.wakeup import CampaignRun
from tasks import lottery as lottery_jobs
from tests.factories import LOTTERY_START, campaign, lottery_session, reserve_many

AFTER_START = LOTTERY_START + dt.timedelta(seconds=10)


def grants(coupon_id: int | None = None) -> list[tuple[int, str, str]]:
    with db.connection_context():
        query = CouponGrant.select()
        if coupon_id is not None:
            query = query.where(CouponGrant.coupon == coupon_id)
        return sorted((g.user_id, g.source, g.source_key) for g in query)


def losers(session_id: int) -> list[int]:
    with db.connection_context():
        won = {w.reservation_id for w in LotteryWinner.select()}
        return sorted(r.user_id for r in Reservation.select().where(Reservation.session == session_id)
                      if r.id not in won)


def test_every_reservation_that_did_not_win_gets_the_coupon_once(rt, shop):
    made = campaign("lottery_loser", amount_off_fen=200)
    # given a due lottery of 2 prizes among 7 reservations
    session, _ = lottery_session(shop, threshold=3, prizes=2)
    reserve_many(session.id, 7)
    # when the draw job runs (twice)
    later = utcnow() + AFTER_START
    lottery_jobs.run_draws(now=later)
    lottery_jobs.run_draws(now=later)
    # then the 5 who did not win each got the coupon once, under the lottery's key, winners nothing
    key = f"lottery:{session.id}"
    assert grants(made.id) == [(u, "lottery_loser", key) for u in losers(session.id)]
    assert len(grants(made.id)) == 5
    with db.connection_context():
        run = CampaignRun.get(CampaignRun.run_key == key)
    assert (run.done, run.issued, run.coupon_id) == (True, 5, made.id)


def test_a_run_killed_between_chunks_resumes_and_issues_each_once(rt, shop):
    made = campaign("lottery_loser")
    session, _ = lottery_session(shop, threshold=3, prizes=1)
    reserve_many(session.id, 9)
    later = utcnow() + AFTER_START
    with db.connection_context():
        from models import lottery

        lottery.run_draw(session.id, now=later)
        lot = Lottery.get(Lottery.session == session.id)

    def crash(cursor: int) -> None:
        raise RuntimeError("worker killed")

    # when the losers' run dies after its first chunk of 3
    with db.connection_context(), pytest.raises(RuntimeError):
        wakeup.issue_to_losers(session.id, lot.id, now=later, chunk=3, on_chunk=crash)
    assert len(grants(made.id)) == 3
    # and the job picks it up on its next run
    lottery_jobs.run_draws(now=later)
    # then all 8 losers have exactly one grant
    assert [u for u, _s, _k in grants(made.id)] == losers(session.id) and len(grants(made.id)) == 8


def test_no_coupon_at_the_draw_or_no_draw_hands_out_nothing(rt, shop):
    # given a lottery drawn while no lottery_loser coupon is active, and one below its threshold
    drawn, _ = lottery_session(shop, threshold=2, prizes=1)
    reserve_many(drawn.id, 4, prefix="nocoupon")
    short, _ = lottery_session(shop, threshold=10, prizes=1)
    reserve_many(short.id, 2, prefix="short")
    later = utcnow() + AFTER_START
    lottery_jobs.run_draws(now=later)
    # when a coupon is configured afterwards and the job runs again
    made = campaign("lottery_loser")
    lottery_jobs.run_draws(now=later)
    # then the drawn lottery's run was closed without a coupon, and nobody got one
    assert grants() == []
    with db.connection_context():
        run = CampaignRun.get(CampaignRun.run_key == f"lottery:{drawn.id}")
        assert (run.done, run.coupon_id) == (True, None)
        assert CampaignRun.get_or_none(CampaignRun.run_key == f"lottery:{short.id}") is None
    assert made.id and grants(made.id) == []
