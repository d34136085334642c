"""Settlement jobs through RQ: settle_all, settle_live, release_due and reverse_refunded with the
runtime's settings, one level evaluation queued per burst, the refund paths queueing the
reversal, the periodic registration, and a real worker process killed in the middle of a
settlement whose re-run leaves exactly the ledger an uninterrupted run would have."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter, defaultdict

import pytest
from rq.job import Job

from models import ledger, settlement
from models.catalog import Sku
from models.commission import OrderFacts, seller_rate, split
from models.db import db, utcnow
from models.levels import Rates
from models.live import end_live, start_live
from models.network import Creator
from models.orders import Order
from tasks import queues
from tasks.periodic import JOB_TIMEOUTS, PERIODIC, resolve
from tasks.settlement import LEVELS_JOB, LEVELS_JOB_IDS, queue_level_evaluation
from tests.books import assert_books_clean, bucket, state_of
from tests.factories import buyer, chain, creator, make_sku, paid_order
from tests.killed_worker import kill_worker_mid_job


def queued_ids(rt) -> list[str]:  # noqa: ANN001
    return rt.queue.get_job_ids()


# -- the jobs ---------------------------------------------------------------------------------

def test_settle_all_settles_reverses_and_queues_one_level_evaluation(rt, shop, run_jobs):
    # given paid orders, one of them already settled and then refunded
    up1, seller = chain(2, 1)
    sku = make_sku(shop)
    refunded = paid_order(seller, sku)
    with db.connection_context():
        settlement.settle(rt.payout)
        Order.update(status="refunded").where(Order.id == refunded).execute()
    fresh = [paid_order(seller, sku) for _ in range(3)]
    # when the periodic job is enqueued twice by its dotted name (a burst) and the first runs
    rt.queue.enqueue("tasks.settlement.settle_all")
    rt.queue.enqueue("tasks.settlement.settle_all")
    worker_once(rt)
    # then the new orders are settled, the refunded one reversed, and one level evaluation
    # waits behind the second settle_all
    assert [state_of(o) for o in fresh] == ["pending"] * 3 and state_of(refunded) == "reversed"
    assert queued_ids(rt).count(LEVELS_JOB_IDS[0]) == 1
    # when everything runs: the second settle_all settles nothing and queues nothing more
    run_jobs()
    assert Job.fetch(LEVELS_JOB_IDS[0], connection=rt.redis).func_name == LEVELS_JOB
    assert bucket(seller, "pending") == 3000 and bucket(up1, "pending") == 1650
    assert_books_clean()


def worker_once(rt) -> None:  # noqa: ANN001
    """Run exactly one queued job in-process."""
    from rq import SimpleWorker

    SimpleWorker([rt.queue], connection=rt.redis).work(burst=True, max_jobs=1)


def test_a_burst_of_settlements_queues_the_level_evaluation_once(rt, run_jobs):
    # when three settlements finish while the evaluation has not started
    first = [queue_level_evaluation() for _ in range(3)]
    # then it is queued once
    assert first == [LEVELS_JOB_IDS[0], None, None]
    assert queued_ids(rt) == [LEVELS_JOB_IDS[0]]
    # when it has run, the next settlement queues it again (a finished record does not block)
    assert run_jobs() == 1
    assert queue_level_evaluation() == LEVELS_JOB_IDS[0]
    assert queued_ids(rt) == [LEVELS_JOB_IDS[0]]


def test_while_an_evaluation_runs_one_follow_up_is_queued(rt):
    # given an evaluation that a worker has started (its record says so)
    assert queue_level_evaluation() == LEVELS_JOB_IDS[0]
    job = Job.fetch(LEVELS_JOB_IDS[0], connection=rt.redis)
    rt.queue.remove(job.id)
    job.set_status("started")
    # when settlements finish meanwhile
    got = [queue_level_evaluation() for _ in range(3)]
    # then one follow-up waits (it will read metrics that include them)
    assert got == [LEVELS_JOB_IDS[1], None, None]
    assert queued_ids(rt) == [LEVELS_JOB_IDS[1]]


def test_settle_live_job_settles_only_that_session(rt, shop, run_jobs):
    (seller,) = chain(1)
    sku = make_sku(shop)
    with db.connection_context():
        live = start_live(seller)
    in_live = paid_order(seller, sku, live_id=live.id)
    other = paid_order(seller, sku)
    # when the live ends and its settlement is queued (as the API does)
    with db.connection_context():
        end_live(seller, live.id)
    queues.settle_live(live.id)
    run_jobs()
    # then only its order is settled
    assert (state_of(in_live), state_of(other)) == ("pending", None)
    assert_books_clean()


def test_release_due_job_releases_orders_paid_before_the_window(rt, shop, run_jobs):
    (seller,) = chain(1)
    sku = make_sku(shop)
    window = rt.payout.refund_window_days
    old = paid_order(seller, sku, paid_at=utcnow() - dt.timedelta(days=window, minutes=1))
    recent = paid_order(seller, sku, paid_at=utcnow() - dt.timedelta(days=window - 1))
    held = paid_order(seller, sku, paid_at=utcnow() - dt.timedelta(days=window + 3), risk_hold=True)
    rt.queue.enqueue("tasks.settlement.settle_all")
    rt.queue.enqueue("tasks.settlement.release_due")
    run_jobs()
    assert (state_of(old), state_of(recent), state_of(held)) == ("available", "pending", "pending")
    assert bucket(seller, "available") == 1000 and bucket(seller, "pending") == 2000
    assert_books_clean()


def test_the_refund_jobs_queue_the_reversal(rt, client, login, shop, fake_pay, run_jobs):
    # given an order bought through a seller's link, paid, delivered and settled
    (seller,) = chain(1, prefix="refund-job")
    card = shop.card_sku(keys=3, price=10_000)
    auth = login("refund-buyer")
    resp = client.post("/api/v1/orders", json={"sku": card.code, "ref": seller.code}, headers=auth)
    assert resp.status_code == 201, resp.json
    assert client.post(f"/api/v1/orders/{resp.json['id']}/pay", headers=auth).status_code == 200
    assert fake_pay.notify_acknowledged(fake_pay.pay(resp.json["no"]))
    rt.queue.enqueue("tasks.settlement.settle_all")
    run_jobs()
    assert bucket(seller, "pending") == 1000
    # when the automatic refund job refunds it (a failed top-up takes this path)
    queues.refund(resp.json["id"], "top-up failed")
    run_jobs()
    # then the reversal it queued has taken the commission back
    assert state_of(resp.json["id"]) == "reversed"
    assert bucket(seller, "pending") == 0
    assert_books_clean()


def test_the_operator_refund_command_queues_the_reversal(rt, settings, client, login, shop, fake_pay,
                                                        run_jobs, monkeypatch):
    from click.testing import CliRunner

    from qianxing import wiring
    from qianxing.cli import main

    (seller,) = chain(1, prefix="refund-cli")
    card = shop.card_sku(keys=3, price=10_000)
    auth = login("refund-cli-buyer")
    resp = client.post("/api/v1/orders", json={"sku": card.code, "ref": seller.code}, headers=auth)
    assert client.post(f"/api/v1/orders/{resp.json['id']}/pay", headers=auth).status_code == 200
    assert fake_pay.notify_acknowledged(fake_pay.pay(resp.json["no"]))
    with db.connection_context():
        settlement.settle(rt.payout)
    for name, value in settings.model_dump().items():
        if value is not None:
            monkeypatch.setenv(name, str(value))
    try:
        wiring.reset()
        result = CliRunner().invoke(main, ["orders", "refund", str(resp.json["id"])])
    finally:
        wiring.reset()
        wiring.bootstrap(settings)
    assert result.exit_code == 0, result.output
    run_jobs()
    assert state_of(resp.json["id"]) == "reversed"
    assert_books_clean()


def test_settlement_jobs_are_periodic_with_long_timeouts():
    periodic = dict(PERIODIC)
    assert periodic["tasks.settlement.settle_all"] == 300
    assert periodic["tasks.settlement.release_due"] == 3600
    for func in ("tasks.settlement.settle_all", "tasks.settlement.release_due"):
        assert callable(resolve(func)) and JOB_TIMEOUTS[func] >= 600


# -- a worker killed in the middle of a settlement --------------------------------------------

KILL_ORDERS, KILL_BATCH = 3000, 4


def random_tree_and_orders(shop, n_orders: int, seed: int = 11) -> list[int]:  # noqa: ANN001
    """Thirty creators in a random tree with random ranks, three SKUs, and `n_orders` paid
    orders (some with markup, some below cost) written in bulk."""
    rng = random.Random(seed)
    made: list[Creator] = []
    for i in range(30):
        parent = rng.choice(made) if made and rng.random() < 0.9 else None
        made.append(creator(f"kill-{i}", parent=parent, rank=rng.randrange(0, 7)))
    skus = [make_sku(shop, price=rng.choice((990, 4990, 19900)), commission_bp=rng.randrange(1000, 3001))
            for _ in range(3)]
    now = utcnow()
    with db.connection_context():
        shopper = buyer("kill-shopper")
        rows = []
        for n in range(n_orders):
            sku, seller = rng.choice(skus), rng.choice(made)
            markup = rng.choice((0, 0, rng.randrange(1, 500)))
            amount = sku.retail_price_fen + markup
            cost = rng.choice((sku.supply_price_fen, amount + 10))  # some sold below cost
            rows.append(dict(no=f"QXK{n:010d}", user=shopper.id, sku=sku.id, quantity=1,
                             unit_price_fen=amount, amount_fen=amount, status="paid", ref_code=seller.code,
                             seller_id=seller.id, markup_fen=markup, cost_fen=cost, client_ip="127.0.0.1",
                             risk_hold=False, expires_at=now, paid_at=now, created_at=now))
        with db.atomic():
            for start in range(0, len(rows), 200):
                Order.insert_many(rows[start:start + 200]).execute()
        return [o.id for o in Order.select(Order.id).order_by(Order.id)]


def expected_lines(rt, order_ids: list[int]) -> Counter:  # noqa: ANN001
    """(order, creator, kind, amount) of every line, straight from commission.split over the
    stored tree and the level table, without settlement's SQL."""
    with db.connection_context():
        rates = Rates.load()
        creators = {c.id: c for c in Creator.select()}
        skus = {s.id: s for s in Sku.select()}
        out: Counter = Counter()
        for o in Order.select().where(Order.id.in_(order_ids)):
            seller = creators[o.seller_id]
            up1 = creators.get(seller.parent_id)
            up2 = creators.get(seller.grandparent_id)
            got = split(OrderFacts(
                amount_fen=o.amount_fen, markup_fen=o.markup_fen, cost_fen=o.cost_fen,
                seller_rate_bp=seller_rate(skus[o.sku_id].commission_bp, rates.own.get(seller.rank, 0)),
                upline1_rate_bp=rates.team1.get(up1.rank, 0) if up1 else 0,
                upline2_rate_bp=rates.team2.get(up2.rank, 0) if up2 else 0),
                cap_bp=rt.payout.cap_bp, upline_depth=rt.payout.upline_depth)
            for who, kind, amount in ((seller, "markup", got.markup), (seller, "sale", got.sale),
                                      (up1, "team1", got.team1), (up2, "team2", got.team2)):
                if amount > 0:
                    out[(o.id, who.id, kind, amount)] += 1
        return out


def settled_count() -> int:
    with db.connection_context():
        return settlement.Settlement.select().count()


@pytest.mark.timeout(180)
def test_a_worker_killed_mid_settlement_and_run_again_leaves_the_exact_ledger(rt, settings, shop, run_jobs):
    # given 3,000 paid orders in a random tree, settled in batches of 4 by a real worker
    order_ids = random_tree_and_orders(shop, KILL_ORDERS)
    expected = expected_lines(rt, order_ids)
    # when it is SIGKILLed after some batches have committed
    kill_worker_mid_job(rt, settings, "tasks.settlement.settle_all", {"SETTLE_BATCH": str(KILL_BATCH)},
                        done=settled_count, enough=25 * KILL_BATCH, deadline_s=60)
    at_kill = settled_count()
    assert 0 < at_kill < KILL_ORDERS, f"the kill came too late ({at_kill} settled)"
    # and the job is run again to completion
    rt.queue.enqueue("tasks.settlement.settle_all")
    run_jobs()
    # then every order is settled exactly once, with exactly the lines the rule gives
    with db.connection_context():
        rows = list(settlement.Settlement.select(settlement.Settlement.order_id).tuples())
        lines = Counter(settlement.Commission.select(
            settlement.Commission.order_id, settlement.Commission.creator_id, settlement.Commission.kind,
            settlement.Commission.amount_fen).tuples())
    assert sorted(r[0] for r in rows) == order_ids
    assert lines == expected
    # and each creator's pending balance is what an uninterrupted run gives
    owed: dict[int, int] = defaultdict(int)
    for (_, creator_id, _, amount), n in expected.items():
        owed[creator_id] += amount * n
    with db.connection_context():
        for creator in Creator.select():
            account = ledger.creator_account(creator.id, ledger.PENDING)
            assert -ledger.balance(account) == owed.get(creator.id, 0), account
        assert ledger.balance(ledger.COMMISSION_EXPENSE) == sum(owed.values())
    assert_books_clean()
