"""`qianxing bench admin`: the data it builds, the JSON line it prints, and the pieces of its
HTTP client (the TOTP login form parsing).

- The builder runs in-process on the test database (SQLite, or the PostgreSQL scratch of
  DATABASE_URL) with small numbers, and the data is checked here with SQL of its own: counts,
  every ledger transaction balanced, no dangling reference, the creator tree consistent.
- The smoke test runs the real command (a scratch database, gunicorn, a login over HTTP) with
  the current environment, so CI's DATABASE_URL / REDIS_URL are exercised. Never asserts on
  speed.
- The harness test times URLs that exist today (/healthz, /api/v1/ping) through the internal
  `pages` parameter of `run`: the JSON shape with every page answering 200.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qianxing.bench import admin, admin_checks, admin_data
from tests.bench.run import ROOT

PAGES = ("dashboard", "orders_first", "orders_deep", "orders_by_creator", "orders_by_date", "order_detail",
         "team_tree")
REQUIRED = ("orders", "creators", "build_s", "p95_ms", "p50_ms", "ping_p95_ms", "worst_ratio", "worst_page",
            "target_ratio", "peak_rss_mb", "backend", "errors", "statuses", "ok", "login", "rollup", "checks",
            "pages", "scratch", "samples")
POSTGRES = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


def _run(args: list[str], timeout: float) -> tuple[int, dict[str, Any], str]:
    """A child process with the current environment: its exit code, last line (one JSON
    object) and the tail of its stderr."""
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=dict(os.environ), capture_output=True,
                          text=True, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-4000:]
    result = json.loads(lines[-1])
    missing = [k for k in REQUIRED if k not in result]
    assert not missing, f"missing keys {missing} in {result}"
    return proc.returncode, result, proc.stderr[-4000:]


def _assert_scratch_gone(result: dict[str, Any]) -> None:
    if result["backend"] == "sqlite":
        assert not Path(result["scratch"]).exists(), result["scratch"]
        assert not Path(result["scratch"]).parent.exists(), "the run's directory under var/bench stays behind"
        return
    import psycopg2

    conn = psycopg2.connect(os.environ["DATABASE_URL"])
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (result["scratch"],))
            assert cur.fetchone() is None, f"database {result['scratch']} was not dropped"
    finally:
        conn.close()


def _assert_shape(result: dict[str, Any], pages: tuple[str, ...], samples: int) -> None:
    assert set(result["p95_ms"]) == set(pages) and set(result["p50_ms"]) == set(pages), result
    assert all(isinstance(v, float | int) and v >= 0 for v in [*result["p95_ms"].values(), *result["p50_ms"].values()])
    assert result["worst_page"] in pages
    assert result["target_ratio"] == 25
    if result["ping_p95_ms"]:
        assert result["worst_ratio"] == round(result["p95_ms"][result["worst_page"]] / result["ping_p95_ms"], 2)
    assert result["p95_ms"][result["worst_page"]] == max(result["p95_ms"].values())
    assert set(result["errors"]) == {*pages, "ping"}
    # every page and the ping were fetched `samples` times
    assert {name: sum(per.values()) for name, per in result["statuses"].items()} == {
        name: samples for name in (*pages, "ping")}, result["statuses"]
    assert result["peak_rss_mb"]["bench"] > 0 and result["peak_rss_mb"]["web"] > 0, result["peak_rss_mb"]
    assert result["backend"] == ("postgresql" if POSTGRES else "sqlite")


# ---- the data -----------------------------------------------------------------------------------


def _scalar(sql: str) -> int:
    from models.db import execute

    return int(execute(sql).fetchone()[0])


def test_the_builder_fills_a_consistent_shop(rt) -> None:  # noqa: ANN001 - the runtime fixture
    from models.db import connection, is_postgres
    from models.settlement import PayoutPolicy

    # given an empty, migrated database
    policy = PayoutPolicy(cap_bp=rt.settings.PAYOUT_CAP_BP, upline_depth=rt.settings.UPLINE_DEPTH,
                          refund_window_days=rt.settings.REFUND_WINDOW_DAYS)
    with connection():
        # when 2,000 orders of 50 creators are built
        admin_data.build(is_postgres(), orders=2000, creators=50, policy=policy, ttl_s=900)

        # then the counts are those asked for, with every status of an order's life
        assert _scalar('SELECT COUNT(*) FROM "order"') == 2000
        assert _scalar("SELECT COUNT(*) FROM creator") == 50
        assert _scalar('SELECT COUNT(*) FROM "user"') == 50 + admin_data.buyers_for(2000)
        statuses = dict(_rows('SELECT status, COUNT(*) FROM "order" GROUP BY status'))
        assert set(statuses) == {"pending", "paid", "delivered", "refunded", "expired"}, statuses
        assert statuses["delivered"] > 1400 and statuses["refunded"] > 20, statuses
        sold = statuses["paid"] + statuses["delivered"] + statuses["refunded"]
        assert _scalar("SELECT COUNT(*) FROM payment WHERE state = 'paid'") == sold
        assert _scalar("SELECT COUNT(*) FROM refund WHERE state = 'succeeded'") == statuses["refunded"]
        assert _scalar("SELECT COUNT(*) FROM ledger_transaction WHERE kind = 'payment'") == sold
        assert _scalar("SELECT COUNT(*) FROM ledger_transaction WHERE kind = 'refund'") == statuses["refunded"]
        assert _scalar("SELECT COUNT(*) FROM settlement") > 0 and _scalar("SELECT COUNT(*) FROM commission") > 0
        assert _scalar("SELECT COUNT(*) FROM event WHERE topic = 'order.paid'") == sold
        # and order numbers are unique, orders 90 days deep, ids rising with time
        assert _scalar('SELECT COUNT(DISTINCT no) FROM "order"') == 2000
        assert _scalar('SELECT COUNT(*) FROM "order" a JOIN "order" b ON b.id = a.id + 1 '
                       "WHERE b.created_at < a.created_at") == 0

        # and every ledger transaction balances, and has legs
        assert _scalar("SELECT COUNT(*) FROM (SELECT txn_id FROM posting GROUP BY txn_id "
                       "HAVING SUM(amount_fen) <> 0) x") == 0
        assert _scalar("SELECT COUNT(*) FROM ledger_transaction t WHERE NOT EXISTS "
                       "(SELECT 1 FROM posting p WHERE p.txn_id = t.id)") == 0
        # and each payment transaction moves the order's amount from clearing to sales
        assert _scalar('SELECT COUNT(*) FROM ledger_transaction t JOIN "order" o ON o.id = t.order_id '
                       "JOIN posting p ON p.txn_id = t.id WHERE t.kind = 'payment' AND NOT "
                       "((p.account = 'asset:wechatpay_clearing' AND p.amount_fen = o.amount_fen) OR "
                       "(p.account = 'income:sales' AND p.amount_fen = -o.amount_fen))") == 0
        # and the commission legs sit in creator accounts of creators that exist
        accounts = [a for (a,) in _rows("SELECT DISTINCT account FROM posting WHERE account LIKE %s", ("creator:%",))]
        assert accounts and all(a.split(":")[2] in ("pending", "available") for a in accounts), accounts
        ids = {int(a.split(":")[1]) for a in accounts}
        assert ids <= {i for (i,) in _rows("SELECT id FROM creator")}

        # and no reference dangles
        for sql in (
            'SELECT COUNT(*) FROM "order" o WHERE NOT EXISTS (SELECT 1 FROM "user" u WHERE u.id = o.user_id)',
            'SELECT COUNT(*) FROM "order" o WHERE NOT EXISTS (SELECT 1 FROM sku s WHERE s.id = o.sku_id)',
            'SELECT COUNT(*) FROM "order" o WHERE o.seller_id IS NOT NULL AND NOT EXISTS '
            "(SELECT 1 FROM creator c WHERE c.id = o.seller_id AND c.code = o.ref_code)",
            'SELECT COUNT(*) FROM payment p WHERE NOT EXISTS (SELECT 1 FROM "order" o WHERE o.id = p.order_id)',
            'SELECT COUNT(*) FROM refund r WHERE NOT EXISTS (SELECT 1 FROM "order" o WHERE o.id = r.order_id)',
            "SELECT COUNT(*) FROM posting p WHERE NOT EXISTS "
            "(SELECT 1 FROM ledger_transaction t WHERE t.id = p.txn_id)",
            "SELECT COUNT(*) FROM ledger_transaction t WHERE t.order_id IS NOT NULL AND NOT EXISTS "
            '(SELECT 1 FROM "order" o WHERE o.id = t.order_id)',
            "SELECT COUNT(*) FROM settlement s WHERE NOT EXISTS (SELECT 1 FROM \"order\" o WHERE o.id = s.order_id)",
            "SELECT COUNT(*) FROM commission m WHERE NOT EXISTS (SELECT 1 FROM creator c WHERE c.id = m.creator_id)",
            'SELECT COUNT(*) FROM creator c WHERE NOT EXISTS (SELECT 1 FROM "user" u WHERE u.id = c.user_id)',
        ):
            assert _scalar(sql) == 0, sql
        # and each creator's grandparent is its parent's parent
        tree = {cid: (p, g) for cid, p, g in _rows("SELECT id, parent_id, grandparent_id FROM creator")}
        for cid, (p, g) in tree.items():
            assert g == (tree[p][0] if p is not None else None), (cid, p, g)

        # and the bench's own checks agree
        checks = admin_checks.check()
        assert checks["problems"] == [] and checks["unbalanced_transactions"] == 0, checks


def _rows(sql: str, params: tuple = ()) -> list[tuple]:
    from models.db import execute

    return execute(sql, params).fetchall()


def test_the_creator_tree_is_consistent_and_has_big_teams() -> None:
    # given a tree of 3,000 creators
    rows = admin_data.creator_tree(3000, random.Random(3))
    parent = {cid: p for cid, p, _ in rows}

    # then parents come first, grandparents are the parents' parents, no chain is too deep
    for cid, p, g in rows:
        assert p is None or p < cid
        assert g == (parent[p] if p is not None else None)
        depth, at = 0, cid
        while parent[at] is not None:
            at, depth = parent[at], depth + 1
        assert depth < admin_data.MAX_DEPTH
    # and someone near the top has a big team (direct and second level)
    teams: dict[int, int] = {}
    for _, p, g in rows:
        for up in (p, g):
            if up is not None:
                teams[up] = teams.get(up, 0) + 1
    assert max(teams.values()) > 100


def test_invite_codes_are_unique_and_valid() -> None:
    from models.network import CODE_PATTERN

    codes = [admin_data.creator_code(i) for i in range(1, 100_001)]
    assert len(set(codes)) == len(codes)
    assert all(CODE_PATTERN.match(c) for c in codes[:1000])


@pytest.mark.parametrize("form", [
    '<input type="hidden" name="csrf_token" value="abc.DEF-1">',
    "<input value='abc.DEF-1' name='csrf_token' type='hidden'/>",
    '<input id="csrf_token" value="abc.DEF-1" type="hidden" name="csrf_token">',
    '<INPUT name=csrf_token value=abc.DEF-1>',
])
def test_the_csrf_token_is_found_whatever_the_attribute_order(form: str) -> None:
    page = f'<form><input name="name" value="x"><input data-value="no" name="other">{form}</form>'
    assert admin.csrf_token(page) == "abc.DEF-1"


def test_a_page_without_the_token_has_none() -> None:
    assert admin.csrf_token('<input name="csrf_token_x" value="1"><input name="name" value="2">') is None


# ---- the command -----------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_admin_bench_smoke() -> None:
    # given a small shop: 2,000 orders, 50 creators, 3 samples per page
    # when the bench runs through the CLI
    code, result, stderr = _run(["-m", "qianxing.cli", "bench", "admin", "--orders", "2000", "--creators", "50",
                                 "--samples", "3"], timeout=280)

    # then its last line is the result, for the data asked for, with every field
    assert result["orders"] == 2000 and result["creators"] == 50 and result["samples"] == 3, result
    _assert_shape(result, PAGES, 3)
    # and the data it timed the pages on is consistent
    checks = result["checks"]
    assert checks["problems"] == [] and checks["unbalanced_transactions"] == 0, checks
    assert not any(checks["orphans"].values()), checks["orphans"]
    assert checks["counts"]["order"] == 2000 and checks["counts"]["creator"] == 50, checks["counts"]
    assert set(checks["statuses"]) == {"pending", "paid", "delivered", "refunded", "expired"}, checks["statuses"]
    # and the scratch database is gone
    _assert_scratch_gone(result)

    # and the operator logged in and every page answered 200
    assert result["login"] == "ok", result["login"]
    assert result["errors"] == {name: 0 for name in (*PAGES, "ping")}, result["statuses"]
    assert result["ok"] is True and code == 0, stderr
    assert all(v > 0 for v in result["p95_ms"].values()) and result["ping_p95_ms"] > 0, result


@pytest.mark.timeout(300)
def test_the_harness_times_the_pages_it_is_given() -> None:
    # given the pages replaced by URLs that answer 200 today
    pages = {"healthz": "/healthz", "ping_again": "/api/v1/ping"}
    script = ("import json, sys; from qianxing.bench import admin; from qianxing.cli.boot import settings; "
              f"print(json.dumps(admin.run(settings(), orders=300, creators=20, samples=4, pages={pages!r})))")
    # when the bench runs with them
    code, result, stderr = _run(["-c", script], timeout=280)

    # then every one of them was timed and answered 200, the ping as often, in the result's shape
    assert code == 0, stderr
    _assert_shape(result, tuple(pages), 4)
    assert result["pages"] == pages
    assert result["errors"] == {"healthz": 0, "ping_again": 0, "ping": 0}, result["statuses"]
    assert result["ok"] is True, result
    assert result["ping_p95_ms"] > 0 and result["worst_ratio"] > 0
    assert result["checks"]["counts"]["order"] == 300 and result["checks"]["problems"] == []
    _assert_scratch_gone(result)
