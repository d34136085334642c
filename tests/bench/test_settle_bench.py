"""Smoke test of `qianxing bench settle`: a small run through the real command must settle every
order and prove the ledger. Runs with the current environment, so a PostgreSQL DATABASE_URL is
exercised too (the bench creates and drops its own scratch database). Never asserts on speed."""

from __future__ import annotations

import os

import pytest

from tests.bench.run import ROOT, bench_result

ORDERS = 2000
REQUIRED = ("orders", "orders_per_s", "baseline_per_s", "speedup", "ledger_balanced", "setup_s",
            "settle_s", "settled", "backend")


@pytest.mark.timeout(300)
def test_settle_bench_smoke() -> None:
    # given a small tree and 2,000 paid orders
    # when the bench runs through the CLI
    # then it exits cleanly, its last line is one JSON object with every field
    result = bench_result("settle", "--orders", str(ORDERS), "--creators", "300", "--sample", "100",
                          required=REQUIRED, timeout=280)
    # and every order was settled once, with a balanced, verified ledger
    assert result["orders"] == ORDERS and result["settled"] == ORDERS, result
    assert result["ledger_balanced"] is True, result
    assert result["orders_per_s"] > 0 and result["baseline_per_s"] > 0 and result["speedup"] > 0, result
    assert result["backend"] == ("postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres")
                                 else "sqlite")
    # and the scratch database is gone (SQLite: no file left under var/bench)
    if result["backend"] == "sqlite":
        assert not list((ROOT / "var" / "bench").glob("settle-*.db*"))
