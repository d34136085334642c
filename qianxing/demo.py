"""Demo catalog and vault for `qianxing seed-demo` (idempotent: skips what exists)."""

from __future__ import annotations

import secrets

from models import catalog, live, network, vault
from models.catalog import Kind, Sku
from models.db import db
from models.users import get_or_create_by_openid


def _keys(prefix: str, n: int) -> list[tuple[int, str]]:
    return [(i + 1, f"{prefix}-{secrets.token_hex(4).upper()}-{secrets.token_hex(4).upper()}")
            for i in range(n)]


def seed_demo(keys_per_sku: int = 50) -> list[str]:
    if Sku.select().where(Sku.code == "IQY-GOLD-1M").exists():
        return []
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
    return created


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
    return [f"creator {c.name}: code {c.code} (dev-login openid {o})"
            for c, (o, *_) in zip(made, DEMO_TEAM, strict=True)] + [
        f"live session {session.id}: buy with ref={made[0].code} and live={session.id}"]
