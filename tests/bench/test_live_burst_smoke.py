"""Smoke test of `qianxing bench live-burst`: a tiny burst must finish and prove its invariants.

It runs the real command (gunicorn, an RQ worker, a scratch database of its own) with the
current environment, so CI's DATABASE_URL / REDIS_URL are exercised too. Never asserts on speed.
"""

from __future__ import annotations

import pytest

from tests.bench.run import bench_result

UNITS, BUYERS = 10, 60
REQUIRED = ("sold", "oversold", "tier_errors", "duplicate_keys", "refused", "refused_per_s", "baseline_per_s",
            "refused_ratio", "sellout_s", "p99_ms", "peak_rss_mb")


@pytest.mark.timeout(300)
def test_live_burst_bench_smoke() -> None:
    # when 60 buyers arrive within half a second for 10 units on a 5 + 5 ladder
    result = bench_result("live-burst", "--units", str(UNITS), "--buyers", str(BUYERS), "--window", "0.5",
                          "--baseline", "0.5", required=REQUIRED, timeout=280)
    # then every unit is sold and paid once at its tier's price, and everyone else refused
    assert result["sold"] == UNITS, result
    assert result["oversold"] == result["tier_errors"] == result["duplicate_keys"] == 0, result
    assert result["refused"] == BUYERS - UNITS, result
    assert result["errors"] == result["unexpected"] == 0, result
    assert result["delivered"] == UNITS, result
    assert result["peak_rss_mb"] > 0 and result["baseline_per_s"] > 0, result
