"""Risk jobs through RQ: settle_all scores what it settled, release_due scores first and
releases only scored, unheld orders, nothing is scored with RISK_ENABLED off, the periodic
entries, and a real worker killed in the middle of scoring whose re-run leaves exactly the hits,
scores, holds, voids and cases of an uninterrupted run."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from models import risk_scoring, settlement
from models.db import db, utcnow
from models.orders import Order
from models.risk_tables import RiskCase, RiskCaseHit, RiskHit, RiskOrderScore, RiskSignal, RiskUser
from models.settlement import Commission
from tasks.periodic import JOB_TIMEOUTS, PERIODIC, resolve
from tests.books import assert_books_clean, bucket, state_of
from tests.factories import chain, creator, make_sku, outcome_of, risk_buy, risk_hash, shopper
from tests.killed_worker import kill_worker_mid_job


def past_window(rt, order_ids: list[int]) -> None:  # noqa: ANN001
    """Move orders' payment back past the refund window (release is due for them now)."""
    with db.connection_context():
        Order.update(paid_at=utcnow() - dt.timedelta(days=rt.payout.refund_window_days, hours=1)).where(
            Order.id.in_(order_ids)).execute()


def test_settle_all_scores_and_release_due_releases_only_scored_unheld_orders(rt, shop, run_jobs):
    # given a clean order and a new account's big order, paid long enough ago
    (seller,) = chain(1)
    sku = make_sku(shop, price=80_000)
    clean = risk_buy(seller, sku, shopper(), amount=80_000, cost=40_000)
    risky = risk_buy(seller, sku, shopper(age_hours=0.5), amount=80_000, cost=40_000)
    past_window(rt, [clean])
    # when the settlement job runs
    rt.queue.enqueue("tasks.settlement.settle_all")
    run_jobs()
    # then both are scored: the risky one held for review
    assert outcome_of(clean) == (0, "allow") and outcome_of(risky) == (80, "review")
    # given one more order, settled but not yet scored, due for release too
    late = risk_buy(seller, sku, shopper(), amount=80_000, cost=40_000)
    with db.connection_context():
        settlement.settle(rt.payout)
    past_window(rt, [risky, late])
    # when the release job runs, it scores first, then releases the scored unheld orders
    rt.queue.enqueue("tasks.settlement.release_due")
    run_jobs()
    assert outcome_of(late) == (0, "allow")
    assert (state_of(clean), state_of(late), state_of(risky)) == ("available", "available", "pending")
    assert bucket(seller, "available") == 16_000 and bucket(seller, "pending") == 8000
    assert_books_clean()


def test_nothing_is_scored_while_the_engine_is_off_and_release_does_not_wait(settings, shop, run_jobs):
    from qianxing import wiring

    off = settings.model_copy(update={"RISK_ENABLED": False})
    rt = wiring.bootstrap(off)
    (seller,) = chain(1)
    order = risk_buy(seller, make_sku(shop), shopper(age_hours=0.5), amount=80_000, cost=40_000)
    past_window(rt, [order])
    from tasks import risk
    from tasks import settlement as jobs

    jobs.settle_all()
    assert risk.score_orders() == {"orders": 0} and risk.score_creators() == {"hits": 0}
    assert outcome_of(order) is None
    assert jobs.release_due() == 1


def test_the_scoring_jobs_are_periodic():
    periodic = dict(PERIODIC)
    assert periodic["tasks.risk.score_orders"] == 60
    assert periodic["tasks.risk.score_creators"] == 3600
    assert JOB_TIMEOUTS["tasks.risk.score_orders"] >= 600
    for name in ("tasks.risk.score_orders", "tasks.risk.score_creators"):
        assert callable(resolve(name))


# -- a worker killed mid-scoring ----------------------------------------------------------------

KILL_ORDERS, KILL_BATCH = 1500, 10


def random_world(shop, n_orders: int, seed: int = 15) -> list[int]:  # noqa: ANN001
    """A random tree of 30 creators (some buying themselves), 60 shoppers (some new, some on a
    virtual number), few IPs, devices and payers, and `n_orders` orders over six hours: every
    order rule finds something. Written in bulk."""
    rng = random.Random(seed)
    made = []
    for i in range(30):
        parent = rng.choice(made) if made and rng.random() < 0.8 else None
        made.append(creator(f"rk-{i}", parent=parent, rank=rng.randrange(1, 5)))
    people = [shopper(f"rk-shopper-{i}", age_hours=rng.choice((1, 5, 24 * 60)),
                      phone=rng.choice((None, None, f"170{i:08d}", f"138{i % 7:08d}"))) for i in range(60)]
    with db.connection_context():
        people += [c.user for c in made]
    sku = make_sku(shop, price=60_000)
    start = utcnow() - dt.timedelta(hours=7)
    with db.connection_context():
        orders, signals = [], []
        for n in range(n_orders):
            who, seller = rng.choice(people), rng.choice(made + [None])
            # one order in 50 in a five-minute burst (ip 10.0.0.99 below)
            at = start + dt.timedelta(seconds=rng.randrange(0, 300 if n % 50 == 0 else 6 * 3600))
            amount = rng.choice((990, 19_900, 60_000))
            orders.append(dict(no=f"QXRK{n:09d}", user=who.id, sku=sku.id, quantity=1, unit_price_fen=amount,
                               amount_fen=amount, status="paid", ref_code=seller.code if seller else None,
                               seller_id=seller.id if seller else None, markup_fen=0, cost_fen=amount // 2,
                               client_ip="", risk_hold=False, expires_at=at, paid_at=at + dt.timedelta(minutes=1),
                               created_at=at))
        with db.atomic():
            for i in range(0, len(orders), 200):
                Order.insert_many(orders[i:i + 200]).execute()
        ids = [o.id for o in Order.select(Order.id, Order.user, Order.created_at).order_by(Order.id)]
        for n, o in enumerate(Order.select(Order.id, Order.user, Order.created_at).order_by(Order.id)):
            signals.append(dict(at=o.created_at, event="order", user_id=o.user_id, order_id=o.id,
                                ip_hash=risk_hash(f"10.0.0.{99 if n % 50 == 0 else rng.randrange(40)}"),
                                device_hash=rng.choice((None, risk_hash(f"dev-{rng.randrange(80)}"))),
                                payer_hash=risk_hash(f"payer-{rng.randrange(70)}")))
        with db.atomic():
            for i in range(0, len(signals), 200):
                RiskSignal.insert_many(signals[i:i + 200]).execute()
        settlement.settle(settlement_policy(), batch=5000)
    return ids


def settlement_policy():  # noqa: ANN201
    from tasks.context import runtime

    return runtime().payout


def outputs() -> tuple:
    """What scoring leaves: hits, scores, holds, void lines, open cases per creator."""
    with db.connection_context():
        return (sorted(RiskHit.select(RiskHit.subject_kind, RiskHit.subject_id, RiskHit.rule_id, RiskHit.weight,
                                      RiskHit.creator_id, RiskHit.evidence).tuples()),
                sorted(RiskOrderScore.select(RiskOrderScore.order_id, RiskOrderScore.score,
                                             RiskOrderScore.outcome).tuples()),
                sorted(o.id for o in Order.select(Order.id).where(Order.risk_hold)),
                sorted(Commission.select(Commission.order_id, Commission.creator_id, Commission.amount_fen)
                       .where(Commission.kind == "void").tuples()),
                sorted(RiskCase.select(RiskCase.creator_id, RiskCase.outcome, RiskCase.score,
                                       RiskCase.held_fen).tuples()))


def scored_count() -> int:
    with db.connection_context():
        return RiskOrderScore.select().count()


@pytest.mark.timeout(240)
def test_a_worker_killed_mid_scoring_and_run_again_leaves_what_one_uninterrupted_run_does(
        rt, settings, shop, run_jobs):
    # given 1,500 settled orders with every pattern in them, scored in batches of 10 by a worker
    ids = random_world(shop, KILL_ORDERS)
    # when it is SIGKILLed after some batches have committed, inside a batch
    kill_worker_mid_job(rt, settings, "tasks.risk.score_orders", {"RISK_SCORE_BATCH": str(KILL_BATCH)},
                        done=scored_count, enough=20 * KILL_BATCH, deadline_s=90)
    at_kill = scored_count()
    assert 0 < at_kill < KILL_ORDERS, f"the kill came too late ({at_kill} scored)"
    # and the job is run again to completion
    rt.queue.enqueue("tasks.risk.score_orders")
    run_jobs()
    after_kill = outputs()
    assert len(after_kill[1]) == KILL_ORDERS
    assert_books_clean()
    # then an uninterrupted run in one batch over the same orders (the outputs wiped; the
    # voids stay, being once per beneficiary) gives exactly the same
    with db.connection_context(), db.atomic():
        for table in (RiskCaseHit, RiskCase, RiskHit, RiskOrderScore):
            table.delete().execute()
        Order.update(risk_hold=False).where(Order.id.in_(ids)).execute()
        risk_scoring.score_pending(risk_scoring.Thresholds(settings.RISK_HOLD_SCORE, settings.RISK_REVIEW_SCORE),
                                   batch=100_000)
    again = outputs()
    assert again == after_kill
    # and the world had every kind of finding in it
    with db.connection_context():
        codes = {c for (c,) in RiskHit.select(RiskHit.code).distinct().tuples()}
        assert RiskUser.select().count() > 0
    assert {"self_purchase", "burst_orders", "shared_payer", "new_account_big", "virtual_segment"} <= codes
    assert after_kill[3], "no self-purchase voids"
