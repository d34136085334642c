"""The offline content path: Chinese templates filled from real data, no network.

`generate_script` writes a short sales script (short video, live room, WeChat moments or a group
post, picked from the topic) around a creator and optionally a product; every script is marked
as an advertisement (Chinese advertising rules). `answer` answers common group questions (price
of a product, delivery and card keys, refunds, withdrawals, the creator plan) from `Facts`: the
active catalog, the level table and the settings; it returns None when it has nothing useful
to say, so a group bot stays silent rather than babble.

Both are pure given their inputs (a `Facts` can be passed in; by default it is read from the
database), deterministic (the same topic gives the same script), and never echo more than a
bounded slice of user text.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from models.money import rmb

TOPIC_MAX = 40
QUESTION_MAX = 500
AD_LABEL = "【广告】"


@dataclass(frozen=True)
class ProductInfo:
    name: str  # what a buyer sees, e.g. "视频会员月卡"
    price_fen: int  # what the buyer pays (through the creator's link: retail + markup)
    sku: str = ""
    title: str = ""  # the product line, e.g. "视频会员"
    link: str = ""  # where to buy (a mini-program path or a URL)

    @property
    def label(self) -> str:
        if self.title and self.title not in self.name:
            return f"{self.title}·{self.name}"
        return self.name


@dataclass(frozen=True)
class Facts:
    products: list[ProductInfo] = field(default_factory=list)
    withdraw_min_fen: int = 10_000
    withdraw_fee_bp: int = 100
    payout_delay_h: int = 24
    refund_window_days: int = 7
    levels: list[tuple[str, int]] = field(default_factory=list)  # (name, own-sale rate bp)


def percent(bp: int) -> str:
    whole, rest = divmod(int(bp), 100)
    return f"{whole}%" if not rest else f"{whole}.{rest:02d}".rstrip("0") + "%"


def _clean(text: str, limit: int) -> str:
    text = unicodedata.normalize("NFKC", text or "")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return re.sub(r"\s+", " ", text).strip()[:limit]


def _pick(options: tuple[str, ...], seed: str) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return options[digest[0] % len(options)]


# ---- scripts ----------------------------------------------------------------------------------

_HOOKS = (
    "家人们，今天给大家挖到一个宝藏！",
    "先别划走，这条视频能帮你省钱！",
    "最近好多朋友问我在用什么，今天一次说清楚。",
    "三秒告诉你，为什么我最近天天用它。",
)
_CLOSES = (
    "喜欢的话点个关注，下期继续给大家分享好物。",
    "有问题评论区留言，我一条条回复。",
    "需要的朋友抓紧，错过了别说没提醒你。",
)


def _kind(topic: str) -> str:
    if "直播" in topic:
        return "live"
    if "朋友圈" in topic:
        return "moments"
    if "群" in topic or "社群" in topic:
        return "group"
    return "video"


def generate_script(topic: str, *, creator_name: str, product: ProductInfo | None = None) -> str:
    """A ready-to-use sales script in Chinese for `topic` (empty: a general recommendation),
    spoken by `creator_name`, around `product` when given (name, price and where to buy)."""
    topic = _clean(topic, TOPIC_MAX) or "好物推荐"
    name = _clean(creator_name, 32) or "千星创作者"
    seed = f"{topic}|{name}|{product.sku if product else ''}"
    kind = _kind(topic)
    if product is not None:
        item = _clean(product.label, 60) or "这款好物"
        price = rmb(product.price_fen)
        where = f"下单入口：{product.link}" if product.link else "下单入口：点我主页链接或私聊我"
        pitch = (f"今天推荐的是「{item}」，到手价只要 {price}，付款后自动发货，"
                 "卡券直接发到你的账户，随时查看。")
    else:
        item, price, where = "这些好物", "", "想要的朋友私聊我，发你专属链接"
        pitch = "我精选的每一件都是自己用过、觉得值的，价格透明，售后有保障。"
    hook = _pick(_HOOKS, seed)
    close = _pick(_CLOSES, seed + "close")
    if kind == "live":
        lines = [
            f"{AD_LABEL}直播话术 · {topic}",
            f"【开场】欢迎来到{name}的直播间！新进来的朋友点个关注，今天福利多多。",
            f"【介绍】{pitch}",
            f"【互动】想要{item}的扣1，我看看有多少人，人多我去申请加量！",
            f"【促单】{'价格就是 ' + price + '，' if price else ''}库存有限，拍完即止，现在下单最划算。",
            f"【收尾】{where}。{close}",
        ]
    elif kind == "moments":
        lines = [
            f"{AD_LABEL}{hook}",
            pitch,
            f"✅ 自动发货  ✅ 随时查看  ✅ 售后无忧{'  💰 ' + price if price else ''}",
            f"{where} —— {name}",
        ]
    elif kind == "group":
        lines = [
            f"{AD_LABEL}群友专享 · {topic}",
            f"大家好，我是{name}。{pitch}",
            f"{'今日价 ' + price + '，' if price else ''}需要的群友直接下单，有问题@我。",
            where,
        ]
    else:
        lines = [
            f"{AD_LABEL}短视频脚本 · {topic}",
            f"【0-3秒 钩子】{hook}",
            f"【3-15秒 卖点】{pitch}",
            f"【15-25秒 信任】我是{name}，自己一直在用，推荐给你们的都经得起比较。",
            f"【25-30秒 行动】{'现在只要 ' + price + '，' if price else ''}{where}。{close}",
            "#好物推荐 #千星计划",
        ]
    return "\n".join(lines)


# ---- answers ----------------------------------------------------------------------------------

_DELIVERY = ("卡密", "发货", "没收到", "收不到", "到账", "卡券", "激活码", "兑换码")
_REFUND = ("退款", "退货", "售后", "退钱")
_WITHDRAW = ("提现", "手续费", "到账时间")
_PLAN = ("佣金", "分佣", "创作者", "加入", "带货", "升级", "等级", "星级", "邀请")
_BUY = ("怎么买", "如何买", "哪里买", "下单", "购买", "多少钱", "价格", "价钱", "有货", "链接")
_HUMAN = ("客服", "人工", "投诉")


def _has(text: str, words: tuple[str, ...]) -> bool:
    return any(w in text for w in words)


def _match_products(text: str, products: list[ProductInfo]) -> list[ProductInfo]:
    lowered = text.lower()
    found = []
    for p in products:
        names = {p.name, p.title, p.sku}
        if any(n and len(n) >= 2 and n.lower() in lowered for n in names):
            found.append(p)
    return found


def answer(question: str, *, facts: Facts | None = None, settings: Any = None) -> str | None:
    """An answer to a group question, or None when there is nothing useful to say. With
    `settings` only: `content_ai.answers.reply` (retrieval over the catalog, FAQ and rules), its
    text unless it hands off. With `facts`: the keyword templates below."""
    if facts is None:
        if settings is None:
            raise ValueError("answer() needs the facts or the settings to read them with")
        # the grounded engine (content_ai/answers.py): its text, or None for nothing to say or a hand-off
        from content_ai.answers import reply

        found = reply(question, settings=settings)
        return found.text if found.text and not found.handoff else None
    text = _clean(question, QUESTION_MAX)
    if len(text) < 2:
        return None
    matched = _match_products(text, facts.products)
    if matched:
        lines = [f"「{p.label}」现价 {rmb(p.price_fen)}" for p in matched[:3]]
        return "；".join(lines) + "。在小程序搜索商品名即可下单，付款后自动发货，私聊机器人发送「我的卡券」查看。"
    if _has(text, _DELIVERY):
        return ("付款成功后系统自动发货。私聊机器人发送「我的卡券」查看卡密；"
                "没收到通知可以私聊发送「补发 订单号」重新获取。")
    if _has(text, _REFUND):
        return ("虚拟商品发货后卡密即生效，未发货的订单可申请退款；"
                "有问题请在小程序「我的订单」联系客服，我们会尽快处理。")
    if _has(text, _WITHDRAW):
        return (f"佣金在订单完成 {facts.refund_window_days} 天后转为可提现，"
                f"满 {rmb(facts.withdraw_min_fen)} 可提现，手续费 {percent(facts.withdraw_fee_bp)}，"
                f"约 {max(facts.payout_delay_h, 1)} 小时内到账（T+1）。私聊机器人发送「提现 金额」即可申请。")
    if _has(text, _PLAN):
        rates = "、".join(f"{name}{percent(bp)}" for name, bp in facts.levels[:6])
        return ("加入千星计划免费，无任何门槛费用。佣金只来自真实成交的订单"
                + (f"，自购/分享成交佣金比例：{rates}" if rates else "")
                + "。私聊机器人发送「/join」或点击好友的邀请链接即可加入。")
    if _has(text, _BUY):
        if facts.products:
            sample = "；".join(f"{p.label} {rmb(p.price_fen)}" for p in facts.products[:3])
            return f"在小程序里搜索商品即可下单，付款后自动发货。热门商品：{sample}。"
        return "在小程序里搜索商品即可下单，付款后自动发货。"
    if _has(text, _HUMAN):
        return "需要人工帮助请私聊机器人发送「帮助」，或在小程序「我的」页面联系客服。"
    return None


def load_facts(settings: Any, limit: int = 200) -> Facts:
    """Facts from the database and the settings (`qianxing.settings.Settings`, given by the
    caller): the active catalog at retail price, the level table and the withdrawal rules."""
    from models.catalog import Product, Sku
    from models.levels import table

    rows = (Sku.select(Sku.code, Sku.name, Sku.retail_price_fen, Product.title).join(Product)
            .where(Sku.active & Product.active).order_by(Sku.id).limit(limit).tuples())
    products = [ProductInfo(name=name, price_fen=price, sku=code, title=title)
                for code, name, price, title in rows]
    s = settings
    return Facts(products=products, withdraw_min_fen=s.WITHDRAW_MIN_FEN, withdraw_fee_bp=s.WITHDRAW_FEE_BP,
                 payout_delay_h=s.WITHDRAW_PAYOUT_DELAY_H, refund_window_days=s.REFUND_WINDOW_DAYS,
                 levels=[(lv.name, lv.own_rate_bp) for lv in table()])
