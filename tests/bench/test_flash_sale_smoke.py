"""Smoke test of `qianxing bench flash-sale`: a tiny run must finish and prove its invariants.

It runs the real command (gunicorn, an RQ worker, a scratch database) with the current
environment, so CI's DATABASE_URL / REDIS_URL are exercised too. Never asserts on speed.
"""

from __future__ import annotations

import pytest

from tests.bench.run import bench_result

KEYS = 60
REQUIRED = ("orders_per_s", "requests_per_s", "baseline_per_s", "ratio", "oversold",
            "duplicate_keys", "p99_ms", "paid", "delivered", "refused", "errors", "database",
            "clients", "duration_s", "baseline_before_per_s", "baseline_after_per_s")


@pytest.mark.timeout(300)
def test_flash_sale_bench_smoke() -> None:
    result = bench_result("flash-sale", "--clients", "8", "--keys", str(KEYS), "--duration", "3",
                          required=REQUIRED, timeout=280)
    assert result["oversold"] == 0, result
    assert result["duplicate_keys"] == 0, result
    assert result["errors"] == 0, result
    assert result["unexpected"] == 0, result
    assert 0 < result["paid"] <= KEYS, result
    assert result["delivered"] == result["paid"], result
    assert result["database"] in ("sqlite", "postgresql")
    assert result["clients"] == 8
    # the baseline is the mean over the windows before and after the sale
    low, high = sorted((result["baseline_before_per_s"], result["baseline_after_per_s"]))
    assert low > 0 and low - 0.1 <= result["baseline_per_s"] <= high + 0.1, result
