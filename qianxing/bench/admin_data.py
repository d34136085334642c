"""The scratch shop behind `qianxing bench admin`: creators, a catalog and N orders with their
payments, refunds, events and ledger, shaped as the service writes them (the checks that prove
the data consistent are in admin_checks.py, the index juggling of the load in admin_load.py).

Rows are generated in Python from one seeded random stream (the same data on both backends)
and written in chunks of CHUNK orders, each chunk one transaction: COPY on PostgreSQL,
executemany on SQLite, through admin_load.Writer; the next chunk is generated in a thread while one is written. Memory
stays bounded by two chunks (plus 3% of N refunded (id, time) pairs). While the orders and what
hangs off them go in, the secondary indexes of those tables are dropped and then built again
from their own definitions (pg_get_indexdef / sqlite_master), and a PostgreSQL superuser skips
the row-by-row foreign-key triggers (session_replication_role); `admin_checks.check` proves every reference
afterwards. The build expects empty tables: ids are given explicitly, starting at 1.
The shapes follow the writers:

- orders: ids rising with created_at over the last DAYS days (the newest `tail` ones within the
  order TTL, so some are still pending); 80% delivered, 4% paid, 3% refunded, 13% unpaid
  (pending when not yet expired, else expired); 90% attributed to a creator, sellers skewed
  (a few creators sell much), 30% of those with the seller's markup;
- payments as `confirm_payment` leaves them (wechatpay, transaction id, paid), a prepared one
  for half of the unpaid orders; `payment:{no}` ledger transactions (clearing +, sales -);
- refunds as `refund_order` leaves them: a succeeded Refund, `refund:{no}` (sales +, clearing
  -), an `order.refunded` event;
- events: order.paid, order.delivered, order.expired, order.refunded, order.risk_hold,
  creator.joined and creator.bound;
- commission through the real code: `settlement.settle`, `settlement.release_due` (orders paid
  before the refund window move to available), then the refunded orders are flipped and
  `reversals.reverse_refunded` reverses or claws back their commission.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from qianxing.bench.admin_load import LOADED, Writer, create_indexes, drop_indexes, is_superuser, secondary_indexes

if TYPE_CHECKING:
    from models.settlement import PayoutPolicy

DAYS = 90
CHUNK = 25_000  # orders per transaction (and the generator runs one chunk ahead)
MAX_DEPTH = 6  # levels of the creator tree
ROOT_SHARE = 0.02  # creators nobody invited
ATTRIBUTED = 0.9  # orders sold through a creator's link
MARKUP_SHARE = 0.3  # of attributed orders: with the seller's markup (up to 20% of retail)
DELIVERED, PAID, REFUNDED = 0.80, 0.04, 0.03  # the rest is unpaid: pending or expired
RISK_HOLD = 0.001  # paid orders held for review
PROVIDER = "wechatpay"
CASH, SALES = "asset:wechatpay_clearing", "income:sales"  # models.ledger's accounts
RANK_WEIGHTS = (40, 25, 15, 10, 5, 3, 2)  # star levels 0-6
BIND_VIA = ("telegram", "wechat_qr", "miniapp", "typed")
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # models.network's
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ("小美", "晨曦", "子涵", "欣怡", "浩然", "一诺", "梓萱", "宇轩", "思远", "若溪", "星河", "安然")
REFUND_REASONS = ("用户申请退款", "卡密无法使用", "重复下单", "充值失败")
# (product, kind, [(sku name, retail fen)]): what a virtual-goods shop sells.
CATALOG = (
    ("爱奇艺黄金会员", "card_key", (("月卡", 1980), ("季卡", 5400), ("年卡", 19800))),
    ("腾讯视频VIP", "card_key", (("月卡", 2000), ("季卡", 5800), ("年卡", 20800))),
    ("优酷VIP会员", "card_key", (("月卡", 1500), ("年卡", 16800))),
    ("网易云音乐黑胶VIP", "serial", (("月卡", 1500), ("年卡", 13800))),
    ("QQ音乐绿钻", "card_key", (("月卡", 1500), ("年卡", 14800))),
    ("百度网盘超级会员", "card_key", (("月卡", 3000), ("年卡", 29800))),
    ("哔哩哔哩大会员", "card_key", (("月卡", 1500), ("年卡", 14800))),
    ("Steam 钱包充值卡", "card_key", (("50元", 5000), ("100元", 10000))),
    ("手机话费充值", "topup", (("30元", 3000), ("50元", 5000), ("100元", 10000))),
    ("美团外卖红包", "serial", (("10元", 990),)),
)


def log_nothing(message: str) -> None:
    return None


# ---- creators and catalog -------------------------------------------------------------------


def creator_tree(creators: int, rng: random.Random) -> list[tuple[int, int | None, int | None]]:
    """(id, parent, grandparent) for ids 1..creators, parents before children, no chain deeper
    than MAX_DEPTH levels. Preferential attachment (a creator with a big team recruits more), so
    a few teams near the top are large, as in a real network."""
    parent: list[int | None] = [None] * (creators + 1)
    depth = [0] * (creators + 1)
    pool: list[int] = []  # each creator once, plus once per direct recruit
    rows = []
    for cid in range(1, creators + 1):
        p: int | None = None
        if pool and rng.random() >= ROOT_SHARE:
            p = rng.choice(pool)
            while depth[p] >= MAX_DEPTH - 1:
                p = parent[p]  # type: ignore[assignment]
            pool.append(p)
        parent[cid] = p
        depth[cid] = depth[p] + 1 if p is not None else 0
        pool.append(cid)
        rows.append((cid, p, parent[p] if p is not None else None))
    return rows


def creator_code(cid: int) -> str:
    """An 8-character invite code, unique per id (an odd multiplier permutes 0..32^8-1)."""
    n = (cid * 0x5DEECE66D + 0x2545F491) % 32**8
    return "".join(CODE_ALPHABET[(n >> (5 * i)) & 31] for i in range(8))


def person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN)


def _people(w: Writer, creators: int, buyers: int, tree: list[tuple], rng: random.Random,
            now: dt.datetime) -> None:
    start = now - dt.timedelta(days=DAYS + 90)
    joined = [start + dt.timedelta(seconds=(cid - 1) * (DAYS + 80) * 86400 / creators
                                   + rng.randrange(3600)) for cid in range(creators + 1)]
    names = [person(rng) for _ in range(creators + 1)]
    w.rows("user", ("id", "openid", "unionid", "nickname", "created_at"),
           ((cid, f"oQXb{hashlib.md5(str(cid).encode()).hexdigest()[:24]}", None, names[cid],  # noqa: S324
             joined[cid]) for cid in range(1, creators + 1)))
    first_buyer = creators + 1
    for at in range(first_buyer, first_buyer + buyers, CHUNK):
        w.rows("user", ("id", "openid", "unionid", "nickname", "created_at"),
               ((uid, f"oQXb{hashlib.md5(str(uid).encode()).hexdigest()[:24]}", None, "",  # noqa: S324
                 start) for uid in range(at, min(at + CHUNK, first_buyer + buyers))))
    ranks = rng.choices(range(len(RANK_WEIGHTS)), weights=RANK_WEIGHTS, k=creators + 1)
    via = [rng.choice(BIND_VIA) for _ in range(creators + 1)]
    w.rows("creator", ("id", "user_id", "code", "name", "rank", "rank_cap", "parent_id", "grandparent_id",
                       "bound_via", "bound_at", "active", "created_at"),
           ((cid, cid, creator_code(cid), names[cid], ranks[cid], None, p, g, via[cid] if p else None,
             joined[cid] + dt.timedelta(seconds=5) if p else None, True, joined[cid])
            for cid, p, g in tree))
    events = [("creator.joined", f"creator:{cid}", f"user:{cid}", f'{{"code": "{creator_code(cid)}"}}',
               joined[cid]) for cid, _, _ in tree]
    events += [("creator.bound", f"creator:{cid}", f"creator:{cid}", f'{{"parent": {p}, "via": "{via[cid]}"}}',
                joined[cid] + dt.timedelta(seconds=5)) for cid, p, _ in tree if p]
    w.rows("event", ("topic", "subject", "actor", "payload", "created_at"), events)


@dataclass(frozen=True)
class SkuRow:
    id: int
    kind: str
    retail: int
    supply: int
    weight: float


def _catalog(w: Writer, rng: random.Random, now: dt.datetime) -> list[SkuRow]:
    created = now - dt.timedelta(days=DAYS + 100)
    products, skus, out = [], [], []
    for pid, (title, kind, variants) in enumerate(CATALOG, start=1):
        products.append((pid, title, f"{title}，官方渠道，自动发货", True, created))
        for name, retail in variants:
            sid = len(out) + 1
            supply = retail * rng.randrange(70, 91) // 100
            stock = 0 if kind == "card_key" else 100_000
            skus.append((sid, pid, f"SKU-{pid:02d}-{sid:03d}", f"{title} {name}", kind, supply, retail, stock,
                         None, rng.randrange(1000, 3001, 100), None, 0, True, False, created))
            out.append(SkuRow(sid, kind, retail, supply, 3.0 if name == "月卡" else 1.0))
    w.rows("product", ("id", "title", "description", "active", "created_at"), products)
    w.rows("sku", ("id", "product_id", "code", "name", "kind", "supply_price_fen", "retail_price_fen", "stock",
                   "low_stock_threshold", "commission_bp", "max_markup_bp", "min_rank", "active",
                   "low_stock_flag", "created_at"), skus)
    return out


# ---- orders and what hangs off them -----------------------------------------------------------

_ORDER_COLUMNS = ("id", "no", "user_id", "sku_id", "quantity", "unit_price_fen", "amount_fen", "status",
                  "ref_code", "seller_id", "markup_fen", "cost_fen", "recipient_account", "client_ip",
                  "risk_hold", "created_at", "expires_at", "paid_at", "delivered_at")
_PAYMENT_COLUMNS = ("order_id", "provider", "prepay_id", "transaction_id", "amount_fen", "state", "created_at",
                    "paid_at")
_REFUND_COLUMNS = ("order_id", "refund_no", "amount_fen", "reason", "actor", "state", "provider_ref",
                   "created_at", "done_at")
_TXN_COLUMNS = ("id", "key", "kind", "order_id", "memo", "created_at")
_POSTING_COLUMNS = ("txn_id", "account", "amount_fen")
_EVENT_COLUMNS = ("topic", "subject", "actor", "payload", "created_at")


@dataclass
class OrderPlan:
    """The knobs of the order generator and what it found out along the way."""

    orders: int
    creators: int
    buyers: int
    ttl_s: int
    now: dt.datetime
    skus: list[SkuRow]
    next_txn: int = 1
    refunded: list[tuple[int, dt.datetime]] = field(default_factory=list)  # (order id, refunded_at)
    codes: list[str] = field(default_factory=list)  # creator id -> invite code

    def __post_init__(self) -> None:
        self.codes = [""] + [creator_code(cid) for cid in range(1, self.creators + 1)]

    @property
    def tail(self) -> int:
        """The newest orders, placed within the order TTL (some still pending): 0.1%, at least 50."""
        return min(self.orders, max(50, self.orders // 1000))

    def created_at(self, g: int) -> dt.datetime:
        old = self.orders - self.tail
        if g > old:
            return self.now - dt.timedelta(seconds=(self.orders - g + 1) * self.ttl_s * 0.9 / self.tail)
        span = DAYS * 86400 - self.ttl_s
        return self.now - dt.timedelta(days=DAYS) + dt.timedelta(seconds=(g - 1) * span / max(1, old))


def _orders_chunk(plan: OrderPlan, start: int, stop: int, rng: random.Random, sellers: list[int]) -> dict:
    """Rows of orders start..stop-1 for every table they touch. Timestamps go in as text (what
    peewee stores on SQLite, what COPY reads), each formatted once."""
    orders, payments, refunds, txns, postings, events = [], [], [], [], [], []
    codes = plan.codes
    rand = rng.random
    second = dt.timedelta(seconds=1)
    days: dict[int, str] = {}
    picks = rng.choices(plan.skus, weights=[s.weight for s in plan.skus], k=stop - start)
    sold, delivered_share = DELIVERED + PAID + REFUNDED, DELIVERED + PAID
    for g, sku in zip(range(start, stop), picks, strict=True):
        created = plan.created_at(g) + dt.timedelta(microseconds=int(rand() * 999_999) + 1)
        expires = created + dt.timedelta(seconds=plan.ttl_s)
        created_s = str(created)
        day = days.get(created.toordinal())
        if day is None:
            day = days[created.toordinal()] = f"{created:%Y%m%d}"
        no = f"QX{day}{(g * 2654435761) & 0xFFFFFFFF:08X}{g:08X}"
        buyer = plan.creators + 1 + int(plan.buyers * rand() ** 2)
        seller = sellers[int(len(sellers) * rand() ** 3)] if rand() < ATTRIBUTED else None
        code = codes[seller] if seller else None
        quantity = 1 if sku.kind == "topup" else 1 + (rand() < 0.12) + (rand() < 0.04)
        markup = int(rand() * 0.2 * sku.retail) if seller and rand() < MARKUP_SHARE else 0
        unit = sku.retail + markup
        amount = unit * quantity
        account = f"1{30 + int(rand() * 60)}{int(rand() * 10**8):08d}" if sku.kind == "topup" else None
        ip = f"{1 + int(rand() * 223)}.{int(rand() * 256)}.{int(rand() * 256)}.{1 + int(rand() * 254)}"
        r = rand()
        subject = f"order:{g}"
        paid_s = delivered_s = None
        risk = False
        if r < sold:
            status = "paid" if DELIVERED <= r < delivered_share else "delivered"  # refunds flip later
            paid_at = created + (5 + int(rand() * 295)) * second
            paid_s = str(paid_at)
            txn_no = f"4200{day}{g:016d}"
            payments.append((g, PROVIDER, f"wx{g:032x}", txn_no, amount, "paid", created_s, paid_s))
            tid = plan.next_txn
            plan.next_txn += 1
            txns.append((tid, f"payment:{no}", "payment", g, "", paid_s))
            postings += [(tid, CASH, amount), (tid, SALES, -amount)]
            events.append(("order.paid", subject, PROVIDER,
                           f'{{"amount_fen": {amount}, "late": false, "transaction_id": "{txn_no}"}}', paid_s))
            if status == "delivered":
                delivered_s = str(paid_at + (1 + int(rand() * 19)) * second)
                events.append(("order.delivered", subject, "system", f'{{"vouchers": {quantity}}}', delivered_s))
            if r >= delivered_share:
                refunded_at = min(paid_at + dt.timedelta(hours=1 + int(rand() * 143)), plan.now)
                refunded_s = str(refunded_at)
                plan.refunded.append((g, refunded_at))
                reason = REFUND_REASONS[int(rand() * len(REFUND_REASONS))]
                refunds.append((g, f"R{no[1:]}", amount, reason, "operator:support", "succeeded", f"5030{g:024d}",
                                refunded_s, refunded_s))
                tid = plan.next_txn
                plan.next_txn += 1
                txns.append((tid, f"refund:{no}", "refund", g, "", refunded_s))
                postings += [(tid, SALES, amount), (tid, CASH, -amount)]
                ref = f'"{code}"' if code else "null"
                events.append(("order.refunded", subject, "operator:support",
                               f'{{"amount_fen": {amount}, "reason": "{reason}", "ref": {ref}}}', refunded_s))
            elif rand() < RISK_HOLD:
                risk = True
                events.append(("order.risk_hold", subject, "operator:risk", '{"reason": "review"}', paid_s))
        else:
            status = "pending" if expires > plan.now else "expired"
            if rand() < 0.5:
                payments.append((g, PROVIDER, f"wx{g:032x}", None, amount, "prepared", created_s, None))
            if status == "expired":
                events.append(("order.expired", subject, "system", "{}", str(expires)))
        orders.append((g, no, buyer, sku.id, quantity, unit, amount, status, code, seller, markup * quantity,
                       sku.supply * quantity, account, ip, risk, created_s, str(expires), paid_s, delivered_s))
    return {"order": (_ORDER_COLUMNS, orders), "payment": (_PAYMENT_COLUMNS, payments),
            "refund": (_REFUND_COLUMNS, refunds), "ledger_transaction": (_TXN_COLUMNS, txns),
            "posting": (_POSTING_COLUMNS, postings), "event": (_EVENT_COLUMNS, events)}


# ---- the whole build --------------------------------------------------------------------------


def buyers_for(orders: int) -> int:
    return max(10, min(orders // 4, 250_000))


def _load_orders(w: Writer, plan: OrderPlan, rng: random.Random, sellers: list[int], *, skip_foreign_keys: bool,
                 log: Callable[[str], None]) -> None:
    from models.db import db

    started = time.perf_counter()
    orders = plan.orders
    bounds = [(start, min(start + CHUNK, orders + 1)) for start in range(1, orders + 1, CHUNK)]
    # The next chunk is generated in a thread while this one is written (the driver lets go of
    # the GIL while the server takes the rows); one chunk ahead at most, so memory stays bounded.
    with ThreadPoolExecutor(1, thread_name_prefix="admin-rows") as ahead:
        pending = ahead.submit(_orders_chunk, plan, *bounds[0], rng, sellers)
        for i, (_, stop) in enumerate(bounds):
            tables = pending.result()
            if i + 1 < len(bounds):
                pending = ahead.submit(_orders_chunk, plan, *bounds[i + 1], rng, sellers)
            with db.atomic():
                w.begin(skip_foreign_keys=skip_foreign_keys)
                for table, (columns, rows) in tables.items():
                    w.rows(table, columns, rows)
            del tables
            if stop - 1 == orders or (stop - 1) % 100_000 < CHUNK:
                log(f"orders: {stop - 1}/{orders} ({time.perf_counter() - started:.1f} s)")


def build(postgres: bool, *, orders: int, creators: int, policy: PayoutPolicy, ttl_s: int = 900,
          seed: int = 7, log: Callable[[str], None] = log_nothing) -> dict[str, float]:
    """Fill the (fresh, migrated) scratch database; returns seconds per phase."""
    from models import reversals, settlement
    from models.db import db, execute, utcnow

    rng = random.Random(seed)
    now = utcnow()
    w = Writer(postgres)
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    tree = creator_tree(creators, rng)
    buyers = buyers_for(orders)
    with db.atomic():
        w.begin()
        _people(w, creators, buyers, tree, rng, now)
        skus = _catalog(w, rng, now)
    phases["people_s"] = time.perf_counter() - t0
    log(f"{creators} creators, {buyers} buyers, {len(skus)} SKUs in {phases['people_s']:.1f} s")

    t0 = time.perf_counter()
    indexes = secondary_indexes(postgres, LOADED)
    drop_indexes(indexes)
    skip_fk = is_superuser(postgres)
    sellers = list(range(1, creators + 1))
    rng.shuffle(sellers)  # who sells most is not who joined first
    plan = OrderPlan(orders=orders, creators=creators, buyers=buyers, ttl_s=ttl_s, now=now, skus=skus)
    try:
        _load_orders(w, plan, rng, sellers, skip_foreign_keys=skip_fk, log=log)
    except BaseException:
        with contextlib.suppress(Exception):  # leave a usable database (the tests share theirs)
            create_indexes(postgres, indexes)
        raise
    log("writing (s): " + ", ".join(f"{t} {v:.1f}" for t, v in sorted(w.seconds.items(), key=lambda x: -x[1])))
    started = time.perf_counter()
    create_indexes(postgres, indexes)
    log(f"{len(indexes)} indexes built in {time.perf_counter() - started:.1f} s")
    if postgres:
        for table in ("user", "creator", "product", "sku", "order", "ledger_transaction"):
            execute(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                    f'(SELECT COALESCE(max(id), 1) FROM "{table}"))')
        for table in ("user", "creator", "order", "payment", "ledger_transaction", "posting", "event"):
            execute(f'ANALYZE "{table}"')
    phases["orders_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    settled = settlement.settle(policy, batch=10_000)
    if postgres:
        execute("ANALYZE settlement")
        execute("ANALYZE commission")
    phases["settle_s"] = time.perf_counter() - t0
    log(f"settled {settled.orders} orders, {settled.lines} commission lines in {phases['settle_s']:.1f} s")
    t0 = time.perf_counter()
    released = settlement.release_due(policy, now=now, batch=50_000)
    phases["release_s"] = time.perf_counter() - t0
    log(f"released {released} orders past the refund window in {phases['release_s']:.1f} s")

    t0 = time.perf_counter()
    _flip_refunded(postgres, plan.refunded)
    reversed_ = reversals.reverse_refunded(batch=5000)
    if postgres:
        for table in ("order", "settlement", "commission", "ledger_transaction", "posting", "event"):
            execute(f'ANALYZE "{table}"')
    phases["refunds_s"] = time.perf_counter() - t0
    log(f"{len(plan.refunded)} refunds, {reversed_} commissions reversed or clawed back "
        f"in {phases['refunds_s']:.1f} s")
    return phases


def _flip_refunded(postgres: bool, refunded: list[tuple[int, dt.datetime]]) -> None:
    from models.db import db, execute

    for at in range(0, len(refunded), CHUNK):
        part = refunded[at:at + CHUNK]
        with db.atomic():
            if postgres:
                execute('UPDATE "order" o SET status = %s, refunded_at = v.t '
                        "FROM unnest(%s::bigint[], %s::timestamp[]) AS v(id, t) WHERE o.id = v.id",
                        ("refunded", [i for i, _ in part], [t for _, t in part]))
            else:
                db.connection().executemany('UPDATE "order" SET status = ?, refunded_at = ? WHERE id = ?',
                                            [("refunded", t, i) for i, t in part])
