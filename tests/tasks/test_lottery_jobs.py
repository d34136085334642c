"""The lottery job (tasks/lottery.py) through the real job functions and the in-process worker:
the draw at T-0, prizes delivered by the normal delivery drain, winners told through the one
sender (the fake Telegram server receives it), and every run after the first changing nothing."""

from __future__ import annotations

import datetime as dt

from models import orders
from models.audit import AuditEntry
from models.chat import OutboundMessage
from models.db import db, utcnow
from models.lottery import Lottery, LotteryWinner
from models.orders import Order, OrderRequest
from tasks import lottery as lottery_jobs
from tasks.periodic import PERIODIC, resolve
from tests.concurrently import at_once
from tests.factories import LOTTERY_START, POLICY, buyer, chat_user, lottery_session, reserve_many, vouchers

AFTER_START = LOTTERY_START + dt.timedelta(seconds=10)


def _reserve_on_telegram(session_id: int, external_id: str) -> int:
    from models import reservations

    user = chat_user("telegram", external_id)
    with db.connection_context():
        return reservations.reserve(user, session_id, "telegram")[0].id


def test_the_draw_runs_every_ten_seconds():
    assert ("tasks.lottery.run_draws", 10) in PERIODIC
    assert resolve("tasks.lottery.run_draws") is lottery_jobs.run_draws


def test_before_t0_nothing_is_drawn(rt, shop):
    # given a lottery with enough reservations, an hour before its start
    session, _ = lottery_session(shop, threshold=2, prizes=1)
    reserve_many(session.id, 3)
    # when the job runs now / then the lottery stays pending
    assert lottery_jobs.run_draws()["closed"] == 0
    with db.connection_context():
        assert Lottery.get(Lottery.session == session.id).state == "pending"


def test_winners_get_their_prize_delivered_and_a_message_once(rt, shop, run_jobs, telegram):
    # given a lottery of 3 prizes among 3 reservations: two fans on Telegram, one in the mini-program
    session, prize = lottery_session(shop, threshold=3, prizes=3)
    telegram_ids = [_reserve_on_telegram(session.id, "71001"), _reserve_on_telegram(session.id, "71002")]
    reserve_many(session.id, 1)
    # when the job runs after T-0 and the worker runs what it queued
    counts = lottery_jobs.run_draws(now=utcnow() + AFTER_START)
    run_jobs()
    # then every winner has a delivered zero-price order of the prize, with a voucher
    assert counts == {"closed": 1, "granted": 3, "waiting": 0, "notified": 3, "failed": 0}
    with db.connection_context():
        prizes = list(Order.select().where(Order.sku == prize.id))
        assert len(prizes) == 3 and {o.amount_fen for o in prizes} == {0}
        assert {o.status for o in prizes} == {"delivered"}
    assert all(len(vouchers(o.id)) == 1 for o in prizes)
    # and the Telegram winners got one message each through the sender
    for chat in ("71001", "71002"):
        texts = [s.text for s in telegram.sent_to(chat) if "中奖" in s.text]
        assert len(texts) == 1 and prize.name in texts[0]
    # when the job runs again (and again after a worker pass)
    again = lottery_jobs.run_draws(now=utcnow() + AFTER_START)
    run_jobs()
    # then nothing more: no order, no message, one audit row
    assert again == {"closed": 0, "granted": 0, "waiting": 0, "notified": 0, "failed": 0}
    with db.connection_context():
        assert Order.select().count() == 3
        assert OutboundMessage.select().where(OutboundMessage.key.contains("lottery:")).count() == 2
        assert AuditEntry.select().where(AuditEntry.action == "live.lottery_draw").count() == 1
        assert set(telegram_ids) <= {w.reservation_id for w in LotteryWinner.select()}
    assert sum(1 for s in telegram.sent if "中奖" in s.text) == 2


def test_overlapping_runs_draw_and_grant_once(rt, shop):
    # given a due lottery of 2 prizes among 5 reservations
    session, prize = lottery_session(shop, threshold=2, prizes=2)
    reserve_many(session.id, 5)
    now = utcnow() + AFTER_START
    # when four runs of the job start at the same moment
    results = at_once(lambda: lottery_jobs.run_draws(now=now), 4)
    # then one draw, two winners, two prize orders
    assert sum(r["closed"] for r in results) == 1
    with db.connection_context():
        assert LotteryWinner.select().count() == 2
        assert Order.select().where(Order.sku == prize.id).count() == 2
        assert AuditEntry.select().where(AuditEntry.action == "live.lottery_draw").count() == 1


def test_a_prize_out_of_stock_is_delivered_once_stock_is_back(rt, shop, run_jobs):
    # given the prize's only key held by another buyer's unpaid order when the lottery is drawn
    session, prize = lottery_session(shop, threshold=1, prizes=1, keys=1)
    reserve_many(session.id, 1)
    with db.connection_context():
        held, _ = orders.place_order(buyer("holder"), OrderRequest(prize.code, 1), POLICY, client_ip="10.0.0.9")
    first = lottery_jobs.run_draws(now=utcnow() + AFTER_START)
    assert (first["closed"], first["granted"], first["waiting"]) == (1, 0, 1)
    # when that order expires and gives the key back, and the job runs again
    with db.connection_context():
        orders.expire_due(utcnow() + dt.timedelta(days=1))
    second = lottery_jobs.run_draws(now=utcnow() + AFTER_START)
    run_jobs()
    # then the winner's prize is placed and delivered, and the reason is cleared
    assert (second["granted"], second["waiting"]) == (1, 0)
    with db.connection_context():
        winner = LotteryWinner.get()
        assert winner.last_error is None and Order.get_by_id(winner.order_id).status == "delivered"
        assert Order.get_by_id(held.id).status == "expired"


def test_a_lottery_that_fails_does_not_hold_back_the_others(rt, shop):
    # given two due lotteries, the first with a sealed seed no configured key opens
    broken, _ = lottery_session(shop, threshold=1, prizes=1)
    sound, _ = lottery_session(shop, threshold=1, prizes=1)
    reserve_many(broken.id, 1)
    reserve_many(sound.id, 1)
    with db.connection_context():
        Lottery.update(sealed_seed="v1:gone:AAAAAAAAAAAAAAAA:AAAA").where(Lottery.session == broken.id).execute()
    # when the job runs
    counts = lottery_jobs.run_draws(now=utcnow() + AFTER_START)
    # then the sound one is drawn and its prize placed; the broken one waits, counted as failed
    assert (counts["closed"], counts["granted"], counts["failed"]) == (1, 1, 1)
    with db.connection_context():
        assert Lottery.get(Lottery.session == sound.id).state == "drawn"
        assert Lottery.get(Lottery.session == broken.id).state == "pending"
