"""The dashboard rollups job through RQ (in-process worker): registered as a periodic job,
the figures after a run, a burst of runs that leaves the same numbers, the lease that keeps a
second run from redoing a running one's work, and a full recompute on request."""

from __future__ import annotations

from models import rollups
from models.db import db, utcnow
from models.rollup_store import DailyMetric
from tasks.periodic import PERIODIC, resolve
from tasks.rollups import LEASE_KEY, refresh_rollups
from tests.books import settle
from tests.factories import chain, make_sku, mark_refunded, paid_order, watched

JOB = "tasks.rollups.refresh_rollups"


def board() -> rollups.Dashboard:
    with db.connection_context():
        return rollups.dashboard()


def rows() -> list[tuple]:
    with db.connection_context():
        return sorted(DailyMetric.select(DailyMetric.metric, DailyMetric.day, DailyMetric.dim,
                                         DailyMetric.value).tuples())


def test_the_rollups_job_runs_every_minute():
    assert (JOB, 60) in PERIODIC
    assert resolve(JOB) is refresh_rollups


def test_the_job_brings_the_dashboard_up_to_date_and_a_burst_changes_nothing(rt, shop, run_jobs):
    # given sales through a creator, one refunded, settled commission and plays
    up, seller = chain(2, 1)
    sku = make_sku(shop)
    orders = [paid_order(seller, sku, amount=5_000, cost=2_000) for _ in range(3)]
    mark_refunded(orders[0])
    settle(rt)
    watched(seller, utcnow(), count=12)
    # when the periodic job is queued by its dotted name and the worker runs it
    rt.queue.enqueue(JOB)
    assert run_jobs() == 1
    # then the dashboard shows the sales, the refund, the plays and the commission
    after = board()
    week = after.last_7_days
    assert (week.gmv_fen, week.orders, week.refunds, week.refund_fen) == (15_000, 3, 1, 5_000)
    assert after.funnel == (12, 0, 3) and after.commission.pending_fen > 0
    assert after.top_creators == ((seller.name, 15_000),) and after.as_of is not None
    once = rows()
    # when a burst queues it three more times
    for _ in range(3):
        rt.queue.enqueue(JOB)
    assert run_jobs() == 3
    # then not a number changed, and no lease is left behind
    assert rows() == once
    assert rt.redis.get(LEASE_KEY) is None


def test_a_run_waits_out_one_that_holds_the_lease(rt, shop, run_jobs):
    # given another run holding the lease (a long first run after a deploy)
    paid_order(None, make_sku(shop), amount=700)
    rt.redis.set(LEASE_KEY, "someone-else", ex=60)
    # when the job comes round, it leaves the work to that run
    rt.queue.enqueue(JOB)
    run_jobs()
    assert rows() == [] and rt.redis.get(LEASE_KEY) == b"someone-else"
    assert refresh_rollups() == {"skipped": 1}
    # and once that run is over, the next one does it
    rt.redis.delete(LEASE_KEY)
    assert refresh_rollups()["days"] >= 1
    assert board().last_7_days.gmv_fen == 700


def test_the_job_recomputes_everything_on_request(rt, shop, run_jobs):
    # given rollups spoiled by hand
    paid_order(None, make_sku(shop), amount=900)
    refresh_rollups()
    with db.connection_context():
        DailyMetric.update(value=1).execute()
    # when the job is queued with full=True
    rt.queue.enqueue(JOB, full=True)
    run_jobs()
    # then the figures are right again
    assert board().last_7_days.gmv_fen == 900
