"""Test data, made through the real services: buyers, creators, SKUs with keys, orders (written
directly, placed and paid through the services, or through the mini-program API) and activity.

Plain functions and small classes, no pytest magic: fixtures in conftest.py wrap them. Every
test module takes its data from here instead of writing its own copy.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os

from models import activity, catalog, ledger, network, orders, payments, vault, withdrawals
from models.activity import TrackEvent
from models.catalog import Kind, Sku
from models.db import db, utcnow
from models.delivery import Voucher
from models.network import Creator
from models.orders import Order, OrderPolicy, OrderRequest
from models.users import User, get_or_create_by_openid
from models.withdrawals import Method, Withdrawal, WithdrawPolicy
from tasks import maintenance

_n = itertools.count(1)

# A policy that never limits a test's orders (the limits have their own tests).
POLICY = OrderPolicy(ttl_seconds=900, max_unpaid_per_user=1000, max_unpaid_per_ip=1000,
                     max_quantity=10)


# -- people -------------------------------------------------------------------------------------

def buyer(openid: str = "buyer-1") -> User:
    """The mini-program user with this openid, created on first call."""
    with db.connection_context():
        return get_or_create_by_openid(openid)


def creator(openid: str | None = None, *, name: str = "", parent: Creator | None = None,
            rank: int = 0, active: bool = True, user: User | None = None,
            code: str | None = None) -> Creator:
    """A creator through the real join and bind services: `user` (or the buyer `openid`, a fresh
    one by default) joins under `name` and is bound to `parent`'s code; a star level, an active
    flag and an invite `code` other than the allocated one are then set directly."""
    with db.connection_context():
        made = network.become_creator(user or buyer(openid or f"creator-{next(_n)}"), name=name)
        if parent is not None:
            made = network.bind(made, parent.code, "typed")
        changes = {"rank": rank} if rank else {}
        if not active:
            changes["active"] = False
        if code is not None:
            changes["code"] = code
        if changes:
            Creator.update(**changes).where(Creator.id == made.id).execute()
        return Creator.get_by_id(made.id)


def named(openid: str | None = None, **kw) -> Creator:  # noqa: ANN003
    """A creator whose name is its buyer's openid (a fresh one by default)."""
    openid = openid or f"creator-{next(_n)}"
    return creator(openid, name=openid, **kw)


def chain(*ranks: int, prefix: str = "c") -> list[Creator]:
    """A line of creators, each invited by the one before: chain(...)[-1] is the deepest."""
    made: list[Creator] = []
    for i, rank in enumerate(ranks):
        made.append(named(f"{prefix}{i}", parent=made[-1] if made else None, rank=rank))
    return made


def fresh(c: Creator) -> Creator:
    """The creator row as stored now."""
    with db.connection_context():
        return Creator.get_by_id(c.id)


def earn(c: Creator, fen: int) -> None:
    """Money made available the way settlement's release posts it (expense -> available)."""
    with db.connection_context(), db.atomic():
        assert ledger.post(f"test-earn:{c.id}:{next(_n)}", "release", [
            ledger.Leg(ledger.COMMISSION_EXPENSE, fen),
            ledger.Leg(ledger.creator_account(c.id, ledger.AVAILABLE), -fen)])


# Withdrawals due at once (no T+1 delay), reviewed above 5,000 yuan.
DUE_NOW = WithdrawPolicy(min_fen=10_000, fee_bp=100, delay_hours=0, review_above_fen=500_000)


def due_withdrawal(amount: int = 20_000, openid: str | None = None) -> Withdrawal:
    """A creator with `amount` available withdraws it all to the wallet; due at once."""
    made = creator(openid)
    earn(made, amount)
    with db.connection_context():
        return withdrawals.request_withdrawal(made, amount, Method.WALLET, policy=DUE_NOW)


# -- catalog ------------------------------------------------------------------------------------

class Shop:
    """Catalog data: SKUs of each kind, card keys imported into the vault."""

    def __init__(self) -> None:
        self._n = 0

    def card_sku(self, keys: int = 5, price: int = 1990, code: str | None = None) -> Sku:
        self._n += 1
        code = code or f"CARD-{self._n}"
        with db.connection_context():
            product = catalog.create_product(f"Product {code}")
            sku = catalog.create_sku(product, code=code, name=f"会员卡 {code}", kind=Kind.CARD_KEY,
                                     supply_price_fen=price // 2, retail_price_fen=price)
            vault.import_keys(sku, [(i, f"{code}-KEY-{i:06d}-SECRET") for i in range(1, keys + 1)])
        return sku

    def counter_sku(self, kind: Kind, stock: int = 10, price: int = 4980, code: str | None = None,
                    serial: str = "SERIAL-CODE-123456") -> Sku:
        self._n += 1
        code = code or f"{kind.value.upper()}-{self._n}"
        with db.connection_context():
            product = catalog.create_product(f"Product {code}")
            sku = catalog.create_sku(product, code=code, name=f"商品 {code}", kind=kind,
                                     supply_price_fen=price // 2, retail_price_fen=price, stock=stock)
            if kind == Kind.SERIAL:
                vault.seal_serial(sku, serial)
        return sku

    def bundle(self, parts: list[tuple[Sku, int]], price: int = 3000, code: str = "BUNDLE") -> Sku:
        with db.connection_context():
            product = catalog.create_product("Bundle")
            return catalog.create_sku(product, code=code, name="礼包", kind=Kind.BUNDLE,
                                      supply_price_fen=price // 2, retail_price_fen=price,
                                      bundle=parts)


def make_sku(shop: Shop, *, price: int = 10_000, commission_bp: int = 1000) -> Sku:
    """A card key SKU (one key) with its own commission rate."""
    sku = shop.card_sku(keys=1, price=price)
    with db.connection_context():
        Sku.update(commission_bp=commission_bp).where(Sku.id == sku.id).execute()
        return Sku.get_by_id(sku.id)


# -- orders -------------------------------------------------------------------------------------

def paid_order(seller: Creator | None, sku: Sku, *, amount: int = 10_000, cost: int = 5_000,
               markup: int = 0, live_id: int | None = None, risk_hold: bool = False,
               paid_at: dt.datetime | None = None) -> int:
    """A paid order attributed to `seller`, written directly (placement and payment have their
    own tests; settlement reads only these columns)."""
    n = next(_n)
    now = utcnow()
    with db.connection_context():
        shopper = buyer("settle-shopper")
        return Order.create(
            no=f"QXT{n:012d}", user=shopper.id, sku=sku.id, quantity=1, unit_price_fen=amount,
            amount_fen=amount, status="paid", ref_code=seller.code if seller else None,
            seller_id=seller.id if seller else None, markup_fen=markup, cost_fen=cost,
            live_id=live_id, client_ip="127.0.0.1", risk_hold=risk_hold, expires_at=now,
            paid_at=paid_at or now).id


def mark_refunded(*order_ids: int) -> None:
    """The order state a completed refund leaves (the refund path has its own tests)."""
    with db.connection_context():
        Order.update(status="refunded", refunded_at=utcnow()).where(Order.id.in_(order_ids)).execute()


def unpaid(sku: Sku | str, openid: str = "buyer-1", quantity: int = 1, *, user: User | None = None,
           policy: OrderPolicy = POLICY, client_ip: str = "10.0.0.1", **request) -> Order:  # noqa: ANN003
    """A new order placed through the order service (`request`: account, ref, live, ...)."""
    code = sku if isinstance(sku, str) else sku.code
    with db.connection_context():
        order, created = orders.place_order(user or buyer(openid), OrderRequest(code, quantity, **request),
                                            policy, client_ip=client_ip)
    assert created
    return order


def paid(sku: Sku | str, openid: str = "buyer-1", quantity: int = 1, account: str | None = None,
         dispatch: bool = True, *, user: User | None = None, ref: str | None = None,
         live: int | None = None, policy: OrderPolicy = POLICY,
         client_ip: str = "10.0.0.1") -> Order:
    """Place and pay an order through the services the way the webhook does (confirm, then,
    with `dispatch`, hand the payment to delivery)."""
    order = unpaid(sku, openid, quantity, user=user, policy=policy, client_ip=client_ip,
                   account=account, ref=ref, live=live)
    with db.connection_context():
        order_id, outcome = payments.confirm_payment(order.no, f"tx-{order.no}",
                                                     order.amount_fen, source="test")
    if dispatch:
        maintenance.dispatch_payment(order_id, outcome)
    return order


def sell(rt, sku_code: str, ref: str | None, user: User | None = None, openid: str = "shopper") -> int:  # noqa: ANN001
    """A buyer orders through `ref` under the runtime's policy and pays (the path a payment
    notification takes); the order's id."""
    return paid(sku_code, openid, dispatch=False, user=user, ref=ref, policy=rt.policy,
                client_ip="127.0.0.1").id


ORDERS = "/api/v1/orders"


def api_login(client, fake_wechat, openid: str = "buyer-1") -> dict[str, str]:  # noqa: ANN001
    """Log a shopper in through the real jscode2session path; returns auth headers."""
    code = f"code-{openid}-{next(_n)}-{os.getpid()}"
    fake_wechat.register_code(code, openid)
    resp = client.post("/api/v1/auth/login", json={"code": code})
    assert resp.status_code == 200, resp.json
    return {"Authorization": f"Bearer {resp.json['token']}"}


def api_place(client, auth: dict, sku: Sku | str, quantity: int = 1, key: str | None = None,  # noqa: ANN001
              **extra) -> dict:  # noqa: ANN003
    """Place an order through the API (with an Idempotency-Key when `key` is given)."""
    code = sku if isinstance(sku, str) else sku.code
    headers = {**auth, "Idempotency-Key": key} if key is not None else auth
    resp = client.post(ORDERS, json={"sku": code, "quantity": quantity, **extra}, headers=headers)
    assert resp.status_code == 201, resp.json
    return resp.json


def api_pay(client, fake_pay, auth: dict, order: dict) -> None:  # noqa: ANN001
    """Pay an order the way the mini-program does: /pay, then WeChat Pay's notification."""
    resp = client.post(f"{ORDERS}/{order['id']}/pay", headers=auth)
    assert resp.status_code == 200, resp.json
    assert fake_pay.notify_acknowledged(fake_pay.pay(order["no"]))


def api_order(client, auth: dict, sku: Sku | str, quantity: int = 1, **extra) -> dict:  # noqa: ANN001, ANN003
    """Place an order and create its WeChat Pay order through the API (not paid yet)."""
    order = api_place(client, auth, sku, quantity, **extra)
    pay = client.post(f"{ORDERS}/{order['id']}/pay", headers=auth)
    assert pay.status_code == 200, pay.json
    return order


def api_buy(client, fake_pay, auth: dict, sku: Sku | str, ref: str | None = None, **extra) -> dict:  # noqa: ANN001, ANN003
    """Order through the API (through a creator's `ref`, if given) and pay it the way the
    mini-program does: /pay, then WeChat Pay's signed notification to the real notify endpoint."""
    order = api_place(client, auth, sku, **({"ref": ref} if ref is not None else {}), **extra)
    api_pay(client, fake_pay, auth, order)
    return order


def api_paid(client, login, fake_pay, sku: Sku | str, openid: str, **extra) -> dict:  # noqa: ANN001, ANN003
    """Log `openid` in, order through the API and pay (as api_buy)."""
    return api_buy(client, fake_pay, login(openid), sku, **extra)


# -- reading back -------------------------------------------------------------------------------

def status(order_id: int) -> str:
    with db.connection_context():
        return Order.get_by_id(order_id).status


def vouchers(order_id: int) -> list[Voucher]:
    with db.connection_context():
        return list(Voucher.select().where(Voucher.order == order_id).order_by(Voucher.seq))


def sent_to(fake_wechat, openid: str) -> list[dict]:  # noqa: ANN001
    """The subscribe messages the fake WeChat API was asked to send to `openid`."""
    return [m for m in fake_wechat.subscribe_messages if m["touser"] == openid]


# -- activity -----------------------------------------------------------------------------------

def play(code: str, event_id: str | None = None, kind: str = "video_play", ref: str = "v1",
         count: int = 1, when: dt.datetime | None = None) -> TrackEvent:
    """One activity event for the creator with invite code `code` (five minutes ago)."""
    return TrackEvent(event_id or f"e-{next(_n)}", code, kind, ref, count,
                      when or utcnow() - dt.timedelta(minutes=5))


def plays(c: Creator, count: int = 1, ref: str = "v1", kind: str = "video_play") -> None:
    """`count` plays of the creator's video `ref`, imported now as from a platform's CSV."""
    with db.connection_context():
        activity.record_events([TrackEvent(f"play-{next(_n)}", c.code, kind, ref, count, utcnow())],
                               user_id=None, source="csv")


def operator(role: str = "owner", name: str | None = None, password: str = "correct-horse-battery"):  # noqa: ANN201, S107
    """An admin operator, TOTP-enrolled when the role needs it: (operator, password)."""
    import pyotp

    from models import operators as ops

    name = name or f"{role}-{ops.Operator.select().count() + 1}"
    secret = pyotp.random_base32() if role in ("owner", "finance") else None
    op, _ = ops.create_operator(name, role, password, totp_secret=secret)
    op.must_change_password = False
    op.save()
    return op, password


# -- dashboard rollups --------------------------------------------------------------------------

def refunded_at(when: dt.datetime, *order_ids: int) -> None:
    """As mark_refunded, with the refund stamped at `when` (naive UTC)."""
    with db.connection_context():
        Order.update(status="refunded", refunded_at=when).where(Order.id.in_(order_ids)).execute()


def watched(c: Creator, when: dt.datetime, count: int = 1, kind: str = "video_play") -> None:
    """`count` plays (or live-room entries, kind="live_entry") of the creator that happened at
    `when` (naive UTC), imported as from a platform's CSV (which may arrive days later)."""
    with db.connection_context():
        activity.record_events([TrackEvent(f"watch-{next(_n)}", c.code, kind, "v1", count, when)],
                               user_id=None, source="csv")


# -- admin: orders and exports ------------------------------------------------------------------

def order_row(sku: Sku, *, openid: str = "buyer-1", status: str = "paid", amount: int = 1_000,
              seller: Creator | None = None, live_id: int | None = None, created_at: dt.datetime | None = None,
              ref: str | None = None, account: str | None = None, risk_hold: bool = False) -> int:
    """An order in any state at any time (naive UTC), written directly: the admin's list and
    exports read these columns (placement and payment have their own tests). Its id."""
    return order_rows(sku, 1, openid=openid, status=status, amount=amount, seller=seller, live_id=live_id,
                      created_at=created_at, ref=ref, account=account, risk_hold=risk_hold)[0]


def order_rows(sku: Sku, count: int, *, openid: str = "buyer-1", status: str = "paid", amount: int = 1_000,
               seller: Creator | None = None, live_id: int | None = None, created_at: dt.datetime | None = None,
               ref: str | None = None, account: str | None = None, risk_hold: bool = False) -> list[int]:
    """`count` such orders in one insert per 500, one second apart up to `created_at` (default
    now), ids rising with the time. Their ids, oldest first."""
    end = created_at or utcnow()
    with db.connection_context():
        user = buyer(openid)
        rows = []
        for i in range(count):
            at = end - dt.timedelta(seconds=count - 1 - i)
            rows.append(dict(
                no=f"QXA{next(_n):013d}", user=user.id, sku=sku.id, quantity=1, unit_price_fen=amount,
                amount_fen=amount, status=status, ref_code=ref or (seller.code if seller else None),
                seller_id=seller.id if seller else None, live_id=live_id, recipient_account=account,
                client_ip="10.1.2.3", risk_hold=risk_hold, created_at=at, expires_at=at + dt.timedelta(minutes=15),
                paid_at=at if status in ("paid", "delivered", "refunded") else None,
                delivered_at=at if status == "delivered" else None,
                refunded_at=at if status == "refunded" else None))
        ids = []
        with db.atomic():
            for start in range(0, len(rows), 500):
                first = Order.select(Order.id).order_by(Order.id.desc()).scalar() or 0
                Order.insert_many(rows[start:start + 500]).execute()
                ids += [i for (i,) in Order.select(Order.id).where(Order.id > first).order_by(Order.id).tuples()]
        return ids


# -- chat users (admin broadcasts) ----------------------------------------------------------------

def chat_user(platform: str, external_id: str, *, name: str = "", rank: int | None = None) -> User:
    """A chat user as a first message makes one (models.identities.resolve: the identity, its
    private chat and the user); with `rank`, also a creator of that star level."""
    from bots.types import Member
    from models.identities import resolve

    with db.connection_context():
        user = resolve(platform, Member(external_id, name or external_id), external_id)
    if rank is not None:
        creator(user=user, rank=rank)
    return user


def chat_users(platform: str, count: int, *, first: int = 9_000_001) -> list[str]:
    """`count` chat users of a platform written in bulk, as `chat_user` would leave them (a user
    `platform:id` and its identity, private chat = the account id): their chat ids, in order."""
    from models.chat import ChatIdentity

    ids = [str(first + i) for i in range(count)]
    with db.connection_context(), db.atomic():
        for start in range(0, count, 500):
            chunk = ids[start:start + 500]
            User.insert_many([{"openid": f"{platform}:{e}"} for e in chunk]).execute()
            users = dict(User.select(User.openid, User.id)
                         .where(User.openid.in_([f"{platform}:{e}" for e in chunk])).tuples())
            ChatIdentity.insert_many([{"platform": platform, "external_id": e, "chat_id": e,
                                       "user": users[f"{platform}:{e}"]} for e in chunk]).execute()
    return ids


# ---- live: sessions (issue 13, A) -------------------------------------------------------------

def planned_session(host: Creator, *, in_hours: float = 2.0, title: str = "周末福利专场",
                    skus: tuple[str, ...] = (), minutes: int = 60) -> int:
    """A session of `host` scheduled through models.live_planning.schedule `in_hours` from now,
    with the SKU codes `skus` pinned (no ladder, assist or lottery). Its id."""
    from models import live_planning

    start = utcnow() + dt.timedelta(hours=in_hours)
    with db.connection_context():
        return live_planning.schedule(host, live_planning.SessionSpec(
            title, start, minutes, pins=[live_planning.PinSpec(code) for code in skus])).id


# ---- live: reservations and reminders (B) ----------------------------------------------------

def live_session(host: Creator | None = None, *, start: dt.datetime | None = None, title: str = "预约测试直播",
                 state: str = "scheduled"):  # noqa: ANN201
    """A live session row of `host` (a fresh creator by default) planned for `start` (default:
    two hours from now), written directly (the scheduling service has its own tests)."""
    from models.live import LiveSession

    host = host or creator()
    with db.connection_context():
        return LiveSession.create(creator=host.id, title=title, state=state,
                                  scheduled_at=start or utcnow() + dt.timedelta(hours=2), started_at=None)


def linked(user: User, *, telegram: str | None = None, wechat: str | None = None,
           wechat_seen: dt.datetime | None = None) -> User:
    """Give `user` chat identities linked to it: a Telegram account (chat = its id) and/or a
    WeChat official-account openid last heard from at `wechat_seen` (default: now)."""
    from models.chat import ChatIdentity

    with db.connection_context():
        if telegram:
            ChatIdentity.create(platform="telegram", external_id=telegram, user=user.id, chat_id=telegram,
                                last_inbound_at=utcnow())
        if wechat:
            ChatIdentity.create(platform="wechat", external_id=wechat, user=user.id, chat_id=wechat,
                                last_inbound_at=wechat_seen or utcnow())
    return user


# ---- live: lottery (C) ------------------------------------------------------------------------

LOTTERY_START = dt.timedelta(hours=1)  # lottery sessions start this long after "now"


def lottery_session(shop, *, threshold: int = 3, prizes: int = 2, keys: int = 10,  # noqa: ANN001
                    title: str = "抽奖直播") -> tuple:
    """A session scheduled through the real scheduling service (models/live_planning.py) with a
    reservation lottery whose prize is a card-key SKU with `keys` keys; (session, prize SKU)."""
    from models.live_planning import SessionSpec, schedule

    prize = shop.card_sku(keys=keys, price=990)
    host = creator(name="host")
    with db.connection_context():
        session = schedule(host, SessionSpec(title, utcnow() + LOTTERY_START, lottery={
            "threshold": threshold, "prizes": prizes, "prize_sku": prize.code}), actor="test")
    return session, prize


def reserve_many(session_id: int, count: int, *, prefix: str = "fan") -> list[int]:
    """`count` buyers reserve the session through models/reservations.py; their reservation ids."""
    from models import reservations

    ids = []
    with db.connection_context():
        for i in range(count):
            made, _ = reservations.reserve(buyer(f"{prefix}-{session_id}-{i}"), session_id, "miniapp")
            ids.append(made.id)
    return ids


# ---- live: tiered prices and the sold-out gate (D) -------------------------------------------

def laddered(sku: Sku, tiers: tuple[tuple[int, int], ...] = ((50, 990), (50, 1990)), *,
             seller: Creator | None = None, on_air: bool = True):  # noqa: ANN201
    """A live session of `seller` (a fresh creator by default) that is on air (or only
    scheduled), with `sku` pinned under a ladder of (units, price_fen) tiers: (session, pin)."""
    from models import live, live_orders, live_prices
    from models.live import LivePin, LiveSession

    live_orders.forget_cached_pins()  # ids restart with each test: no pin facts of an earlier one
    seller = seller or creator()
    with db.connection_context():
        session = live.start_live(seller, "live ladder")
        if not on_air:
            LiveSession.update(state="scheduled", started_at=None,
                               scheduled_at=utcnow() + dt.timedelta(hours=1)).where(
                LiveSession.id == session.id).execute()
        with db.atomic():
            pin = LivePin.create(session=session.id, sku=sku.id)
            live_prices.save_ladder(pin, [live_prices.TierSpec(u, p) for u, p in tiers])
        return LiveSession.get_by_id(session.id), pin


def live_order(sku: Sku | str, session_id: int, openid: str = "buyer-1", quantity: int = 1, *,
               redis=None, key: str | None = None, policy: OrderPolicy = POLICY) -> tuple[Order, bool]:  # noqa: ANN001
    """An order placed through the live branch (models.live_orders.place), the gate on `redis`."""
    from models import live_orders

    code = sku if isinstance(sku, str) else sku.code
    with db.connection_context():
        return live_orders.place(buyer(openid), OrderRequest(code, quantity, live=session_id), policy,
                                 client_ip="10.0.0.2", idempotency_key=key, redis=redis, cache_s=0)


def tier_counts(pin_id: int) -> list[tuple[int, int, int]]:
    """(units, taken, unreleased places recorded on orders) per tier of the pin, in order."""
    from models.live_prices import LiveOrderPrice, LiveTier

    with db.connection_context():
        out = []
        for tier in LiveTier.select().where(LiveTier.pin == pin_id).order_by(LiveTier.seq):
            held = (LiveOrderPrice.select(LiveOrderPrice.quantity)
                    .where((LiveOrderPrice.tier_id == tier.id) & ~LiveOrderPrice.released))
            out.append((tier.units, tier.taken, sum(r.quantity for r in held)))
        return out


# ---- live: team assist (E) --------------------------------------------------------------------

def assist_session(sku: Sku, *, state: str = "live", helpers_needed: int = 3, price_fen: int | None = None,
                   window_s: int | None = None, new_users_only: bool = False,
                   host: Creator | None = None) -> tuple[int, int]:
    """A session of `host` (a new creator by default) scheduled through the real service with `sku`
    pinned and an assist offer on it (unlock at `price_fen`, by default 30 yuan below retail, 0 at
    least), then taken live unless `state` is "scheduled"; returns (session id, pin id)."""
    from models import live, live_orders, live_planning
    from models.live import LivePin

    live_orders.forget_cached_pins()  # ids restart with each test: no pin facts of an earlier one
    host = host or creator(name="主播")
    price = price_fen if price_fen is not None else max(0, sku.retail_price_fen - 3000)
    offer = {"helpers_needed": helpers_needed, "price_fen": price, "new_users_only": new_users_only,
             **({"window_s": window_s} if window_s is not None else {})}
    spec = live_planning.SessionSpec(title="周五福利专场", scheduled_at=utcnow() + dt.timedelta(hours=1),
                                     pins=[live_planning.PinSpec(sku.code, assist=offer)])
    with db.connection_context():
        session = live_planning.schedule(host, spec, actor=host.actor)
        if state == "live":
            live.go_live(host, session.id, actor=host.actor)
        pin = LivePin.get(LivePin.session == session.id)
    return session.id, pin.id


# ---- live: dashboard and votes (F) ------------------------------------------------------------

def on_air(host: Creator | None = None, *, title: str = "看板测试直播") -> tuple[Creator, int]:
    """A creator (a fresh one by default) live now through models.live.start_live: (host, session id)."""
    from models import live

    host = host or creator(name="看板主播")
    with db.connection_context():
        return host, live.start_live(host, title).id


def live_sale(sku: Sku, host: Creator, session_id: int, openid: str, *, dispatch: bool = True) -> Order:
    """A buyer orders through the host's ref in the live session and pays (as `paid`); with
    `dispatch`, the delivery job that reports it to the dashboard is queued (run_jobs runs it)."""
    return paid(sku, openid, ref=host.code, live=session_id, dispatch=dispatch)


def end_session(host: Creator, session_id: int, *, ago: dt.timedelta = dt.timedelta(0)) -> None:
    """End the session through models.live.end_live, stamped `ago` in the past."""
    from models import live
    from models.live import LiveSession

    with db.connection_context():
        live.end_live(host, session_id)
        LiveSession.update(ended_at=utcnow() - ago).where(LiveSession.id == session_id).execute()


# ---- live: short drama (G) --------------------------------------------------------------------

def live_session_row(host: Creator, *, state: str = "scheduled", title: str = "番外直播",
                     in_hours: float = 2.0) -> int:
    """A live session of `host` written directly (scheduled `in_hours` from now, or live/ended/
    cancelled since an hour ago): scheduling has its own tests (models/live_planning). Its id."""
    from models.live import LiveSession

    now = utcnow()
    planned = now + dt.timedelta(hours=in_hours) if state == "scheduled" else now - dt.timedelta(hours=1)
    with db.connection_context():
        return LiveSession.create(
            creator=host.id, title=title, state=state, scheduled_at=planned,
            started_at=None if state in ("scheduled", "cancelled") else planned,
            ended_at=now if state == "ended" else None,
            cancelled_at=now if state == "cancelled" else None).id


def drama_series(host: Creator, *, title: str = "霸总的秘密", episodes: int = 0, sku_codes: tuple[str, ...] = (),
                 link: tuple[str, int] | None = None) -> int:
    """A series of `host` through models/drama with `episodes` episodes (number 1.., each with
    the products `sku_codes`; the last one linked by `link` = (kind, session id)). Its id."""
    from models import drama

    with db.connection_context():
        series = drama.create_series(host, drama.SeriesSpec(title, "https://cdn.example.com/cover.jpg"))
        for n in range(1, episodes + 1):
            spec_link = drama.LinkSpec(*link) if link is not None and n == episodes else None
            drama.add_episode(host, series.id, drama.EpisodeSpec(
                n, f"第{n}集", f"https://cdn.example.com/ep{n}.mp4", list(sku_codes), spec_link))
        return series.id


# ---- issue 14: coupons ------------------------------------------------------------------------

def coupon(*, actor: str = "test", **spec):  # noqa: ANN003, ANN201
    """A coupon made through the real service: by default 满减 5 yuan off from 0, valid from an
    hour ago for 30 days, shelf-wide, unlimited uses; `spec` overrides CouponSpec fields."""
    from models import coupons
    from models.coupons import CouponSpec

    now = utcnow()
    fields = {"name": f"测试券 {next(_n)}", "kind": "amount_off", "amount_off_fen": 500,
              "starts_at": now - dt.timedelta(hours=1), "ends_at": now + dt.timedelta(days=30), **spec}
    with db.connection_context():
        return coupons.create_coupon(CouponSpec(**fields), actor=actor)


def granted(made, *users: User, key: str | None = None) -> list[int]:  # noqa: ANN001
    """Hand `made` to each user (an operator issue); their grant ids, in the users' order."""
    from models import coupons
    from models.coupons import CouponGrant

    with db.connection_context():
        source_key = key or f"test:{next(_n)}"
        coupons.issue(made.id, [u.id for u in users], source="operator", source_key=source_key)
        rows = {g.user_id: g.id for g in CouponGrant.select().where(
            (CouponGrant.coupon == made.id) & (CouponGrant.source_key == source_key))}
    return [rows[u.id] for u in users]


def coupon_state() -> tuple:
    """Everything coupons write, to show a refusal wrote nothing: rows per table and the
    counters of every coupon."""
    from models.coupons import Coupon, CouponGrant, CouponRedemption

    with db.connection_context():
        return (Order.select().count(), CouponGrant.select().count(), CouponRedemption.select().count(),
                sorted((c.id, c.uses, c.spent_fen) for c in Coupon.select()),
                sorted((g.id, g.state, g.order_id) for g in CouponGrant.select()))


def with_coupons(sku: Sku | str, grants: list[int], user: User, *, ref: str | None = None,
                 quantity: int = 1) -> Order:
    """An order with coupons placed through models/checkout.py (the route's service)."""
    from models import checkout

    code = sku if isinstance(sku, str) else sku.code
    with db.connection_context():
        order, created = checkout.place(user, OrderRequest(code, quantity, ref=ref, coupons=tuple(grants)),
                                        POLICY, client_ip="10.0.0.1")
    assert created
    return order



# ---- issue 14: coupon money -------------------------------------------------------------------

def discounted(sku: Sku | str, openid: str = "buyer-1", *, discount: int, creator_discount: int = 0,
               ref: str | None = None, user: User | None = None, quantity: int = 1) -> Order:
    """An unpaid order whose coupons took `discount` fen off its price, `creator_discount` of it
    funded by its seller: placed through `orders.place_order` with `orders.set_amount` inside its
    transaction, as models/checkout.py does after `coupons.reserve` (no coupon rows)."""
    code = sku if isinstance(sku, str) else sku.code

    def lower(order: Order) -> None:
        orders.set_amount(order, amount_fen=order.amount_fen - discount, discount_fen=discount,
                          creator_discount_fen=creator_discount)

    with db.connection_context():
        order, created = orders.place_order(user or buyer(openid), OrderRequest(code, quantity, ref=ref), POLICY,
                                            client_ip="10.0.0.1", within=lower)
    assert created
    return order


def wechat_paid(order: Order, gateway, fake_pay) -> None:  # noqa: ANN001
    """Pay an order the way the mini-program does, without the API: the WeChat Pay order made
    (what POST /orders/{id}/pay does), then WeChat Pay's signed notification to the real
    notify endpoint (the live server)."""
    with db.connection_context():
        payments.prepare_payment(order, gateway, User.get_by_id(order.user_id).openid, "10.0.0.1")
    assert fake_pay.notify_acknowledged(fake_pay.pay(order.no))


def postings_of(key: str) -> dict[str, int]:
    """The legs of one ledger transaction, per account."""
    with db.connection_context():
        txn = ledger.LedgerTransaction.get(ledger.LedgerTransaction.key == key)
        legs: dict[str, int] = {}
        for posting in txn.postings:
            legs[posting.account] = legs.get(posting.account, 0) + posting.amount_fen
        return legs



# ---- issue 14: groupbuy -----------------------------------------------------------------------

def group_sale(shop: Shop, *, size: int = 3, price: int = 990, retail: int = 1990, keys: int = 20,
               window_s: int = 3600, **spec) -> tuple[Sku, int]:  # noqa: ANN003
    """A card-key SKU (`keys` keys, retail `retail`) and a group-buy activity on it open now
    (models/groupbuy.create_activity; `spec`: other ActivitySpec fields). (sku, activity id)."""
    from models import groupbuy

    sku = shop.card_sku(keys=keys, price=retail)
    now = utcnow()
    fields = dict(starts_at=now - dt.timedelta(minutes=1), ends_at=now + dt.timedelta(days=1), **spec)
    with db.connection_context():
        activity = groupbuy.create_activity(groupbuy.ActivitySpec(
            sku_code=sku.code, title="拼团测试", size=size, window_s=window_s, group_price_fen=price, **fields),
            actor="test")
    return sku, activity.id


def api_group(client, auth: dict, sku: Sku, *, activity: int | None = None, team: int | None = None,  # noqa: ANN001
              fake_pay=None, ref: str | None = None) -> dict:  # noqa: ANN001
    """Start (`activity`) or join (`team`) a team through POST /orders (through a creator's
    `ref`), and create its WeChat Pay order (/pay); with `fake_pay`, WeChat Pay's notification
    for it too. The order as answered."""
    extra: dict = {"group_activity": activity} if activity is not None else {"team": team}
    if ref is not None:
        extra["ref"] = ref
    order = api_place(client, auth, sku, **extra)
    pay = client.post(f"{ORDERS}/{order['id']}/pay", headers=auth)
    assert pay.status_code == 200, pay.json
    if fake_pay is not None:
        assert fake_pay.notify_acknowledged(fake_pay.pay(order["no"]))
    return order


def expire_team(team_id: int, *, ago_s: int = 1) -> None:
    """Time passes: the team's window (and its unpaid member orders' deadline) ended `ago_s` ago."""
    from models.groupbuy import GroupMember, GroupTeam

    past = utcnow() - dt.timedelta(seconds=ago_s)
    with db.connection_context():
        GroupTeam.update(expires_at=past).where(GroupTeam.id == team_id).execute()
        members = GroupMember.select(GroupMember.order_id).where(GroupMember.team == team_id)
        Order.update(expires_at=past).where(Order.id.in_(members) & (Order.status == "pending")).execute()


def team_row(team_id: int):  # noqa: ANN201
    from models.groupbuy import GroupTeam

    with db.connection_context():
        return GroupTeam.get_by_id(team_id)


def member_states(team_id: int) -> dict[int, str]:
    """order id -> member state, of every member of the team."""
    from models.groupbuy import GroupMember

    with db.connection_context():
        return {m.order_id: m.state for m in GroupMember.select().where(GroupMember.team == team_id)}



# ---- issue 14: groupbuy chat and bench --------------------------------------------------------

def chat_activity(sku: Sku, *, size: int = 3, price: int = 990, title: str = "三人拼团", window_s: int = 3600,
                  ends_in: dt.timedelta = dt.timedelta(days=1)) -> int:
    """A group-buy activity on `sku`, open now, made through models/groupbuy.create_activity; its id."""
    from models import groupbuy

    now = utcnow()
    with db.connection_context():
        return groupbuy.create_activity(groupbuy.ActivitySpec(
            sku_code=sku.code, title=title, size=size, window_s=window_s, group_price_fen=price,
            starts_at=now - dt.timedelta(minutes=1), ends_at=now + ends_in), actor="test").id


def group_order(sku: Sku, group: tuple[str, int], *, user: User | None = None, openid: str = "buyer-1",
                pay: bool = True) -> Order:
    """`user` starts (("start", activity id)) or joins (("join", team id)) a team through
    models/checkout.place; with `pay`, the payment is confirmed the way the webhook does and handed
    to the delivery drain (run the jobs: the drain advances the team)."""
    from models import checkout

    with db.connection_context():
        order, created = checkout.place(user or buyer(openid), OrderRequest(sku.code, 1, group=group), POLICY,
                                        client_ip="10.0.0.9")
        assert created
        if pay:
            order_id, outcome = payments.confirm_payment(order.no, f"tx-{order.no}", order.amount_fen, source="test")
    if pay:
        maintenance.dispatch_payment(order_id, outcome)
    return order


def team_of(order: Order) -> int:
    from models import groupbuy

    with db.connection_context():
        team = groupbuy.team_of_order(order.id)
    assert team is not None
    return team



# ---- issue 14: selfservice --------------------------------------------------------------------


def category(name: str, sort: int = 0, *, active: bool = True) -> int:
    """A shelf category (id)."""
    with db.connection_context():
        return catalog.Category.create(name=name, sort=sort, active=active).id


def shelf_product(title: str, *, category_id: int | None = None, sku_name: str | None = None,
                  keys: int = 3, price: int = 1990, code: str | None = None) -> Sku:
    """A product in a category with one card-key SKU (`keys` keys imported through the vault)."""
    code = code or f"SHELF-{next(_n)}"
    with db.connection_context():
        product = catalog.create_product(title)
        catalog.Product.update(category_id=category_id).where(catalog.Product.id == product.id).execute()
        sku = catalog.create_sku(product, code=code, name=sku_name or f"{title} 卡", kind=Kind.CARD_KEY,
                                 supply_price_fen=price // 2, retail_price_fen=price)
        if keys:
            vault.import_keys(sku, [(i, f"{code}-KEY-{i:06d}-SECRET") for i in range(1, keys + 1)])
    return sku


def reveal_keys(order_id: int) -> int:
    """The buyer opens every voucher of the order (the reveal service); how many."""
    from models import delivery

    with db.connection_context():
        order = Order.get_by_id(order_id)
        found = list(Voucher.select().where(Voucher.order == order_id))
        for v in found:
            delivery.reveal(order.user, v.id)
    return len(found)


# ---- issue 14: admin and wakeup ---------------------------------------------------------------

def dormant(sku: Sku, openid: str, *, days_ago: int = 40, telegram: str | None = None, wechat: str | None = None,
            wechat_seen: dt.datetime | None = None) -> User:
    """A buyer who paid an order (through the services) `days_ago` days ago and nothing since,
    with the given chat identities (`linked`)."""
    order = paid(sku, openid, dispatch=False)
    with db.connection_context():
        Order.update(paid_at=utcnow() - dt.timedelta(days=days_ago)).where(Order.id == order.id).execute()
    return linked(buyer(openid), telegram=telegram, wechat=wechat, wechat_seen=wechat_seen)


def campaign(name: str, **spec):  # noqa: ANN003, ANN201
    """The active coupon of a campaign (group_welcome | lottery_loser | wakeup), valid for a year."""
    return coupon(name=f"{name} 券", campaign=name, ends_at=utcnow() + dt.timedelta(days=365), **spec)



# ---- issue 15: signals ----

def signal_rows(**where: object) -> list:
    """The risk_signal rows (optionally those whose columns equal `where`), oldest first."""
    from models.risk_tables import RiskSignal

    with db.connection_context():
        query = RiskSignal.select().order_by(RiskSignal.id)
        for name, value in where.items():
            query = query.where(getattr(RiskSignal, name) == value)
        return list(query)


def placed_at(when: dt.datetime, *order_ids: int) -> None:
    """Move orders' placing time (the retention cutoff reads `created_at`)."""
    with db.connection_context():
        Order.update(created_at=when).where(Order.id.in_(order_ids)).execute()


# ---- issue 15: admin ----

def risk_case(rt, *, seller: Creator | None = None, code: str = "circular_buying", orders: int = 2,  # noqa: ANN001
              outcome: str = "hold", ip: str = "10.7.7.7", device: str = "dev-shared",
              withdrawal_fen: int = 0) -> int:
    """An open review case on `seller`'s sales (a fresh creator under a parent by default):
    `orders` paid orders through its code by different shoppers on one IP and device (their
    signals recorded), settled (commission pending) and held, a hit of `code` (the version in
    force) on each, handed to the seller's case by `risk_cases.attach`; with `withdrawal_fen`
    the seller also has that much available and a withdrawal of it waiting for review, in the
    case by a withdrawal_first hit. The case's id."""
    import json

    from models import reversals, risk_cases, risk_rules, risk_signals, settlement
    from models.risk_tables import CaseState, RiskCase, RiskHit

    seller = seller or named(parent=named())
    shop = Shop()
    sku = shop.card_sku(keys=orders + 1, price=10_000)
    made: list[int] = []
    for i in range(orders):
        order_id = paid_order(seller, sku, amount=10_000, cost=5_000)
        shopper = buyer(f"risk-shopper-{next(_n)}-{i}")
        with db.connection_context():
            Order.update(user=shopper.id).where(Order.id == order_id).execute()
            risk_signals.record(rt.settings.RISK_HMAC_KEY, "order", user_id=shopper.id, ip=ip, device=device,
                                order_id=order_id)
        made.append(order_id)
    with db.connection_context():
        settlement.settle(rt.payout, order_ids=made)
        held = sum(settlement.sums_by_creator(made).values())
        rule = risk_rules.current()[code]
        hit_ids = []
        for order_id in made:
            reversals.hold(order_id, held=True, actor="test:risk", reason=code)
            hit_ids.append(RiskHit.insert(
                subject_kind="order", subject_id=order_id, rule_id=rule.id, code=code, weight=rule.weight,
                creator_id=seller.id, evidence=json.dumps({"orders": made, "ip_net": ip.rsplit(".", 1)[0]}),
            ).execute())
        items = [risk_cases.CaseItem(creator_id=seller.id, outcome=outcome, score=rule.weight * orders,
                                     hit_ids=hit_ids, held_fen=held)]
    if withdrawal_fen:
        earn(seller, withdrawal_fen)
        with db.connection_context():
            w = withdrawals.request_withdrawal(seller, withdrawal_fen, Method.WALLET,
                                               policy=WithdrawPolicy(min_fen=100, fee_bp=0, delay_hours=0,
                                                                     review_above_fen=0))
            first = risk_rules.current()["withdrawal_first"]
            items.append(risk_cases.CaseItem(creator_id=seller.id, outcome="review", score=first.weight, hit_ids=[
                RiskHit.insert(subject_kind="withdrawal", subject_id=w.id, rule_id=first.id, code=first.code,
                               weight=first.weight, creator_id=seller.id).execute()]))
    with db.connection_context(), db.atomic():
        risk_cases.attach(items)
        return RiskCase.get((RiskCase.creator_id == seller.id) & (RiskCase.state == CaseState.OPEN.value)).id


# ---- issue 15: cases ----

def risk_hit(code: str, subject_kind: str, subject_id: int, *, creator_id: int | None = None,
             evidence: dict | None = None, period: str = "") -> int:
    """A hit of the version in force of rule `code`, written directly (the scorer and the edge
    checks have their own tests). Its id."""
    import json

    from models import risk_rules
    from models.risk_tables import RiskHit

    with db.connection_context():
        rule = risk_rules.current()[code]
        return RiskHit.insert(subject_kind=subject_kind, subject_id=subject_id, rule_id=rule.id, code=code,
                              weight=rule.weight, period=period, creator_id=creator_id,
                              evidence=json.dumps(evidence or {})).execute()


def held_case(seller: Creator, order_ids: list[int], *, code: str = "circular_buying", outcome: str = "hold",
              withdrawal_ids: tuple[int, ...] = ()) -> int:
    """What the scorer leaves for settled orders of `seller` it found risky: a hit of `code` on
    each, the orders held and marked scored, and the items attached to the seller's case (plus
    a withdrawal_first hit per withdrawal in `withdrawal_ids`). The open case's id."""
    from models import risk_cases, settlement
    from models.risk_tables import CaseState, RiskCase, RiskOrderScore

    items = []
    for order_id in order_ids:
        hit = risk_hit(code, "order", order_id, creator_id=seller.id, evidence={"orders": order_ids})
        with db.connection_context():
            held = settlement.sums_by_creator([order_id]).get(seller.id, 0)
        items.append(risk_cases.CaseItem(creator_id=seller.id, outcome=outcome, score=50, hit_ids=[hit],
                                         held_fen=held))
    for withdrawal_id in withdrawal_ids:
        hit = risk_hit("withdrawal_first", "withdrawal", withdrawal_id, creator_id=seller.id)
        items.append(risk_cases.CaseItem(creator_id=seller.id, outcome="review", score=80, hit_ids=[hit]))
    with db.connection_context(), db.atomic():
        if order_ids:
            Order.update(risk_hold=True).where(Order.id.in_(order_ids)).execute()
            for order_id in order_ids:
                RiskOrderScore.insert(order_id=order_id, score=50, outcome=outcome,
                                      scored_at=utcnow()).on_conflict_ignore().execute()
        risk_cases.attach(items)
        return RiskCase.get((RiskCase.creator_id == seller.id) & (RiskCase.state == CaseState.OPEN.value)).id


# ---- issue 15: scoring ----

RISK_TEST_KEY = "test-risk-key"


def risk_hash(value: str) -> str:
    """The keyed hash the signals store for a raw value (an IP, a device id, a payer openid)."""
    from models.risk_signals import hmac_hex

    return hmac_hex(RISK_TEST_KEY, value)


def shopper(openid: str | None = None, *, age_hours: float = 24 * 90, unionid: str | None = None,
            phone: str | None = None) -> User:
    """A buyer whose account is `age_hours` old, with an optional unionid and authorized phone
    (risk_user: its hash and three-digit segment)."""
    from models.risk_tables import RiskUser

    made = buyer(openid or f"risk-shopper-{next(_n)}")
    with db.connection_context():
        User.update(created_at=utcnow() - dt.timedelta(hours=age_hours), unionid=unionid).where(
            User.id == made.id).execute()
        if phone is not None:
            RiskUser.insert(user_id=made.id, phone_hash=risk_hash(phone), phone_seg=phone[:3]).on_conflict(
                conflict_target=[RiskUser.user_id], update={RiskUser.phone_hash: risk_hash(phone),
                                                            RiskUser.phone_seg: phone[:3]}).execute()
        return User.get_by_id(made.id)


def risk_buy(seller: Creator | None, sku: Sku, user: User, *, amount: int = 10_000, cost: int = 5_000,
             at: dt.datetime | None = None, ip: str | None = None, device: str | None = None,
             payer: str | None = None, status: str = "paid") -> int:
    """A paid order of `user` through `seller`, placed at `at` (default 2 minutes ago) and paid a minute
    later, written directly with its order signal (hashes of the given IP, device and payer)."""
    from models.risk_tables import RiskSignal

    at = at or utcnow() - dt.timedelta(minutes=2)
    n = next(_n)
    with db.connection_context(), db.atomic():
        order_id = Order.create(
            no=f"QXR{n:012d}", user=user.id, sku=sku.id, quantity=1, unit_price_fen=amount, amount_fen=amount,
            status=status, ref_code=seller.code if seller else None, seller_id=seller.id if seller else None,
            markup_fen=0, cost_fen=cost, client_ip="", created_at=at, expires_at=at,
            paid_at=at + dt.timedelta(minutes=1)).id
        RiskSignal.insert(at=at, event="order", user_id=user.id, order_id=order_id,
                          ip_hash=risk_hash(ip) if ip else None, ip_net=ip.rsplit(".", 1)[0] if ip else None,
                          device_hash=risk_hash(device) if device else None,
                          payer_hash=risk_hash(payer) if payer else None).execute()
    return order_id


def score(rt, **kwargs):  # noqa: ANN001, ANN003, ANN201
    """Settle what is unsettled, then score as the job does (the runtime's thresholds)."""
    from models import risk_scoring, settlement

    with db.connection_context():
        settlement.settle(rt.payout)
        return risk_scoring.score_pending(
            risk_scoring.Thresholds.from_settings(rt.settings),
            **kwargs)


def hits_of(order_id: int) -> dict[str, dict]:
    """rule code -> evidence of the hits on an order."""
    import json

    from models.risk_tables import RiskHit

    with db.connection_context():
        return {h.code: json.loads(h.evidence) for h in RiskHit.select().where(
            (RiskHit.subject_kind == "order") & (RiskHit.subject_id == order_id))}


def outcome_of(order_id: int) -> tuple[int, str] | None:
    """(score, outcome) of a scored order; None while unscored."""
    from models.risk_tables import RiskOrderScore

    with db.connection_context():
        row = RiskOrderScore.get_or_none(RiskOrderScore.order_id == order_id)
        return (row.score, row.outcome) if row else None


def allow(subject_kind: str, subject_id: int, code: str, *, days: int = 30) -> None:
    """An operator's allowlist entry: the subject skips rule `code` for `days`."""
    from models.risk_tables import RiskAllow

    with db.connection_context():
        RiskAllow.insert(subject_kind=subject_kind, subject_id=subject_id, rule_code=code,
                         until=utcnow() + dt.timedelta(days=days), reason="test", created_by="test").execute()


# ---- issue 15: gate ----

def edge(auth: dict, ip: str, device: str | None = None) -> dict:
    """Test client keyword arguments for a request from client address `ip` (TRUSTED_PROXIES is 0
    in tests: the socket's address counts) with an optional X-Device-Id: `client.post(url,
    **edge(auth, "36.110.1.1", "dev-1"))`."""
    headers = {**auth, **({"X-Device-Id": device} if device is not None else {})}
    return {"headers": headers, "environ_base": {"REMOTE_ADDR": ip}}


def gate_rule(code: str, **changes):  # noqa: ANN003, ANN201
    """The next version of a risk rule through the real service (enabled=, blocking=, params=),
    applied at the edges at once (their rule cache is dropped)."""
    from models import risk_gate, risk_rules

    with db.connection_context():
        made = risk_rules.update_rule(code, actor="test", note="test", **changes)
    risk_gate.forget_cached_rules()
    return made


def gate_hits(code: str | None = None) -> list:
    """The risk hits (of one rule code), oldest first."""
    from models.risk_tables import RiskHit

    with db.connection_context():
        query = RiskHit.select().order_by(RiskHit.id)
        return list(query.where(RiskHit.code == code) if code else query)


# ---- issue 16: answers ----

def answers_shop(shop) -> dict[str, Sku]:  # noqa: ANN001
    """A small catalog to ask about: a video card (¥19.90, 3 keys), a music card sold out
    (¥15.00, no keys) and a phone top-up (¥49.80)."""
    from models.catalog import create_product, create_sku

    with db.connection_context():
        video = create_product("爱奇艺黄金会员", "官方卡密")
        music = create_product("QQ音乐绿钻", "豪华绿钻卡密")
        phone = create_product("话费充值", "输入手机号，自动到账")
        made = {
            "video": create_sku(video, code="IQY-1M", name="爱奇艺黄金会员 月卡", kind=Kind.CARD_KEY,
                                supply_price_fen=1500, retail_price_fen=1990),
            "music": create_sku(music, code="QQM-1M", name="QQ音乐绿钻 月卡", kind=Kind.CARD_KEY,
                                supply_price_fen=1000, retail_price_fen=1500),
            "phone": create_sku(phone, code="PHONE-50", name="话费 50 元", kind=Kind.TOPUP,
                                supply_price_fen=4850, retail_price_fen=4980, stock=100),
        }
        vault.import_keys(made["video"], [(i + 1, f"IQY-TEST-{i:04d}") for i in range(3)])
    return made



# ---- issue 16: handoff ----

def handoff_case(*, chat: str = "grp-h", kind: str = "group", platform: str = "console", asker: User | None = None,
                 question: str = "能开发票吗？", name: str = "小红"):  # noqa: ANN201
    """A hand-off case as the bot opens it (models.handoff.open_case): (case, created)."""
    from models import handoff

    asker = asker or chat_user(platform, f"asker-{chat}", name=name)
    with db.connection_context():
        case, created, _notified = handoff.open_case(platform=platform, chat_id=chat, chat_kind=kind,
                                                     asker_id=asker.id, asker_name=name, question=question)
    return case, created


def outbox_rows(prefix: str) -> list:
    """Outbound messages whose key starts with `prefix`, oldest first."""
    from models.chat import OutboundMessage

    with db.connection_context():
        return list(OutboundMessage.select().where(OutboundMessage.key.startswith(prefix))
                    .order_by(OutboundMessage.id))



# ---- issue 16: scripts ----

def described_sku(shop, *, code: str = "VIP-M", name: str = "视频会员月卡", title: str = "视频会员",  # noqa: ANN001
                  description: str = "海量热门剧集抢先看。蓝光画质，手机、平板、电视多端通用；会员专属片库",
                  price: int = 1990, keys: int = 3) -> Sku:
    """A card-key SKU whose product has a title and a description (the scripts' selling points)."""
    sku = shop.card_sku(keys=keys, price=price, code=code)
    with db.connection_context():
        Sku.update(name=name).where(Sku.id == sku.id).execute()
        (catalog.Product.update(title=title, description=description)
         .where(catalog.Product.id == sku.product_id).execute())
        return catalog.get_sku(code)


def script_json(*, price: str = "¥19.90", hook: str = "家人们，追剧党看过来！") -> dict:
    """A script as a model would answer it (JSON), quoting `price` in every call to action."""
    def variant(duration: int, points: list[str]) -> dict:
        return {"duration": duration, "hook": hook, "pain_point": "想追的剧总要会员，广告又长？",
                "selling_points": points, "proof": "我自己一直在用，画质清楚不卡顿。",
                "call_to_action": f"视频会员月卡到手价{price}，主页链接下单。"}
    return {"title": "夏日追剧必备", "variants": [variant(15, ["热门剧集抢先看"]),
                                                 variant(30, ["热门剧集抢先看", "蓝光画质"]),
                                                 variant(60, ["热门剧集抢先看", "蓝光画质", "多端通用"])],
            "music": ["轻快", "夏日"], "cover": ["大字标题", "追剧表情"]}



# ---- issue 16: moderation ----

def moderation_word(word: str, kind: str = "sensitive", action: str | None = None):  # noqa: ANN201
    """A word added to a list through the service, as an operator would."""
    from models import moderation

    with db.connection_context():
        return moderation.add_word(kind, word, actor="operator:test", action=action)


def moderation_decisions(**filters) -> list:  # noqa: ANN003
    """The decision log, newest first (models.moderation_log.Filters keywords)."""
    from models import moderation_log

    with db.connection_context():
        return moderation_log.decisions(moderation_log.Filters(**filters), limit=500)


# ---- issue 16: live content ----

def online_ai(rt, fake_openai, **overrides):  # noqa: ANN001, ANN003, ANN201
    """A model provider (content_ai.provider.Provider) on the fake OpenAI-compatible server, with
    short timeouts, no retry and no cache (each call reaches the fake): for rt.ai in a test."""
    from content_ai.provider import Provider
    from tests.conftest import AI_KEY

    values: dict[str, object] = dict(AI_BASE_URL=fake_openai.base_url_v1, AI_API_KEY=AI_KEY, AI_MODEL="fake-chat",
                                     AI_TIMEOUT_S=1.0, AI_RETRIES=0, AI_BREAKER_FAILURES=3, AI_BREAKER_OPEN_S=60,
                                     AI_CACHE_S=0, AI_DAILY_QUOTA=1000)
    values.update(overrides)
    return Provider(rt.settings.model_copy(update=values), rt.redis)


def talk_session(shop, host: Creator | None = None, *, state: str = "scheduled", lottery: bool = True,  # noqa: ANN001
                 title: str = "周五福利专场") -> tuple[Creator, int, list[Sku]]:
    """A session scheduled through models.live_planning.schedule two hours from now with two
    pinned products: a laddered one (50 at ¥9.90, then 50 at ¥19.90, retail ¥29.90) and a plain
    one (¥49.80); with `lottery`, a reservation lottery (10 reservations, 2 prizes of a third
    SKU); taken live when `state` is "live". (host, session id, [laddered, plain])."""
    from models import live, live_orders, live_planning

    live_orders.forget_cached_pins()
    host = host or creator(name="小星")
    laddered_sku = shop.card_sku(keys=5, price=2990)
    plain = shop.card_sku(keys=5, price=4980)
    spec = live_planning.SessionSpec(
        title, utcnow() + dt.timedelta(hours=2), 60,
        pins=[live_planning.PinSpec(laddered_sku.code, ladder={"tiers": [{"units": 50, "price_fen": 990},
                                                                         {"units": 50, "price_fen": 1990}]}),
              live_planning.PinSpec(plain.code)],
        lottery={"threshold": 10, "prizes": 2, "prize_sku": shop.card_sku(keys=5, price=990).code} if lottery else None)
    with db.connection_context():
        session = live_planning.schedule(host, spec, actor="test")
        if state == "live":
            live.go_live(host, session.id, actor="test")
    return host, session.id, [laddered_sku, plain]


def track_json(skus: list[Sku], *, welfare: str = "预约满 10 人开奖，抽 2 位送好礼！",
               price: str = "¥9.90") -> dict:
    """A talk track as a model would answer it (JSON), quoting `price` for the laddered product."""
    return {"opening": "家人们晚上好，欢迎来到直播间！",
            "products": [{"sku": skus[0].code, "text": f"这款会员卡直播间阶梯价，前50位只要{price}！"},
                         {"sku": skus[1].code, "text": "这款到手价 ¥49.80，想要的扣想要。"}],
            "welfare": welfare, "closing": "感谢大家，我们下次直播见！"}


def funnel_creator(rank: int, *, plays: int = 0, entries: int = 0, orders: int = 0, sku: Sku | None = None,
                   name: str = "") -> Creator:
    """A creator of star level `rank` with `plays` video plays and `entries` live-room entries
    (activity events as imported from a platform CSV) and `orders` paid orders as seller (written
    directly; needs `sku` when orders > 0)."""
    made = creator(name=name, rank=rank)
    events = [TrackEvent(f"fc-{next(_n)}", made.code, kind, "v1", count, utcnow() - dt.timedelta(minutes=5))
              for kind, count in (("video_play", plays), ("live_entry", entries)) if count]
    if events:
        with db.connection_context():
            activity.record_events(events, user_id=None, source="csv")
    if orders:
        assert sku is not None
        order_rows(sku, orders, seller=made, openid=f"fc-buyer-{made.id}")
    return made



# ---- issue 16: hot topics ----

# A small catalog for hot-topic pairing: (code, product line, SKU name, description, price fen).
TOPIC_CATALOG = (
    ("VIP-VIDEO", "视频会员", "腾讯视频会员月卡", "热播剧、电影、综艺随心看", 1990),
    ("MUSIC", "音乐会员", "QQ音乐绿钻月卡", "无损音质、付费歌曲畅听", 1500),
    ("GAME", "游戏点券", "王者荣耀点券", "皮肤、英雄随心兑", 3000),
    ("COFFEE", "咖啡券", "瑞幸咖啡兑换券", "门店通用", 1290),
    ("PHONE", "话费充值", "手机话费50元", "全国三网话费快充", 4980),
)


def topic_catalog() -> dict[str, Sku]:
    """TOPIC_CATALOG as active products and card-key SKUs, by code."""
    made = {}
    with db.connection_context():
        for code, line, name, description, price in TOPIC_CATALOG:
            product = catalog.create_product(line, description)
            made[code] = catalog.create_sku(product, code=code, name=name, kind=Kind.CARD_KEY,
                                            supply_price_fen=price // 2, retail_price_fen=price)
    return made


class TopicFeed:
    """A loopback HTTP server serving hot-topic feeds: GET /ok (a JSON list), /wrapped
    ({"data": {"list": [...]}}), /slow (waits `slow_s` before answering), /drip (sends a byte
    at a time, forever), /500, /garbage (not JSON), /big (over any small byte cap), /empty
    ([]), /redirect (to file:///etc/passwd). `hits` counts requests per path."""

    def __init__(self, topics: list | None = None) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.topics = topics if topics is not None else [{"title": "周末宅家追剧", "heat": 98000},
                                                         {"title": "打工人续命咖啡", "hot": "12万"},
                                                         "王者荣耀新赛季"]
        self.slow_s = 3.0
        self.hits: dict[str, int] = {}
        self.stopping = threading.Event()
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                import json as _json
                import time as _time

                path = self.path.split("?")[0]
                feed.hits[path] = feed.hits.get(path, 0) + 1
                if path == "/slow":
                    feed.stopping.wait(feed.slow_s)
                    return self._send(200, _json.dumps(feed.topics).encode())
                if path == "/drip":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    try:
                        self.wfile.write(b"[")
                        while not feed.stopping.is_set():
                            self.wfile.write(b" ")
                            self.wfile.flush()
                            _time.sleep(0.05)
                    except OSError:
                        pass
                    return None
                if path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "file:///etc/passwd")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                bodies = {
                    "/ok": (200, _json.dumps(feed.topics, ensure_ascii=False).encode()),
                    "/wrapped": (200, _json.dumps({"data": {"list": feed.topics}}, ensure_ascii=False).encode()),
                    "/500": (500, b'{"error": "boom"}'),
                    "/garbage": (200, b"<html>not json</html>"),
                    "/big": (200, b"[" + b'"x",' * 400_000 + b'"x"]'),
                    "/empty": (200, b"[]"),
                }
                status, body = bodies.get(path, (404, b"{}"))
                return self._send(status, body)

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> TopicFeed:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()



# ---- issue 16: call log ----

def ai_call(**fields) -> None:  # noqa: ANN003
    """One ai_call row written as the provider writes it (models.ai_calls.record); `at` defaults
    to now. Fields: kind, outcome, model, purpose, creator_id, latency_ms, tokens, cost_mfen."""
    from models import ai_calls

    values = {"kind": "chat", "outcome": "ok", "model": "fake-chat", **fields}
    assert ai_calls.record(ai_calls.CallRow(**values))


def ai_call_rows() -> list:
    """Every ai_call row, oldest first."""
    from models.ai_calls import AICall

    with db.connection_context():
        return list(AICall.select().order_by(AICall.id))
