"""Smoke test of `qianxing bench group-buy`: a tiny run must finish and prove its invariants.

It runs the real command (gunicorn, an RQ worker with its periodic jobs, a scratch database of
its own) with the current environment, so CI's DATABASE_URL / REDIS_URL are exercised too.
Never asserts on speed."""

from __future__ import annotations

import pytest

from tests.bench.run import bench_result

TEAMS, SIZE = 20, 3
REQUIRED = ("teams", "succeeded", "failed", "oversized", "delivered_before_success", "refunds_missing",
            "double_refunds", "joins_per_s", "baseline_per_s", "ratio", "peak_rss_mb")


@pytest.mark.timeout(400)
def test_group_buy_bench_smoke() -> None:
    # when 20 teams of 3 are started and joined through the API, two left one short and two
    # with one buyer too many
    result = bench_result("group-buy", "--teams", str(TEAMS), "--size", str(SIZE), "--clients", "8",
                          "--baseline", "0.5", required=REQUIRED, timeout=380)
    # then 18 teams succeeded and were delivered, the two short ones failed and were refunded
    assert (result["teams"], result["succeeded"], result["failed"]) == (TEAMS, 18, 2), result
    assert result["delivered"] == 18 * SIZE and result["refunded"] == 2 * (SIZE - 1), result
    # and no team took a member too many, nothing was delivered early or refunded twice
    assert result["oversized"] == result["delivered_before_success"] == 0, result
    assert result["refunds_missing"] == result["double_refunds"] == result["ledger_unbalanced"] == 0, result
    # and each of the two buyers too many was refused before paying
    assert result["refused"] == result["contended"] == 2, result
    assert result["errors"] == result["unexpected"] == 0, result
    assert result["joins_per_s"] > 0 and result["baseline_per_s"] > 0 and result["peak_rss_mb"] > 0, result
