"""The risk signals' retention job (tasks/risk_signals.py): daily, RISK_RETENTION_DAYS from the
runtime's settings, the old signal rows and raw order IPs gone, the young ones kept."""

from __future__ import annotations

import datetime as dt

from models import risk_signals
from models.db import db, utcnow
from models.orders import Order
from tasks.periodic import JOB_TIMEOUTS, PERIODIC, resolve
from tasks.risk_signals import prune_signals
from tests.factories import placed_at, signal_rows, unpaid

JOB = "tasks.risk_signals.prune_signals"


def test_the_prune_runs_daily():
    # then the job is a daily periodic entry that resolves, with room for a first long run
    assert (JOB, 86400) in PERIODIC
    assert resolve(JOB) is prune_signals and JOB_TIMEOUTS[JOB] >= 3600


def test_the_job_prunes_past_the_configured_retention(rt, shop, monkeypatch):
    # given a 30-day retention, signals and orders 31 and 29 days old
    monkeypatch.setattr(rt.settings, "RISK_RETENTION_DAYS", 30)
    now = utcnow()
    old_at, young_at = now - dt.timedelta(days=31), now - dt.timedelta(days=29)
    key = rt.settings.RISK_HMAC_KEY
    with db.connection_context():
        risk_signals.record(key, "claim", user_id=1, ip="203.0.113.1", at=old_at)
        risk_signals.record(key, "claim", user_id=1, ip="203.0.113.2", at=young_at)
    sku = shop.card_sku(keys=5)
    old, young = unpaid(sku, "old", client_ip="198.51.100.1").id, unpaid(sku, "young", client_ip="198.51.100.2").id
    placed_at(old_at, old)
    placed_at(young_at, young)
    # when the job runs, twice (a second worker or a re-run)
    first, second = prune_signals(), prune_signals()
    # then the old signal and the old order's IP are gone, the young ones kept, nothing twice
    assert (first, second) == (2, 0)
    assert [r.at for r in signal_rows()] == [young_at]
    with db.connection_context():
        assert {o.id: o.client_ip for o in Order.select()} == {old: "", young: "198.51.100.2"}
