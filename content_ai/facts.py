"""The facts an answer may use: one document per active SKU, enabled FAQ entry and rule.

- SKU documents (`sku:CODE`) are indexed by product title, SKU name, code, description and the
  words of their kind; the fact itself (current price, stock state, how it is delivered) is read
  from the database when an answer is composed (`sku_facts`), never from the index.
- FAQ documents (`faq:ID`) carry the operators' entry (models/faq.py) as written.
- Rule documents (`rule:NAME`) are written from the settings and the level table: refund window,
  withdrawal minimum / fee / payout delay, delivery and resending, levels and rates, joining,
  markup and quantity limits. Changing a setting changes the rule text (and the index version).

Every fact's text carries its citation marker ("[sku:IQY-GOLD-1M]"), which the guard ignores.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import peewee as pw

from models.money import rmb

KIND_WORDS = {
    "card_key": "卡密 会员 月卡 兑换码 激活码",
    "serial": "序列号 授权 激活码 软件",
    "topup": "直充 充值 到账 手机号",
    "bundle": "礼包 组合 套餐 一起发货",
}
KIND_WAY = {
    "card_key": "付款后自动发货，卡密发到聊天里，也可以私聊机器人发送「我的卡券」查看",
    "serial": "付款后自动发货，序列号在「我的卡券」里查看",
    "topup": "下单时填写手机号，由上游直充到账",
    "bundle": "礼包里的卡密付款后一起自动发货，在「我的卡券」查看",
}


@dataclass(frozen=True)
class Doc:
    id: str  # "sku:CODE", "faq:3", "rule:refund"
    kind: str  # "sku" | "faq" | "rule"
    title: str  # what the answer names it by
    index_text: str  # what retrieval reads
    body: str  # the fact (SKU facts are re-read at answer time)
    names: str = ""  # a SKU's title, name and code: what names the product in a question

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.index_text.encode()).hexdigest()


def percent(bp: int) -> str:
    whole, rest = divmod(int(bp), 100)
    return f"{whole}%" if not rest else f"{whole}.{rest:02d}".rstrip("0") + "%"


# ---- SKUs ---------------------------------------------------------------------------------------

def catalog_version() -> tuple:
    """Changes with any SKU or product added, renamed, priced, activated or deactivated."""
    from models.catalog import Product, Sku

    length = pw.fn.LENGTH
    sku = Sku.select(pw.fn.COUNT(Sku.id), pw.fn.MAX(Sku.id), pw.fn.SUM(length(Sku.name) + length(Sku.code)),
                     pw.fn.SUM(pw.Case(None, [(Sku.active, Sku.id)], 0))).tuples().first()
    product = Product.select(pw.fn.COUNT(Product.id), pw.fn.SUM(length(Product.title) + length(Product.description)),
                             pw.fn.SUM(pw.Case(None, [(Product.active, Product.id)], 0))).tuples().first()
    return tuple(str(v) for v in (*(sku or ()), *(product or ())))


def sku_docs(limit: int = 5000) -> list[Doc]:
    from models.catalog import Product, Sku

    rows = (Sku.select(Sku.code, Sku.name, Sku.kind, Product.title, Product.description).join(Product)
            .where(Sku.active & Product.active).order_by(Sku.id).limit(limit).tuples())
    docs = []
    for code, name, kind, title, description in rows:
        label = name if title and title in name else f"{title}·{name}"
        # the names twice, the description once: a product named in a bundle's description is not the bundle
        text = " ".join(x for x in (title, name, code, title, name, (description or "")[:200], KIND_WORDS.get(kind, ""))
                        if x)
        docs.append(Doc(id=f"sku:{code}", kind="sku", title=label, index_text=text, body=label,
                        names=f"{title} {name} {code}"))
    return docs


def stock_state(kind: str, available: int) -> str:
    if kind == "topup":
        return "可以充值（不限量）" if available > 0 else "暂停充值"
    return "有货" if available > 0 else "已售罄"


@dataclass(frozen=True)
class SkuFact:
    code: str
    label: str
    price_fen: int
    kind: str
    in_stock: bool
    text: str


def sku_facts(codes: list[str]) -> dict[str, SkuFact]:
    """The current facts of these SKUs (active ones only), read now: price, stock, delivery."""
    from models import inventory
    from models.catalog import Product, Sku

    if not codes:
        return {}
    skus = list(Sku.select(Sku, Product).join(Product)
                .where(Sku.code.in_(codes) & Sku.active & Product.active))
    units = inventory.available(skus) if skus else {}
    found = {}
    for sku in skus:
        title = sku.product.title
        label = sku.name if title and title in sku.name else f"{title}·{sku.name}"
        state = stock_state(sku.kind, units.get(sku.id, 0))
        text = (f"商品「{label}」[sku:{sku.code}]：现价 {rmb(sku.retail_price_fen)}，{state}；"
                f"在小程序搜索「{sku.name}」即可下单，{KIND_WAY.get(sku.kind, '付款后自动发货')}。")
        found[sku.code] = SkuFact(sku.code, label, sku.retail_price_fen, sku.kind,
                                  units.get(sku.id, 0) > 0, text)
    return found


# ---- FAQ ----------------------------------------------------------------------------------------

def faq_docs() -> list[Doc]:
    from models import faq

    return [Doc(id=f"faq:{e.id}", kind="faq", title=e.question,
                index_text=f"{e.question} {e.keywords} {e.question} {e.answer[:200]}",
                body=f"问：{e.question} 答：{e.answer} [faq:{e.id}]") for e in faq.enabled()]


# ---- rules --------------------------------------------------------------------------------------

def _levels() -> list[Any]:
    from models.levels import table

    return table()


def rule_docs(settings: Any) -> list[Doc]:
    s = settings
    days, fee = s.REFUND_WINDOW_DAYS, percent(s.WITHDRAW_FEE_BP)
    rules = [
        ("refund", "退款规则", "退款 退货 退钱 售后 不想要 申请退款 退款期 几天 可以退吗 能退吗 refund",
         f"退款规则 [rule:refund]：虚拟商品卡密发货后即生效，已发货的卡密一般不支持退款；"
         f"未发货或充值失败的订单可以申请退款，"
         f"请在付款后 {days} 天的售后期内，在小程序「我的订单」提交退款申请。"),
        ("withdraw", "提现规则", "提现 手续费 到账 打款 最低 多少可以提 什么时候能提 可提现 门槛 取钱 零钱 收益 "
                             "withdraw",
         f"提现规则 [rule:withdraw]：可提现余额满 {rmb(s.WITHDRAW_MIN_FEN)} 可以提现，手续费 {fee}"
         f"（部分等级有减免），审核通过后约 {max(s.WITHDRAW_PAYOUT_DELAY_H, 1)} 小时内打款到微信零钱；"
         f"佣金在订单付款 {days} 天后（售后期结束）转为可提现。私聊机器人发送「提现 金额」即可申请。"),
        ("delivery", "发货规则", "发货 卡密 自动发货 多久发货 秒发 立刻 到账 我的卡券 在哪看 卡券 怎么收 delivery",
         "发货规则 [rule:delivery]：卡密类商品付款成功后系统自动发货，卡密直接发到聊天里；"
         "私聊机器人发送「我的卡券」随时查看；话费等直充商品填写手机号，由上游直充到账。"),
        ("resend", "补发卡密", "没收到 收不到 补发 重新发 丢了 卡密不见了 找不到 订单号 没发货",
         "补发卡密 [rule:resend]：没收到卡密时，先私聊机器人发送「我的卡券」查看；"
         "如果里面没有，私聊发送「补发 订单号」重新获取，卡密会再次发到聊天里。"),
        ("join", "加入千星计划", "加入 创作者 千星计划 入驻 门槛 费用 收费 一星 入门 报名 怎么当",
         f"加入千星计划 [rule:join]：加入免费，没有任何门槛费用；私聊机器人发送「/join」或点击好友的邀请链接加入。"
         f"发布 {s.ENTRY_VIDEOS} 条推广视频并直接邀请 {s.ENTRY_INVITES} 位好友即可成为一星创作者。"),
        ("markup", "加价规则", "加价 定价 改价 加价上限 最多加 自己定价",
         f"加价规则 [rule:markup]：创作者可以在零售价上加价，加价默认最多为零售价的 {percent(s.DEFAULT_MAX_MARKUP_BP)}"
         "（个别商品另有上限）；私聊机器人发送「加价 商品编码 金额」设置。"),
        ("quantity", "购买数量", "数量 一次买几张 多张 限购 上限 最多买",
         f"购买数量 [rule:quantity]：每单最多购买 {s.MAX_QUANTITY} 件（个别商品另有限购），需要更多请分几次下单。"),
    ]
    levels = _levels()
    if levels:
        own = "、".join(f"{lv.name}{percent(lv.own_rate_bp)}" for lv in levels)
        team = "、".join(f"{lv.name}{percent(lv.team1_rate_bp)}/{percent(lv.team2_rate_bp)}" for lv in levels)
        rules.append(("levels", "等级规则", "等级 星级 佣金 比例 提成 分佣 几个点 团队奖励 一星 二星 三星 十星 百星 "
                                        "千星 升级",
                      f"等级规则 [rule:levels]：自己成交的佣金比例（与商品比例取高者）：{own}；"
                      f"团队奖励（一级/二级）：{team}；佣金只来自真实成交的订单，邀请本身没有奖励。"))
    return [Doc(id=f"rule:{name}", kind="rule", title=title, index_text=f"{title} {words} {body}", body=body)
            for name, title, words, body in rules]
