"""The shop `qianxing bench risk` scores: honest traffic plus labelled, injected fraud.

`plan(...)` builds everything in memory (deterministic for a seed); qianxing/bench/risk_load.py
loads it into the (scratch) database.

Honest traffic: shoppers who are not creators, each with their own device (one in ten sends no
device id), their own home IP or, for one in four, addresses of a mobile-carrier NAT pool that
many shoppers share (spread so that no 10-minute window on one NAT address has more than 5
orders or more than 2 new accounts: `_spread_nat`), accounts created up to a year before
their first order (4% within the day: new, small baskets), payer = their own openid, phones of
normal carriers for 40% (and 1% on a virtual-operator segment: a weight, never a hold alone).

Injected fraud, each order labelled with the rule code expected to catch it (`Plan.labels`);
every 4th group of a windowed pattern is a boundary case: exactly the rule's minimum, spread
over 95% of its window (or an account 20-23 hours old, an amount of exactly 50,000 fen):
  self_purchase       the seller's own account buys through their link; or an alt account on
                      the seller's parent's device (seen on the parent's own earlier order); or
                      an alt account with the seller's upline's phone
  circular_buying     rings: 2-3 downlines of creator X buy 4 times from X within 3 days on
                      one shared device
  burst_orders        12 orders in 8 minutes from one IP (or one device), old accounts
                      (boundary: 10 in 9.5 minutes)
  burst_new_accounts  6 accounts created within the hour order from one device (or IP) in
                      8 minutes (boundary: 5 accounts 20-23 hours old in 9.5 minutes)
  shared_payer        4 old accounts paid by one payer identity within 12 hours (boundary: 3
                      within 22.8 hours)
  new_account_big     an account under 20 hours old buys >= 50,000 fen (boundary: 23 hours
                      old, exactly 50,000)
  virtual_segment     3 accounts on virtual-operator numbers (170/171/162/165/167) paid by one
                      payer (so the segment adds to shared_payer's weight)
Honest look-alikes (labelled honest, `Plan.kinds`): two family members sharing a home IP once
(`family`), a parent paying for their own and a child's account (`family_payer`: 2 accounts,
one payer), a creator's genuine big buyer (old account, four >= 50,000 fen orders, own device:
`big_buyer`), a shopper buying three times in a week from one creator on their own device
(`repeat_buyer`), a creator's own purchase without a referrer (`upline_own`: the device the
self-purchase alt accounts reuse), and near misses one short of a rule (`shared_wifi`: 9
orders on one IP in 10 minutes; `new_friends`: 4 new accounts on one IP; `under_amount`: a new
account buying 49,900 fen; `day_old_big`: a big order 25-30 hours after sign-up).
"""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from dataclasses import dataclass, field

HONEST = "honest"
RULES = ("circular_buying", "self_purchase", "burst_orders", "burst_new_accounts", "shared_payer",
         "new_account_big", "virtual_segment")
# Share of the fraud orders per pattern, and orders per injected group.
SHARES = {"self_purchase": 0.20, "circular_buying": 0.15, "burst_orders": 0.15, "burst_new_accounts": 0.15,
          "shared_payer": 0.12, "new_account_big": 0.10, "virtual_segment": 0.13}
GROUP = {"self_purchase": 1, "circular_buying": 4, "burst_orders": 12, "burst_new_accounts": 6,
         "shared_payer": 4, "new_account_big": 1, "virtual_segment": 3}
DAYS = 30
NORMAL_SEGMENTS = ("138", "139", "150", "151", "186", "187", "135", "136", "158", "188")
VIRTUAL_SEGMENTS = ("170", "171", "162", "165", "167")
# (retail, supply) fen. Everyday SKUs 1-6 (two of the dearest stay under 50,000 fen); then a big
# one, one at exactly the new-account threshold and one just under it.
SKUS = ((990, 600), (1990, 1200), (2990, 1800), (4990, 3100), (9900, 6400), (19900, 13500),
        (88800, 60000), (50000, 35000), (49900, 35000))
EVERYDAY, BIG, EXACT, UNDER = 6, 7, 8, 9
NAT_POOL = 400  # carrier NAT addresses shared by the mobile shoppers
NAT_SHARE = 0.25
NAT_MAX_ORDERS, NAT_MAX_NEW = 5, 2  # per address and 10 minutes (rules fire at 10 and 5)


def creator_tree(creators: int, rng: random.Random) -> list[tuple[int, int, int | None, int | None]]:
    """(id, rank, parent, grandparent): a random recursive tree (each creator invited by a
    uniformly chosen earlier one; 2% invited by nobody), star levels 0-6."""
    parent: list[int | None] = [None] * (creators + 1)
    rows = []
    for cid in range(1, creators + 1):
        p = rng.randrange(1, cid) if cid > 1 and rng.random() >= 0.02 else None
        parent[cid] = p
        rows.append((cid, rng.randrange(0, 7), p, parent[p] if p is not None else None))
    return rows


@dataclass
class Order:
    at: dt.datetime  # placed (= the signal's time); paid a little later
    user: int
    seller: int | None
    sku: int  # 1-based index into SKUS
    qty: int
    ip: str
    device: str | None
    payer: str  # the payer openid
    label: str = HONEST
    kind: str = HONEST  # the pattern: honest, a look-alike kind, or the fraud variant
    pay_delay_s: int = 60


@dataclass
class Plan:
    now: dt.datetime
    users: dict[int, dt.datetime] = field(default_factory=dict)  # id -> created_at
    creators: list[tuple[int, int, int | None, int | None]] = field(default_factory=list)
    phones: dict[int, str] = field(default_factory=dict)  # user -> phone number
    orders: list[Order] = field(default_factory=list)  # sorted by `at`; order id = index + 1
    labels: dict[int, str] = field(default_factory=dict)  # order id -> expected rule or HONEST
    kinds: dict[int, str] = field(default_factory=dict)  # order id -> pattern


class _Maker:
    def __init__(self, *, orders: int, creators: int, fraud_share: float, seed: int, now: dt.datetime) -> None:
        self.rng = random.Random(seed)
        self.plan = Plan(now=now)
        self.target, self.creators, self.fraud_share = orders, creators, fraud_share
        self.start = now - dt.timedelta(days=DAYS)
        self.next_user = creators + 1
        self.ip_seq = 0
        self.phone_seq = 0
        self.orders: list[Order] = []
        self.tree = creator_tree(creators, self.rng)
        self.parent = {cid: p for cid, _, p, _ in self.tree}
        self.grand = {cid: g for cid, _, _, g in self.tree}
        self.children: dict[int, list[int]] = defaultdict(list)
        for cid, _, p, _ in self.tree:
            if p is not None:
                self.children[p].append(cid)
        self.used: set[int] = set()  # creators already part of an injected pattern

    # ---- identities ----
    def when(self, lo_h: float = 1.0) -> dt.datetime:
        span = DAYS * 86400 - lo_h * 3600
        return self.start + dt.timedelta(seconds=self.rng.uniform(0, span))

    def user(self, created: dt.datetime) -> int:
        uid = self.next_user
        self.next_user += 1
        self.plan.users[uid] = created
        return uid

    def ip(self) -> str:
        """A fresh, never shared address (a home line)."""
        self.ip_seq += 1
        n = 0x0B000000 + self.ip_seq * 7  # 11.0.0.0 upwards, spread over many /24s
        return f"{n >> 24 & 255}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255 or 1}"

    def phone(self, uid: int, segments: tuple[str, ...] = NORMAL_SEGMENTS) -> str:
        self.phone_seq += 1
        number = f"{self.rng.choice(segments)}{self.phone_seq:08d}"
        self.plan.phones[uid] = number
        return number

    def old(self, at: dt.datetime) -> dt.datetime:
        return at - dt.timedelta(days=self.rng.uniform(2, 365))

    def new(self, at: dt.datetime, hours: float) -> dt.datetime:
        return at - dt.timedelta(minutes=self.rng.uniform(5, hours * 60))

    def seller(self) -> int:
        return self.rng.randint(1, self.creators)

    def small(self) -> int:
        return self.rng.randint(1, EVERYDAY)

    def add(self, order: Order) -> None:
        order.pay_delay_s = self.rng.randint(15, 300)
        self.orders.append(order)

    def fresh_creator(self, ok: object = None) -> int | None:
        """A creator not yet used by a pattern (and passing `ok`), or None after 200 tries."""
        for _ in range(200):
            cid = self.seller()
            if cid not in self.used and (ok is None or ok(cid)):  # type: ignore[operator]
                return cid
        return None

    # ---- injected fraud ----
    def self_purchase(self, i: int) -> None:
        variant = ("own_link", "upline_device", "upline_phone")[i % 3]
        at = self.when()
        if variant == "own_link":
            s = self.fresh_creator()
            if s is None:
                return
            self.used.add(s)
            self.add(Order(at, s, s, self.small(), 1, self.ip(), f"dev-u{s}", f"bench-u{s}",
                           "self_purchase", "self_purchase:own_link"))
            return
        s = self.fresh_creator(lambda c: self.parent[c] is not None and self.parent[c] not in self.used)
        if s is None:
            return
        p = self.parent[s]
        assert p is not None
        self.used.update((s, p))
        alt = self.user(self.old(at))
        if variant == "upline_device":
            # the parent's own purchase (no referrer) shows the device on the parent's account
            seen = self.when()
            self.add(Order(seen, p, None, self.small(), 1, self.ip(), f"dev-u{p}", f"bench-u{p}",
                           HONEST, "upline_own"))
            self.add(Order(at, alt, s, self.small(), 1, self.ip(), f"dev-u{p}", f"bench-u{alt}",
                           "self_purchase", "self_purchase:upline_device"))
        else:
            up = self.grand[s] if self.grand[s] is not None and self.grand[s] not in self.used else p
            self.used.add(up)
            number = self.plan.phones.get(up) or self.phone(up)
            self.plan.phones[alt] = number
            self.add(Order(at, alt, s, self.small(), 1, self.ip(), f"dev-alt{alt}", f"bench-u{alt}",
                           "self_purchase", "self_purchase:upline_phone"))

    def circular_buying(self, i: int) -> None:
        x = self.fresh_creator(lambda c: len([k for k in self.children[c] if k not in self.used]) >= 2)
        if x is None:
            return
        kids = [k for k in self.children[x] if k not in self.used][: 2 + i % 2]
        self.used.update((x, *kids))
        at, device = self.when(80), f"ring-{i}"
        for n in range(4):
            buyer = kids[n % len(kids)]
            self.add(Order(at + dt.timedelta(hours=self.rng.uniform(0, 72)), buyer, x, self.small(), 1,
                           self.ip(), device, f"bench-u{buyer}", "circular_buying", "circular_buying"))

    def spread(self, i: int, n: int, seconds: float) -> list[float]:
        """Offsets of n events: random within `seconds`, or (every 4th group, a boundary case)
        exactly the rule's minimum spread evenly over 95% of its window."""
        if i % 4 == 3:
            return [k * seconds * 0.95 / (n - 1) for k in range(n)]
        return [self.rng.uniform(0, seconds * 0.8) for _ in range(n)]

    def burst_orders(self, i: int) -> None:
        at, s = self.when(), self.seller()
        accounts = [self.user(self.old(at)) for _ in range(6)]
        ip, device = self.ip(), f"burst-{i}"
        for n, offset in enumerate(self.spread(i, 10 if i % 4 == 3 else 12, 600)):
            u = accounts[n % 6]
            self.add(Order(at + dt.timedelta(seconds=offset), u, s, self.small(), 1,
                           ip if i % 2 == 0 else self.ip(), device if i % 2 else f"dev-b{i}-{n}",
                           f"bench-u{u}", "burst_orders", "burst_orders:" + ("ip" if i % 2 == 0 else "device")))

    def burst_new_accounts(self, i: int) -> None:
        at, s = self.when(), self.seller()
        ip, device = self.ip(), f"farm-{i}"
        for offset in self.spread(i, 5 if i % 4 == 3 else 6, 600):
            t = at + dt.timedelta(seconds=offset)
            u = self.user(t - dt.timedelta(hours=self.rng.uniform(20, 23)) if i % 4 == 3 else self.new(t, 1))
            self.add(Order(t, u, s, self.small(), 1, ip if i % 2 else self.ip(),
                           device if i % 2 == 0 else f"dev-n{u}", f"bench-u{u}", "burst_new_accounts",
                           "burst_new_accounts:" + ("device" if i % 2 == 0 else "ip")))

    def shared_payer(self, i: int, size: int = 4, label: str = "shared_payer",
                     segments: tuple[str, ...] | None = None) -> None:
        at, s = self.when(25), self.seller()
        payer = f"payer-{label}-{i}"
        edge = label == "shared_payer" and i % 4 == 3
        for offset in self.spread(i, 3, 86_400) if edge else self.spread(0, size, 15 * 3600):
            t = at + dt.timedelta(seconds=offset)
            u = self.user(self.old(t))
            if segments:
                self.phone(u, segments)
            self.add(Order(t, u, s, self.small(), 1, self.ip(), f"dev-u{u}", payer, label, label))

    def new_account_big(self, i: int) -> None:
        at = self.when()
        u = self.user(at - dt.timedelta(hours=23) if i % 4 == 3 else self.new(at, 20))
        self.add(Order(at, u, self.seller(), BIG if i % 4 != 3 else EXACT, 1, self.ip(), f"dev-u{u}", f"bench-u{u}",
                       "new_account_big", "new_account_big"))

    def virtual_segment(self, i: int) -> None:
        self.shared_payer(i, size=3, label="virtual_segment", segments=VIRTUAL_SEGMENTS)

    # ---- honest traffic ----
    def lookalikes(self) -> None:
        n = self.target
        for _ in range(max(2, n // 1000)):  # family members sharing the home IP once
            at, ip, s = self.when(), self.ip(), self.seller()
            for k in range(2):
                u = self.user(self.old(at))
                self.add(Order(at + dt.timedelta(minutes=k * self.rng.uniform(1, 5)), u, s, self.small(), 1,
                               ip, f"dev-u{u}", f"bench-u{u}", HONEST, "family"))
        for _ in range(max(2, n // 2000)):  # a parent paying for a child's account too (2 accounts, 1 payer)
            at, s = self.when(14), self.seller()
            first = self.user(self.old(at))
            for u in (first, self.user(self.old(at))):
                self.add(Order(at + dt.timedelta(hours=self.rng.uniform(0, 12)), u, s, self.small(), 1, self.ip(),
                               f"dev-u{u}", f"bench-u{first}", HONEST, "family_payer"))
        for _ in range(max(2, n // 5000)):  # near misses, one short of a rule each
            at, s, ip = self.when(), self.seller(), self.ip()
            for offset in self.spread(3, 9, 600):  # 9 orders on a shared Wi-Fi in 10 minutes
                u = self.user(self.old(at))
                self.add(Order(at + dt.timedelta(seconds=offset), u, s, self.small(), 1, ip, f"dev-u{u}",
                               f"bench-u{u}", HONEST, "shared_wifi"))
            at, ip = self.when(), self.ip()
            for offset in self.spread(3, 4, 600):  # 4 friends sign up and buy on one IP
                t = at + dt.timedelta(seconds=offset)
                u = self.user(self.new(t, 1))
                self.add(Order(t, u, s, self.small(), 1, ip, f"dev-u{u}", f"bench-u{u}", HONEST, "new_friends"))
            at = self.when()
            u = self.user(self.new(at, 20))  # a new account just under the amount
            self.add(Order(at, u, s, UNDER, 1, self.ip(), f"dev-u{u}", f"bench-u{u}", HONEST, "under_amount"))
            at = self.when()
            u = self.user(at - dt.timedelta(hours=self.rng.uniform(25, 30)))  # big, a day and more after sign-up
            self.add(Order(at, u, s, BIG, 1, self.ip(), f"dev-u{u}", f"bench-u{u}", HONEST, "day_old_big"))
        for _ in range(max(2, n // 2000)):  # a creator's genuine big buyer
            at, s = self.when(), self.seller()
            u = self.user(at - dt.timedelta(days=self.rng.uniform(60, 365)))
            ip = self.ip()
            for _k in range(4):
                self.add(Order(self.when(), u, s, BIG, self.rng.randint(1, 2), ip, f"dev-u{u}",
                               f"bench-u{u}", HONEST, "big_buyer"))
        for _ in range(max(2, n // 1000)):  # three orders in a week from one creator, own device
            at, s = self.when(170), self.seller()
            u = self.user(self.old(at))
            ip = self.ip()
            for _k in range(3):
                self.add(Order(at + dt.timedelta(hours=self.rng.uniform(0, 160)), u, s, self.small(), 1, ip,
                               f"dev-u{u}", f"bench-u{u}", HONEST, "repeat_buyer"))

    def honest(self, budget: int) -> None:
        rng = self.rng
        while budget > 0:
            k = min(budget, 1 + int(rng.expovariate(0.45)))
            times = sorted(self.when() for _ in range(k))
            fresh = rng.random() < 0.04
            u = self.user(self.new(times[0], 20) if fresh else self.old(times[0]))
            roll = rng.random()
            if roll < 0.40:
                self.phone(u)
            elif roll < 0.41:
                self.phone(u, VIRTUAL_SEGMENTS)
            device = None if rng.random() < 0.1 else f"dev-u{u}"
            mobile = rng.random() < NAT_SHARE
            home = self.ip()
            for t in times:
                ip = f"nat-{rng.randrange(NAT_POOL)}" if mobile else home
                seller = None if rng.random() < 0.05 else self.seller()
                self.add(Order(t, u, seller, self.small(), rng.choice((1, 1, 1, 2)), ip, device,
                               f"bench-u{u}", HONEST, "nat" if mobile else HONEST))
            budget -= k

    def _spread_nat(self) -> None:
        """Give NAT shoppers real carrier addresses, and move an order to a fresh address of its
        own whenever its NAT address already has NAT_MAX_ORDERS orders (or NAT_MAX_NEW new
        accounts) in the 10 minutes around it: honest traffic must not look like a burst."""
        window = dt.timedelta(minutes=10)
        placed: dict[str, list[tuple[dt.datetime, bool]]] = defaultdict(list)
        nat_ips = {f"nat-{k}": f"100.{64 + k // 250}.{k % 250}.{1 + k % 7}" for k in range(NAT_POOL)}
        for order in sorted((o for o in self.orders if o.ip.startswith("nat-")), key=lambda o: o.at):
            fresh = order.at - self.plan.users[order.user] < dt.timedelta(hours=24)
            near = [f for t, f in placed[order.ip] if order.at - t < window]
            placed[order.ip] = [(t, f) for t, f in placed[order.ip] if order.at - t < window]
            if len(near) >= NAT_MAX_ORDERS or (fresh and sum(near) >= NAT_MAX_NEW):
                order.ip = self.ip()
                continue
            placed[order.ip].append((order.at, fresh))
            order.ip = nat_ips[order.ip]

    def build(self) -> Plan:
        for cid, _, _, _ in self.tree:  # creators' own accounts, half with a phone
            self.plan.users[cid] = self.plan.now - dt.timedelta(days=self.rng.uniform(40, 400))
            if self.rng.random() < 0.5:
                self.phone(cid)
        fraud = round(self.target * self.fraud_share)
        for code in RULES:
            groups = max(1, round(fraud * SHARES[code] / GROUP[code])) if fraud else 0
            for i in range(groups):
                getattr(self, code)(i)
        self.lookalikes()
        self.honest(self.target - len(self.orders))
        self._spread_nat()
        self.orders.sort(key=lambda o: (o.at, o.user))
        self.plan.creators = self.tree
        self.plan.orders = self.orders
        for oid, order in enumerate(self.orders, start=1):
            self.plan.labels[oid] = order.label
            self.plan.kinds[oid] = order.kind
        return self.plan


def plan(*, orders: int, creators: int, fraud_share: float, seed: int = 15,
         now: dt.datetime | None = None) -> Plan:
    from models.db import utcnow

    if orders < 100 or creators < 20 or not 0 <= fraud_share <= 0.5:
        raise ValueError("at least 100 orders and 20 creators; a fraud share of 0-0.5")
    return _Maker(orders=orders, creators=creators, fraud_share=fraud_share, seed=seed,
                  now=now or utcnow()).build()


def price(sku: int) -> tuple[int, int]:
    """(retail, supply) of a plan's SKU index."""
    return SKUS[sku - 1]


def counts(p: Plan) -> dict[str, int]:
    """Orders per label (HONEST and each rule code)."""
    found: dict[str, int] = defaultdict(int)
    for label in p.labels.values():
        found[label] += 1
    return dict(found)
