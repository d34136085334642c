"""Smoke test of `qianxing bench reminders`: a tiny run through the real command (fake Telegram
and WeChat servers in their own processes, drains in child processes, scratch database) must
deliver every reminder once and print the JSON shape the issue asks for. Never asserts on speed
or lateness (a loaded CI host decides those)."""

from __future__ import annotations

import pytest

from tests.bench.run import ROOT, bench_result

REQUIRED = ("sent", "duplicates", "lost", "late", "rate_ratio", "elapsed_s", "peak_rss_mb", "configured_rate")


@pytest.mark.timeout(240)
def test_reminders_bench_smoke() -> None:
    # given 40 reservations (half Telegram, half WeChat) whose T-10m reminder is due in 3 s, at 100/s per platform
    # when the bench runs through the CLI
    result = bench_result("reminders", "--reservations", "40", "--rate", "100", "--lead", "3",
                          required=REQUIRED, timeout=230)
    # then every reservation got its reminder exactly once, planned by the real planner
    assert (result["sent"], result["duplicates"], result["lost"]) == (40, 0, 0), result
    assert result["planned_rows"] == 40 and result["rows_sent"] == 40 and result["configured_rate"] == 100.0
    # and the scratch database is gone
    if result["backend"] == "sqlite":
        assert not list((ROOT / "var" / "bench").glob("reminders-*.db*"))
