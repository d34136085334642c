"""Smoke test of `qianxing bench faults`: a tiny run through the CLI must finish, report every
figure for every fault, and lose, duplicate and oversell nothing.

It runs the real command (gunicorn, an RQ worker, its own redis-server, a scratch database) with
the current environment, so CI's DATABASE_URL is exercised too: on SQLite the connection fault is
reported as skipped. Never asserts on speed or recovery time.
"""

from __future__ import annotations

import pytest

from qianxing.bench.faults import FAULTS, PER_FAULT
from tests.bench.run import bench_result

REQUIRED = ("faults", "worst", "orders", "lost", "peak_rss_mb", "peak_pss_mb", "peak_rss_mb_web",
            "peak_rss_mb_worker", "peak_rss_mb_redis", "total_oversold", "total_duplicate_keys",
            "web_exits", "worker_exits", "leftover_processes", "killed_at_stop", "backlog_sample_errors",
            "database", "clients", "duration_per_fault_s", "total_s")


@pytest.mark.timeout(240)
def test_faults_bench_smoke() -> None:
    result = bench_result("faults", "--clients", "3", "--duration-per-fault", "2", "--keys", "3000",
                          required=REQUIRED, timeout=220)

    # every fault is reported, with every figure (the connection fault is skipped on SQLite only)
    assert set(result["faults"]) == set(FAULTS), result
    postgres = result["database"] == "postgresql"
    assert result["database"] in ("sqlite", "postgresql")
    assert result["faults"]["db_terminate"].get("skipped", False) is not postgres, result
    measured = {name: f for name, f in result["faults"].items() if not f.get("skipped")}
    for name, figures in measured.items():
        missing = [k for k in (*PER_FAULT, "recovered", "timeouts", "unpaid") if k not in figures]
        assert not missing, f"{name} lacks {missing}: {figures}"
        assert figures["orders"] > 0, (name, figures)
    assert set(result["worst"]) >= set(PER_FAULT) - {"orders"}, result

    # nothing paid is lost, delivered twice or oversold, whatever was killed
    for name, figures in measured.items():
        assert figures["lost"] == 0, (name, figures)
        assert figures["duplicates"] == 0, (name, figures)
        assert figures["oversold"] == 0, (name, figures)
    assert result["lost"] == 0 and result["total_oversold"] == 0 and result["total_duplicate_keys"] == 0, result
    assert result["worst"]["recovery_s"] >= 0
    # the service processes were measured
    assert result["peak_rss_mb"] > 0 and result["peak_rss_mb_redis"] > 0, result


def test_recovery_is_counted_from_the_end_of_the_fault_until_the_backlog_stays_normal() -> None:
    from types import SimpleNamespace

    from qianxing.bench.fault_service import RECOVERED_AGE_S, SAMPLE_S, STABLE_S
    from qianxing.bench.fault_service import Sample as _Sample
    from qianxing.bench.fault_service import Service as _Service

    def recovery(ages: list[float], fault_end: float) -> tuple[float, bool]:
        """Samples every SAMPLE_S from t = 0 with these oldest ages."""
        samples = [_Sample(at=i * SAMPLE_S, backlog=1, oldest_s=age) for i, age in enumerate(ages)]
        return _Service.recovery(SimpleNamespace(samples=samples), fault_end)  # type: ignore[arg-type]

    per_s = round(1 / SAMPLE_S)
    high, low = RECOVERED_AGE_S + 1, RECOVERED_AGE_S / 2
    # a backlog that never grew old: recovered at once, once samples show it so for long enough
    assert recovery([low] * (1 + round(STABLE_S + 1) * per_s), 1.0) == (0.0, True)
    assert recovery([low] * per_s * 2, 1.0) == (0.0, False)
    # too old until sample 11 (t = 2.75 s), normal afterwards: recovered 2 s after a fault ending at 1 s
    ages = [low] * 4 + [high] * 8 + [low] * (1 + round(STABLE_S) * per_s)
    seconds, stable = recovery(ages, 1.0)
    assert abs(seconds - (11 * SAMPLE_S + SAMPLE_S - 1.0)) < 1e-9 and stable
    # still too old at the last sample, or not yet normal for long enough: not recovered (yet)
    assert recovery([low] * 4 + [high] * 8, 1.0)[1] is False
    assert recovery([low] * 4 + [high] * 8 + [low] * 2, 1.0)[1] is False
    # old orders seen only before the fault ended do not count
    assert recovery([high] * 4 + [low] * 20, 1.0) == (0.0, True)
