"""`qianxing bench risk`: the generator's labels checked against the rules' definitions (an
independent reading of each default rule in plain Python), and a smoke run of the real command
at a small size on the test backend (its own scratch database). Never asserts on speed."""

from __future__ import annotations

import bisect
import datetime as dt
import os
import subprocess
import sys
from collections import defaultdict

import pytest

from models.risk_rules import BY_CODE
from qianxing.bench import risk_data
from qianxing.bench.risk_data import HONEST, RULES, Plan, price
from tests.bench.run import ROOT, bench_result

NOW = dt.datetime(2026, 12, 7, 6, 0)
REQUIRED = ("orders_per_s", "baseline_per_s", "speedup", "recall", "false_positive_rate", "per_rule", "hits",
            "held", "voided", "cases", "peak_rss_mb", "backend", "score_s", "baseline_s", "settle_s", "load_s",
            "scored_orders", "injected", "honest_orders")


def _in_window(times: list[dt.datetime], t: dt.datetime, span: dt.timedelta, enough: int) -> bool:
    """Whether some window of length `span` that contains `t` holds `enough` of `times` (sorted)."""
    lo = bisect.bisect_left(times, t - span)
    hi = bisect.bisect_right(times, t)
    return any(bisect.bisect_right(times, times[j] + span) - j >= enough for j in range(lo, hi))


def oracle(p: Plan) -> dict[int, set[str]]:
    """order id -> the default order rules whose definition it meets (any window containing it)."""
    orders = dict(enumerate(p.orders, start=1))
    paid = {oid: o.at + dt.timedelta(seconds=o.pay_delay_s) for oid, o in orders.items()}
    new = {oid: o.at - p.users[o.user] < dt.timedelta(hours=24) for oid, o in orders.items()}
    parent = {cid: par for cid, _, par, _ in p.creators}
    children = defaultdict(set)
    for cid, _, par, _ in p.creators:
        if par is not None:
            children[par].add(cid)
    fired: dict[int, set[str]] = defaultdict(set)
    ten, day = dt.timedelta(minutes=10), dt.timedelta(hours=24)

    def grouped(key: object) -> dict[object, list[int]]:
        found = defaultdict(list)
        for oid, o in orders.items():
            k = key(o)  # type: ignore[operator]
            if k is not None:
                found[k].append(oid)
        return found

    for key in (lambda o: o.ip, lambda o: o.device):
        for ids in grouped(key).values():
            times = sorted(orders[i].at for i in ids)
            fresh = sorted(orders[i].at for i in ids if new[i])
            accounts = len({orders[j].user for j in ids if new[j]})
            for i in ids:
                if _in_window(times, orders[i].at, ten, 10):
                    fired[i].add("burst_orders")
                if new[i] and accounts >= 5 and _in_window(fresh, orders[i].at, ten, 5):
                    fired[i].add("burst_new_accounts")
    for ids in grouped(lambda o: o.payer).values():
        if len({orders[i].user for i in ids}) >= 3:
            for i in ids:
                near = {orders[j].user for j in ids if abs(paid[j] - paid[i]) <= day}
                if len(near) >= 3:
                    fired[i].add("shared_payer")
    devices_of = defaultdict(set)
    for o in orders.values():
        devices_of[o.user].add(o.device)
    for oid, o in orders.items():
        if price(o.sku)[0] * o.qty >= 50_000 and paid[oid] - p.users[o.user] < day:
            fired[oid].add("new_account_big")
        phone = p.phones.get(o.user)
        if phone and phone[:3] in risk_data.VIRTUAL_SEGMENTS:
            fired[oid].add("virtual_segment")
        if o.seller is not None:
            chain = [o.seller, parent.get(o.seller)]
            chain.append(parent.get(chain[1]) if chain[1] else None)
            for b in filter(None, chain):  # creator id = its user id in the plan
                if b == o.user or (phone and p.phones.get(b) == phone) or (o.device and o.device in devices_of[b]):
                    fired[oid].add("self_purchase")
    week = dt.timedelta(days=7)
    by_user = defaultdict(list)
    for i, o in orders.items():
        by_user[o.user].append(i)
    for x in {cid for cid, *_ in p.creators}:
        team = {x} | children[x] | {g for c in children[x] for g in children[c]}
        mine = [i for u in team for i in by_user[u]]
        for key in (lambda o: o.device, lambda o: p.phones.get(o.user), lambda o: o.ip):
            by = defaultdict(list)
            for i in mine:
                if key(orders[i]) is not None:
                    by[key(orders[i])].append(i)
            for ids in by.values():
                for i in ids:
                    near = [j for j in ids if abs(paid[j] - paid[i]) <= week]
                    if len(near) >= 3 and len({orders[j].user for j in near}) >= 2:
                        fired[i].add("circular_buying")
    return fired


def test_plan_counts_and_labels() -> None:
    # given a plan of 5,000 orders with 5% injected fraud
    p = risk_data.plan(orders=5000, creators=300, fraud_share=0.05, seed=3, now=NOW)
    # then it holds exactly the orders asked for, in time order, paid within the last 30 days
    assert len(p.orders) == len(p.labels) == 5000
    assert all(a.at <= b.at for a, b in zip(p.orders, p.orders[1:], strict=False))
    assert all(NOW - dt.timedelta(days=31) < o.at and o.at + dt.timedelta(seconds=o.pay_delay_s) < NOW
               for o in p.orders)
    # and every pattern is injected, about 5% of all orders in all
    counts = risk_data.counts(p)
    assert all(counts.get(code, 0) >= risk_data.GROUP[code] for code in RULES), counts
    assert 200 <= 5000 - counts[HONEST] <= 300, counts
    # and the honest look-alikes are there, labelled honest
    kinds = {p.kinds[oid] for oid, label in p.labels.items() if label == HONEST}
    assert {"family", "family_payer", "big_buyer", "repeat_buyer", "upline_own", "nat", "shared_wifi",
                     "new_friends", "under_amount", "day_old_big"} <= kinds
    # and the same seed gives the same shop
    again = risk_data.plan(orders=5000, creators=300, fraud_share=0.05, seed=3, now=NOW)
    assert again.labels == p.labels and [o.ip for o in again.orders] == [o.ip for o in p.orders]


@pytest.mark.parametrize("orders,creators", [(2000, 200), (20_000, 1000)])
def test_labels_agree_with_the_rule_definitions(orders: int, creators: int) -> None:
    # given a plan (the larger one crowds the carrier NAT addresses)
    p = risk_data.plan(orders=orders, creators=creators, fraud_share=0.05, seed=11, now=NOW)
    fired = oracle(p)
    weight = {code: BY_CODE[code].weight for code in RULES}
    for oid, label in p.labels.items():
        codes = fired.get(oid, set())
        if label == HONEST:
            # then no honest order meets a rule that would hold it (virtual segment alone: 20)
            assert sum(weight[c] for c in codes) < 50 and "self_purchase" not in codes, (oid, p.kinds[oid], codes)
        else:
            # and every injected order meets the rule it is labelled with
            assert label in codes, (oid, p.kinds[oid], codes)
    # and the virtual-segment fraud is held by what it combines with, honest segments are not
    assert all(sum(weight[c] for c in fired[oid]) >= 50 for oid, label in p.labels.items()
               if label == "virtual_segment")


@pytest.mark.timeout(600)
def test_risk_bench_smoke() -> None:
    # given a tiny shop: 2,000 orders, 200 creators, 5% injected fraud
    # when the bench runs through the CLI on the test backend
    result = bench_result("risk", "--orders", "2000", "--creators", "200", "--sample", "50",
                          required=REQUIRED, timeout=580)
    # then every order was settled and scored, and the baseline was rolled back before the full run
    assert result["settled"] == result["scored_orders"] == result["scored"] == 2000, result
    assert result["orders_per_s"] > 0 and result["baseline_per_s"] > 0 and result["speedup"] > 0, result
    # and recall and the false-positive rate are fractions; the injected patterns are caught
    assert 0 <= result["recall"] <= 1 and 0 <= result["false_positive_rate"] <= 1, result
    assert result["recall"] >= 0.9, result
    assert result["false_positive_rate"] <= 0.01, result
    assert set(result["per_rule"]) == set(RULES), result
    assert result["backend"] == ("postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres")
                                 else "sqlite")
    # and the scratch database is gone
    if result["backend"] == "sqlite":
        assert not list((ROOT / "var" / "bench").glob("risk-*.db*"))


def test_risk_bench_refuses_bad_options() -> None:
    # when the bench is asked for an absurd fraud share or too few orders
    for args in (["--fraud-share", "0.9"], ["--orders", "10"], ["--baseline-budget", "0"]):
        proc = subprocess.run([sys.executable, "-m", "qianxing.cli", "bench", "risk", *args], cwd=ROOT,
                              env=dict(os.environ), capture_output=True, text=True, timeout=60)
        # then it stops before creating anything, saying which options are wrong
        assert proc.returncode == 2 and "--fraud-share 0-0.5" in proc.stderr, (args, proc.stderr[-2000:])
