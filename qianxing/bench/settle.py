"""`qianxing bench settle --orders N`: batch settlement against a naive per-order ORM loop.

The run owns a scratch database: a database created next to the PostgreSQL in DATABASE_URL
(dropped afterwards, so the named database is never touched), or a throwaway SQLite file under
var/bench/ when DATABASE_URL is not PostgreSQL.

1. Set-up, all set-based: a creator tree (default 10,000 creators, depth up to 6, random star
   levels 0-6), a few SKUs with commission rates 10-30%, and N paid orders attributed to random
   creators, some with the seller's markup. PostgreSQL builds rows with generate_series/unnest,
   SQLite with executemany.
2. Baseline: a sample of the same orders settled the naive way, inside one transaction that is
   rolled back afterwards: per order, read it, its SKU, its seller and the two uplines with the
   ORM, call `commission.split`, create the Settlement and Commission rows, post one ledger
   transaction.
3. The real path: `settlement.settle()` over all N orders.
4. Checks: every order settled, every ledger transaction balances, `settlement.verify()` clean.

The last line printed is one JSON object (see `run`).
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from qianxing.bench.harness import ScratchDatabase
from qianxing.settings import Settings

if TYPE_CHECKING:
    from models.settlement import PayoutPolicy

SKUS = 20
MAX_DEPTH = 6  # levels of the tree: a root and up to five generations below it
ROOT_SHARE = 0.02  # creators nobody invited
MARKUP_SHARE = 0.3  # orders sold with the seller's markup
INSERT_ROWS = 50_000  # orders per INSERT statement during set-up


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---- set-up -------------------------------------------------------------------------------


def creator_tree(creators: int, rng: random.Random) -> list[tuple[int, int, int | None, int | None]]:
    """(id, rank, parent, grandparent) for ids 1..creators; parents always have smaller ids and
    no chain is deeper than MAX_DEPTH levels."""
    depth = [0] * (creators + 1)
    parent: list[int | None] = [None] * (creators + 1)
    rows = []
    for cid in range(1, creators + 1):
        p: int | None = None
        if cid > 1 and rng.random() >= ROOT_SHARE:
            p = rng.randrange(1, cid)
            while depth[p] >= MAX_DEPTH - 1:
                p = parent[p]  # type: ignore[assignment]
        parent[cid] = p
        depth[cid] = depth[p] + 1 if p is not None else 0
        rows.append((cid, rng.randrange(0, 7), p, parent[p] if p is not None else None))
    return rows


def build(postgres: bool, *, creators: int, orders: int, seed: int) -> None:
    """Users, creators, SKUs and N paid orders (fresh scratch database: ids start at 1)."""
    from models.db import db, execute, utcnow

    rng = random.Random(seed)
    now = utcnow()
    buyer = creators + 1
    tree = creator_tree(creators, rng)
    skus = []
    for k in range(1, SKUS + 1):
        retail = rng.choice((990, 1990, 2990, 4990, 9900, 19900, 49900))
        supply = retail * rng.randrange(50, 86) // 100
        skus.append((k, k, f"BENCH-{k}", f"bench sku {k}", "serial", supply, retail, 0,
                     rng.randrange(1000, 3001), None, 0, True, False, now))
    with db.atomic():
        if postgres:
            execute('INSERT INTO "user" (id, openid, nickname, created_at) '
                    "SELECT g, 'bench-' || g, '', %s FROM generate_series(1, %s) g", (now, buyer))
            ids, ranks, parents, grands = (list(col) for col in zip(*tree, strict=True))
            execute("INSERT INTO creator (id, user_id, code, name, rank, parent_id, grandparent_id, "
                    "bound_via, bound_at, active, created_at) "
                    "SELECT t.id, t.id, 'C' || t.id, '', t.rank, t.parent, t.grand, "
                    "CASE WHEN t.parent IS NULL THEN NULL ELSE 'typed' END, "
                    "CASE WHEN t.parent IS NULL THEN NULL ELSE %s::timestamp END, true, %s "
                    "FROM unnest(%s::bigint[], %s::int[], %s::bigint[], %s::bigint[]) "
                    "AS t(id, rank, parent, grand)", (now, now, ids, ranks, parents, grands))
        else:
            conn = db.connection()
            conn.executemany('INSERT INTO "user" (id, openid, nickname, created_at) VALUES (?, ?, ?, ?)',
                             [(i, f"bench-{i}", "", now) for i in range(1, buyer + 1)])
            conn.executemany(
                "INSERT INTO creator (id, user_id, code, name, rank, parent_id, grandparent_id, "
                "bound_via, bound_at, active, created_at) VALUES (?, ?, ?, '', ?, ?, ?, ?, ?, 1, ?)",
                [(i, i, f"C{i}", r, p, g, "typed" if p else None, now if p else None, now)
                 for i, r, p, g in tree])
        execute("INSERT INTO product (id, title, description, active, created_at) VALUES "
                + ", ".join(["(%s, %s, '', %s, %s)"] * SKUS),
                [v for k in range(1, SKUS + 1) for v in (k, f"bench product {k}", True, now)])
        execute("INSERT INTO sku (id, product_id, code, name, kind, supply_price_fen, retail_price_fen, "
                "stock, commission_bp, max_markup_bp, min_rank, active, low_stock_flag, created_at) "
                "VALUES " + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * SKUS),
                [v for row in skus for v in row])
        if postgres:
            for table in ("user", "creator", "product", "sku"):
                execute(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                        f'(SELECT max(id) FROM "{table}"))')
    _orders(postgres, orders=orders, creators=creators, buyer=buyer, skus=skus, rng=rng, now=now)


_ORDER_COLUMNS = ("no, user_id, sku_id, quantity, unit_price_fen, amount_fen, status, ref_code, seller_id, "
                  "markup_fen, cost_fen, client_ip, risk_hold, created_at, expires_at, paid_at")


def _orders(postgres: bool, *, orders: int, creators: int, buyer: int, skus: list[tuple],
            rng: random.Random, now: object) -> None:
    from models.db import db, execute

    if postgres:
        execute("SELECT setseed(%s)", (rng.random(),))
        for start in range(1, orders + 1, INSERT_ROWS):
            stop = min(start + INSERT_ROWS - 1, orders)
            with db.atomic():
                # Markup up to 20% of retail (within the default 30% cap) on MARKUP_SHARE of them.
                execute(
                    f'INSERT INTO "order" ({_ORDER_COLUMNS}) '
                    "SELECT 'BS' || x.g, %s, s.id, x.q, s.retail_price_fen + x.m, "
                    "(s.retail_price_fen + x.m) * x.q, 'paid', 'C' || x.c, x.c, x.m * x.q, "
                    "s.supply_price_fen * x.q, '127.0.0.1', false, %s, %s, %s "
                    "FROM (SELECT y.g, y.k, y.c, y.q, CASE WHEN y.r < %s "
                    "      THEN floor(y.r2 * 0.2 * sk.retail_price_fen)::int ELSE 0 END AS m "
                    "      FROM (SELECT g, 1 + floor(random() * %s)::int AS k, "
                    "            1 + floor(random() * %s)::bigint AS c, 1 + floor(random() * 3)::int AS q, "
                    "            random() AS r, random() AS r2 FROM generate_series(%s, %s) g) y "
                    "      JOIN sku sk ON sk.id = y.k) x "
                    "JOIN sku s ON s.id = x.k ORDER BY x.g",
                    (buyer, now, now, now, MARKUP_SHARE, SKUS, creators, start, stop))
            _log(f"orders: {stop}/{orders}")
        execute('ANALYZE "order"')
        execute("ANALYZE creator")
        return
    price = {k: (supply, retail) for k, _, _, _, _, supply, retail, *_ in skus}
    conn = db.connection()
    for start in range(1, orders + 1, INSERT_ROWS):
        stop = min(start + INSERT_ROWS - 1, orders)
        rows = []
        for g in range(start, stop + 1):
            k, c, q = rng.randrange(1, SKUS + 1), rng.randrange(1, creators + 1), rng.randrange(1, 4)
            supply, retail = price[k]
            m = int(rng.random() * 0.2 * retail) if rng.random() < MARKUP_SHARE else 0
            rows.append((f"BS{g}", buyer, k, q, retail + m, (retail + m) * q, "paid", f"C{c}", c,
                         m * q, supply * q, "127.0.0.1", 0, now, now, now))
        with db.atomic():
            conn.executemany(f'INSERT INTO "order" ({_ORDER_COLUMNS}) VALUES ({", ".join("?" * 16)})', rows)
        _log(f"orders: {stop}/{orders}")


# ---- the two ways to settle ---------------------------------------------------------------


def naive_settle(order_ids: list[int], policy: PayoutPolicy) -> None:
    """The per-order ORM loop the batch path is measured against (same rule, same rows)."""
    from models import ledger
    from models.catalog import Sku
    from models.commission import OrderFacts, seller_rate, split
    from models.db import utcnow
    from models.levels import Rates
    from models.network import Creator
    from models.orders import Order
    from models.settlement import Commission, LineKind, Settlement, SettleState

    rates = Rates.load()
    for oid in order_ids:
        order = Order.get_by_id(oid)
        sku = Sku.get_by_id(order.sku_id)
        seller = Creator.get_or_none(Creator.id == order.seller_id)
        if seller is None:
            continue
        up1 = Creator.get_or_none(Creator.id == seller.parent_id) if seller.parent_id else None
        up2 = Creator.get_or_none(Creator.id == up1.parent_id) if up1 and up1.parent_id else None
        got = split(OrderFacts(
            amount_fen=order.amount_fen, markup_fen=order.markup_fen, cost_fen=order.cost_fen,
            seller_rate_bp=seller_rate(sku.commission_bp, rates.own.get(seller.rank, 0)),
            upline1_rate_bp=rates.team1.get(up1.rank, 0) if up1 else 0,
            upline2_rate_bp=rates.team2.get(up2.rank, 0) if up2 else 0,
        ), cap_bp=policy.cap_bp, upline_depth=policy.upline_depth)
        now = utcnow()
        Settlement.create(order_id=oid, seller_id=seller.id, payout_fen=got.total, settled_at=now,
                          state=SettleState.PENDING.value if got.total else SettleState.NONE.value)
        legs = []
        for who, kind, amount in ((seller, LineKind.MARKUP, got.markup), (seller, LineKind.SALE, got.sale),
                                  (up1, LineKind.TEAM1, got.team1), (up2, LineKind.TEAM2, got.team2)):
            if who is not None and amount > 0:
                Commission.create(order_id=oid, creator_id=who.id, kind=kind.value, amount_fen=amount,
                                  created_at=now)
                legs.append(ledger.Leg(ledger.creator_account(who.id, ledger.PENDING), -amount))
        if legs:
            legs.append(ledger.Leg(ledger.COMMISSION_EXPENSE, got.total))
            ledger.post(f"naive:{oid}", "commission", legs, order_id=oid)


def run(settings: Settings, *, orders: int, creators: int = 10_000, sample: int = 1000,
        batch: int | None = None, seed: int = 7, log: Callable[[str], None] = _log) -> dict:
    """Build, measure, check; returns the result the CLI prints as its last line."""
    from models import ledger, settlement
    from models.db import db, execute, open_database
    from models.migrations import migrate
    from models.settlement import PayoutPolicy

    if orders < 1 or creators < 1:
        raise ValueError("orders and creators must be at least 1")
    policy = PayoutPolicy(cap_bp=settings.PAYOUT_CAP_BP, upline_depth=settings.UPLINE_DEPTH,
                          refund_window_days=settings.REFUND_WINDOW_DAYS)
    batch = batch or settings.SETTLE_BATCH
    scratch = ScratchDatabase(settings, "settle")
    scratch.create()
    try:
        open_database(scratch.url)
        log(f"scratch database {scratch.name}; building {creators} creators and {orders} orders")
        t0 = time.perf_counter()
        migrate()
        with db.connection_context():
            build(scratch.postgres, creators=creators, orders=orders, seed=seed)
        setup_s = time.perf_counter() - t0
        log(f"set-up {setup_s:.1f} s")

        with db.connection_context():
            rng = random.Random(seed + 1)
            picked = sorted(rng.sample(range(1, orders + 1), min(sample, orders)))
            t0 = time.perf_counter()
            with db.atomic() as txn:
                naive_settle(picked, policy)
                baseline_s = time.perf_counter() - t0
                txn.rollback()
        baseline_per_s = len(picked) / baseline_s
        log(f"baseline: {len(picked)} orders in {baseline_s:.2f} s ({baseline_per_s:.0f}/s), rolled back")

        done = [0]

        def progress(n: int) -> None:
            done[0] += n
            if done[0] % (batch * 20) < n or done[0] == orders:
                log(f"settled {done[0]}/{orders}")

        with db.connection_context():
            t0 = time.perf_counter()
            result = settlement.settle(policy, batch=batch, progress=progress)
            settle_s = time.perf_counter() - t0
        log(f"settle: {result.orders} orders, {result.lines} lines, {result.batches} batches "
            f"in {settle_s:.2f} s")

        with db.connection_context():
            t0 = time.perf_counter()
            unbalanced = ledger.unbalanced_transactions()
            problems = settlement.verify()
            settled = execute("SELECT COUNT(*) FROM settlement").fetchone()[0]
            log(f"checks {time.perf_counter() - t0:.1f} s: {len(unbalanced)} unbalanced, "
                f"{len(problems)} verify problems, {settled} settled")
            for problem in problems[:10]:
                log(f"  {problem}")
        orders_per_s = result.orders / settle_s if settle_s else 0.0
        return {
            "orders": orders,
            "settled": int(settled),
            "creators": creators,
            "backend": "postgresql" if scratch.postgres else "sqlite",
            "batch": batch,
            "lines": result.lines,
            "paid_fen": result.paid_fen,
            "setup_s": round(setup_s, 2),
            "settle_s": round(settle_s, 2),
            "orders_per_s": round(orders_per_s, 1),
            "baseline_orders": len(picked),
            "baseline_per_s": round(baseline_per_s, 1),
            "speedup": round(orders_per_s / baseline_per_s, 1) if baseline_per_s else 0.0,
            "ledger_balanced": not unbalanced and not problems and int(settled) == orders,
        }
    finally:
        scratch.remove()
