"""The sliding windows read the same signals whichever way they are fetched (issue 15): a long
batch of consecutive orders scans its widened time span once (models/risk_windows._spanned),
a short or sparse one probes each key; both find the same bursts and shared payers, with the
same evidence, on both backends."""

from __future__ import annotations

import datetime as dt

import pytest

from models import risk_windows
from models.db import utcnow
from tests.factories import chain, hits_of, make_sku, outcome_of, risk_buy, score, shopper


@pytest.mark.parametrize("span_min_orders", [1, 10**9], ids=["span-scan", "key-probes"])
def test_bursts_and_shared_payers_are_found_alike_by_span_scan_and_key_probes(rt, shop, monkeypatch,  # noqa: ANN001
                                                                              span_min_orders):
    # given (the scan's threshold set so the one batch scans its span, or never does) an honest
    # order four days ago, three accounts paying with one payer within a day, ten orders from
    # one IP within ten minutes, and one more on that IP half an hour later
    monkeypatch.setattr(risk_windows, "SPAN_MIN_ORDERS", span_min_orders)
    (seller,) = chain(1)
    sku = make_sku(shop)
    now = utcnow()
    honest = risk_buy(seller, sku, shopper(), at=now - dt.timedelta(days=4), ip="10.0.0.1", payer="own")
    payers = [risk_buy(seller, sku, shopper(), at=now - dt.timedelta(hours=20 - 6 * i), payer="openid-wallet")
              for i in range(3)]
    start = now - dt.timedelta(hours=2)
    burst = [risk_buy(seller, sku, shopper(), at=start + dt.timedelta(seconds=50 * i), ip="10.9.9.9")
             for i in range(10)]
    lone = risk_buy(seller, sku, shopper(), at=start + dt.timedelta(minutes=30), ip="10.9.9.9")
    # when they are scored in one batch
    result = score(rt)
    # then the burst and the payer trio are held with their counts, the rest is not hit
    assert result.orders == 15 and result.batches == 1
    for oid in burst:
        shared = hits_of(oid)["burst_orders"]["shared"]
        assert shared == [{"kind": "ip", "hash": shared[0]["hash"], "count": 10}]
        assert hits_of(oid)["burst_orders"]["orders"] == sorted(burst)
        assert outcome_of(oid) == (50, "hold")
    for oid in payers:
        assert hits_of(oid)["shared_payer"]["shared"][0]["count"] == 3
        assert hits_of(oid)["shared_payer"]["orders"] == sorted(payers)
    assert hits_of(lone) == {} and hits_of(honest) == {}
