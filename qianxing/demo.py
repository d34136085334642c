"""Demo catalog and vault for `qianxing seed-demo` and `qianxing run` (idempotent: skips what
exists), and `demo_summary()`, which reads back from the database what a newcomer needs to try
it: the creators' invite codes, the live session, the demo group."""

from __future__ import annotations

import datetime as dt
import secrets

from models import catalog, coupons, groupbuy, live, live_planning, network, vault
from models.catalog import Kind, Sku
from models.db import db, utcnow
from models.users import User, get_or_create_by_openid
from qianxing.demo_content import content_summary, seed_content
from qianxing.demo_risk import risk_summary, seed_risk


def _keys(prefix: str, n: int) -> list[tuple[int, str]]:
    return [(i + 1, f"{prefix}-{secrets.token_hex(4).upper()}-{secrets.token_hex(4).upper()}")
            for i in range(n)]


def seed_demo(keys_per_sku: int = 50) -> list[str]:
    """Create what is missing; returns what it created, one line each (empty: all present)."""
    if Sku.select().where(Sku.code == "IQY-GOLD-1M").exists():
        # a database seeded before the demo group or the scheduled session existed gets them too
        return seed_group() + seed_live_plan() + seed_promotions() + seed_risk() + _seed_content()
    created = []
    with db.atomic():
        video = catalog.create_product("爱奇艺黄金会员", "官方直充卡密，购买后在“我的卡券”查看")
        iqy = catalog.create_sku(video, code="IQY-GOLD-1M", name="爱奇艺黄金会员 月卡",
                                 kind=Kind.CARD_KEY, supply_price_fen=1500, retail_price_fen=1990,
                                 commission_bp=1500)
        music = catalog.create_product("QQ音乐绿钻", "豪华绿钻月卡卡密")
        qqm = catalog.create_sku(music, code="QQM-GREEN-1M", name="QQ音乐绿钻 月卡",
                                 kind=Kind.CARD_KEY, supply_price_fen=1000, retail_price_fen=1500)
        office = catalog.create_product("办公软件授权", "同一序列号，多人可用")
        serial = catalog.create_sku(office, code="WPS-PRO-1Y", name="WPS 专业版 年度授权",
                                    kind=Kind.SERIAL, supply_price_fen=3000, retail_price_fen=4900,
                                    stock=200, commission_bp=3000, min_rank=2)
        phone = catalog.create_product("话费充值", "输入手机号，自动到账")
        catalog.create_sku(phone, code="MOBILE-50", name="话费 50 元", kind=Kind.TOPUP,
                           supply_price_fen=4850, retail_price_fen=4980, stock=1000)
        bundle = catalog.create_product("影音双月礼包", "爱奇艺 + QQ音乐，一起发货")
        catalog.create_sku(bundle, code="AV-BUNDLE-1M", name="影音礼包 月卡", kind=Kind.BUNDLE,
                           supply_price_fen=2500, retail_price_fen=3290,
                           bundle=[(iqy, 1), (qqm, 1)])
        vault.seal_serial(serial, "WPS-" + secrets.token_hex(10).upper())
    for sku, prefix in ((iqy, "IQY"), (qqm, "QQM")):
        report = vault.import_keys(sku, _keys(prefix, keys_per_sku))
        created.append(f"{sku.code}: {report.imported} keys")
    created += seed_creators(iqy)
    created += seed_group()
    created += seed_live_plan()
    created += seed_promotions()
    created += seed_risk()
    created += _seed_content()
    return created


# Issue 14: a claim code (满 ¥30 减 ¥5 on the whole shelf) and a 3-person group-buy of the QQ
# music card at ¥9.90: claim with POST /api/v1/coupons/claim, start a team with POST
# /api/v1/orders {"sku": "QQM-GREEN-1M", "group_activity": <id>}.
DEMO_COUPON_CODE = "QIANXING-2026-NEW"
DEMO_GROUP_TITLE = "绿钻三人团"


def seed_promotions() -> list[str]:
    """The demo coupon and group-buy activity, unless present."""
    made = []
    now = utcnow().replace(microsecond=0)
    if not coupons.Coupon.select().where(coupons.Coupon.code == coupons.normalize_code(DEMO_COUPON_CODE)).exists():
        coupon = coupons.create_coupon(coupons.CouponSpec(
            name="新人满30减5", kind=coupons.CouponKind.AMOUNT_OFF.value, starts_at=now,
            ends_at=now + dt.timedelta(days=365), threshold_fen=3000, amount_off_fen=500, code=DEMO_COUPON_CODE,
            max_uses=1000, per_user_limit=1), actor="system:demo")
        made.append(f"coupon {coupon.name}: claim code {DEMO_COUPON_CODE}")
    if Sku.select().where(Sku.code == "QQM-GREEN-1M").exists() and not groupbuy.GroupActivity.select().where(
            groupbuy.GroupActivity.title == DEMO_GROUP_TITLE).exists():
        activity = groupbuy.create_activity(groupbuy.ActivitySpec(
            sku_code="QQM-GREEN-1M", title=DEMO_GROUP_TITLE, size=3, window_s=86_400, group_price_fen=990,
            starts_at=now, ends_at=now + dt.timedelta(days=30)), actor="system:demo")
        made.append(f"group-buy activity {activity.id}: {DEMO_GROUP_TITLE}, 3 people at 9.90")
    return made


# A small team: 星主 -> two direct recruits -> three second-level ones. Log in as any of them
# with POST /api/v1/auth/dev-login {"openid": "demo-creator-1"}.
DEMO_TEAM = (("demo-creator-1", "星主小千", None, 3), ("demo-creator-2", "阿星", 0, 1),
             ("demo-creator-3", "小北", 0, 1), ("demo-creator-4", "木木", 1, 0),
             ("demo-creator-5", "阿杰", 1, 0), ("demo-creator-6", "糖糖", 2, 0))


def seed_creators(featured: Sku) -> list[str]:
    made: list[network.Creator] = []
    for openid, name, parent, rank in DEMO_TEAM:
        creator = network.become_creator(get_or_create_by_openid(openid), name)
        network.Creator.update(rank=rank).where(network.Creator.id == creator.id).execute()
        if parent is not None:
            network.bind(creator, made[parent].code, network.BindVia.TYPED)
        made.append(network.Creator.get_by_id(creator.id))
    network.set_markup(made[0], featured.code, 200, default_cap_bp=3000)
    session = live.start_live(made[0], "爆款会员专场")
    return [f"creator team: {len(made)} creators, {made[0].name} marks {featured.code} up, "
            f"live session {session.id}"]


# The console chat's group `demo` (`qianxing chat --as bob --group demo`): its chat key is
# "console:<name given to --group>" (bots.types.Incoming.chat_key).
DEMO_GROUP = "console:demo"
DEMO_WELCOME = ("欢迎 {name} 加入千星演示群！试试发送“价格”“发货”“优惠”看自动回复，"
                "发送 /help 查看机器人命令。")
DEMO_RULES = (  # (pattern, reply); {prices} is filled from the catalog
    ("价格", "{prices}。通过欢迎语里的链接进店下单。"),
    ("发货", "付款后几秒内自动发货：卡密在小程序“我的卡券”里查看，礼包会收到两张卡密。"),
    ("优惠", "群友福利：通过欢迎语里的链接进店，由星主小千为你服务，付款后几秒到账。"),
)


def _leader() -> network.Creator | None:
    user = User.get_or_none(User.openid == DEMO_TEAM[0][0])
    return network.Creator.get_or_none(network.Creator.user == user.id) if user else None


def _seed_content() -> list[str]:
    return seed_content(DEMO_GROUP, DEMO_TEAM[0][0], DEMO_TEAM[1][0])


def seed_group() -> list[str]:
    """Keyword rules and a welcome for the console group `demo` (skipped when it has rules)."""
    from bots.groups import configure, save_rule
    from models.chat import GroupRule
    from models.money import rmb

    if GroupRule.select().where(GroupRule.scope == DEMO_GROUP).exists():
        return []
    leader = _leader()
    prices = "，".join(f"{s.name} {rmb(s.retail_price_fen)}" for s in Sku.select().where(
        Sku.code.in_(["IQY-GOLD-1M", "QQM-GREEN-1M", "AV-BUNDLE-1M"])).order_by(Sku.id))
    with db.atomic():
        for priority, (pattern, reply) in enumerate(reversed(DEMO_RULES)):
            save_rule(DEMO_GROUP, "contains", pattern, reply.replace("{prices}", prices or "见商品列表"),
                      priority)
        configure(DEMO_GROUP, title="千星演示群", welcome_text=DEMO_WELCOME,
                  coupon_text="发送“优惠”查看群友福利", promo_ref=leader.code if leader else None)
    return [f"group {DEMO_GROUP}: {len(DEMO_RULES)} keyword rules and a welcome"]


DEMO_OPERATOR = "demo"


def demo_operator() -> str:
    """The readonly demo operator of the admin, with a fresh password each call (printed by
    `qianxing run`; readonly, so it can look at everything and change nothing)."""
    from models import operators

    password = secrets.token_urlsafe(9)
    with db.atomic():
        op = operators.Operator.get_or_none(operators.Operator.name == DEMO_OPERATOR)
        if op is None:
            op, _ = operators.create_operator(DEMO_OPERATOR, "readonly", password)
        operators.set_password(op, password)
        operators.set_role(op, "readonly")
        operators.set_active(op, True)
    return password


def demo_summary() -> list[str]:
    """What a newcomer needs to try the demo, read back from the database (so it is the same
    on every run): the creators' invite codes, the live session to buy in, the demo group."""
    lines = []
    made = []
    for openid, *_ in DEMO_TEAM:
        user = User.get_or_none(User.openid == openid)
        creator = network.Creator.get_or_none(network.Creator.user == user.id) if user else None
        if creator is not None:
            made.append(creator)
            lines.append(f"creator {creator.name}: invite code {creator.code} "
                         f"(dev-login openid {openid})")
    if not made:
        return ["no demo creators (run `qianxing seed-demo` on this database)"]
    leader = made[0]
    session = (live.LiveSession.select()
               .where((live.LiveSession.creator == leader.id) & (live.LiveSession.state == "live"))
               .order_by(live.LiveSession.id.desc()).first())
    if session is not None:
        lines.append(f"live session {session.id} ({session.title}) of {leader.name}: "
                     f'buy with "ref": "{leader.code}", "live": {session.id}')
    else:
        lines.append(f"no live session of {leader.name} is live: start one with POST "
                     f"/api/v1/creator/live as demo-creator-1")
    activity = groupbuy.GroupActivity.get_or_none(groupbuy.GroupActivity.title == DEMO_GROUP_TITLE)
    if activity is not None:
        lines.append(f'group-buy activity {activity.id} ({DEMO_GROUP_TITLE}): start a team with POST /api/v1/orders '
                     f'{{"sku": "QQM-GREEN-1M", "group_activity": {activity.id}}}; coupon code {DEMO_COUPON_CODE}')
    lines.append(f"group chat: .venv/bin/qianxing chat --as bob --group demo "
                 f"(rules: {', '.join(p for p, _ in DEMO_RULES)})")
    return lines + risk_summary() + content_summary()


# A scheduled session of 阿星 (demo-creator-2) tomorrow, with two pinned products and a price
# ladder on the first: see it at GET /api/v1/live/sessions/<id>, reserve it, start it with
# POST /api/v1/creator/live/sessions/<id>/start.
DEMO_PLAN_TITLE = "明晚会员福利专场"


def seed_live_plan() -> list[str]:
    """The demo's scheduled session, unless one is still scheduled (a past one was closed by
    the never-started job: a new one is planned)."""
    user = User.get_or_none(User.openid == DEMO_TEAM[1][0])
    host = network.Creator.get_or_none(network.Creator.user == user.id) if user else None
    if host is None or not Sku.select().where(Sku.code.in_(("IQY-GOLD-1M", "QQM-GREEN-1M"))).count() == 2:
        return []
    if live.LiveSession.select().where((live.LiveSession.creator == host.id) & (live.LiveSession.state == "scheduled")
                                       & (live.LiveSession.title == DEMO_PLAN_TITLE)).exists():
        return []
    start = (utcnow() + dt.timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    ladder = {"tiers": [{"units": 20, "price_fen": 990}, {"units": 30, "price_fen": 1490}]}
    pins = [live_planning.PinSpec("IQY-GOLD-1M", start + dt.timedelta(minutes=10), ladder),
            live_planning.PinSpec("QQM-GREEN-1M")]
    session = live_planning.schedule(host, live_planning.SessionSpec(DEMO_PLAN_TITLE, start, 90, pins=pins))
    return [f"scheduled live session {session.id} of {host.name} at {start:%Y-%m-%d %H:%M} UTC "
            f"(2 pinned products, a price ladder on IQY-GOLD-1M)"]
