"""The coupons' job through RQ (in-process worker): registered hourly, it expires the wallet
grants past their end, and a second run (RQ runs jobs at least once) changes nothing."""

from __future__ import annotations

import datetime as dt

from models.coupons import CouponGrant, GrantState
from models.db import db, utcnow
from tasks.coupons import expire_grants
from tasks.periodic import PERIODIC, resolve
from tests.factories import buyer, coupon, granted

JOB = "tasks.coupons.expire_grants"


def test_the_job_runs_hourly():
    assert (JOB, 3600) in PERIODIC
    assert resolve(JOB) is expire_grants


def test_the_sweep_expires_grants_past_their_end_once(rt, run_jobs):  # noqa: ANN001
    # given two grants, one past its end, and one held by an order (never swept)
    made = coupon()
    old, fresh, held = granted(made, buyer("ann"), buyer("bob"), buyer("cat"))
    with db.connection_context():
        CouponGrant.update(expires_at=utcnow() - dt.timedelta(minutes=1)).where(
            CouponGrant.id.in_([old, held])).execute()
        CouponGrant.update(state=GrantState.RESERVED.value, order_id=1).where(CouponGrant.id == held).execute()
    # when the periodic job runs through the worker, twice
    for _ in range(2):
        rt.queue.enqueue(JOB)
        assert run_jobs() == 1
    # then only the old available grant is expired
    with db.connection_context():
        assert {g.id: g.state for g in CouponGrant.select()} == {
            old: GrantState.EXPIRED, fresh: GrantState.AVAILABLE, held: GrantState.RESERVED}
