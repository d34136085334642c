"""Smoke test of `qianxing bench fanout`: a small run through the real command (fake Bot API in
its own process, scratch database, injected 429s) must deliver every message once and print
the JSON shape the issue asks for. Never asserts on speed."""

from __future__ import annotations

import pytest

from tests.bench.run import ROOT, bench_result

REQUIRED = ("sent", "duplicates", "lost", "achieved_rate", "configured_rate", "rate_ratio")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("paid", [False, True])
def test_fanout_bench_smoke(paid: bool) -> None:
    # given 80 recipients at 200/s with two 429s injected (and the fake's own rate limit)
    args = ["--recipients", "80", "--rate", "200", "--inject-429", "2"] + (["--paid"] if paid else [])
    # when the bench runs through the CLI
    # then its last line is one JSON object with every field
    result = bench_result("fanout", *args, required=REQUIRED, timeout=170)
    # and every chat got the message exactly once, the 429s were retried
    assert (result["sent"], result["duplicates"], result["lost"]) == (80, 0, 0), result
    assert result["configured_rate"] == 200.0 and result["achieved_rate"] > 0 and result["rate_ratio"] > 0
    assert result["http_429"] >= 2 and result["rows_sent"] == 80
    assert result["paid"] is paid and (result["paid_flag_on_all"] is True if paid else True)
    # and the scratch database is gone
    if result["backend"] == "sqlite":
        assert not list((ROOT / "var" / "bench").glob("fanout-*.db*"))
