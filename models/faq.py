"""The FAQ that operators edit in the admin (issue 16): question, answer and search keywords.

The answer engine (content_ai/answers.py) retrieves enabled entries beside the catalog and the
rules built from the settings, and answers with an entry's text as written here; so the default
entries (`DEFAULTS`, seeded by migration 0022) state no refund window, fee or delay of their own:
those numbers live in the settings and reach a shopper through the rule facts.

- `create(question, answer, keywords, position, by)`, `update(entry_id, ..., by)`,
  `disable(entry_id, by)` / `update(..., enabled=True)`: validated (InvalidInput with a stable code:
  invalid_faq_question, invalid_faq_answer, invalid_faq_keywords, invalid_faq_position; NotFound
  faq_not_found; Conflict faq_question_taken), each stamping `updated_at` / `updated_by`.
- `enabled()` the entries the engine reads, `version()` a cheap signature that changes with any
  edit (the engine's index rebuild check).
"""

from __future__ import annotations

import re
from typing import Any

import peewee as pw

from models.db import BaseModel, db, utcnow
from models.errors import Conflict, InvalidInput, NotFound

QUESTION_MAX = 200
ANSWER_MAX = 1000
KEYWORDS_MAX = 200
POSITION_RANGE = (-1_000_000, 1_000_000)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class Faq(BaseModel):
    question = pw.CharField(max_length=QUESTION_MAX)
    answer = pw.TextField()
    keywords = pw.CharField(max_length=KEYWORDS_MAX, default="")  # words a shopper may use, space separated
    enabled = pw.BooleanField(default=True)
    position = pw.IntegerField(default=0)  # lower first in the admin list
    updated_at = pw.DateTimeField(default=utcnow)
    updated_by = pw.CharField(max_length=64, default="system")


TABLES: list[type[pw.Model]] = [Faq]

# (question, answer, keywords): a digital-goods shop and its creator plan. No refund window,
# fee, minimum or delay here: the rule facts carry those numbers from the settings.
DEFAULTS: tuple[tuple[str, str, str], ...] = (
    ("卡密怎么用？", "在机器人私聊发送「我的卡券」复制卡密，打开对应平台 App（如爱奇艺、"
     "QQ音乐）的兑换或激活页面，粘贴卡密即可开通。",
     "卡密 使用 兑换 激活 怎么用 兑换码 激活码 开通"),
    ("多久发货？", "卡密类商品付款成功后自动发货，卡密直接发到聊天里，也可以在「我的卡券」查看；"
     "话费等直充商品由上游充值，到账以运营商为准。",
     "发货 多久 什么时候 到货 等多久 发货时间"),
    ("可以开发票吗？", "虚拟商品暂不支持在线开具发票。如需发票，请转人工客服，提供订单号和抬头，"
     "由客服人工处理。",
     "发票 开票 报销 抬头 税号 invoice"),
    ("怎么退款？", "卡密发货后即生效，已发货的卡密一般不支持退款；未发货或充值失败的订单可以申请退款，"
     "在小程序「我的订单」里提交退款申请，具体时限见退款规则。",
     "退款 退货 退钱 申请退款 不想要了 售后 refund"),
    ("充值失败怎么办？", "话费等直充失败时系统会自动重试；仍然失败的订单会原路退款。"
     "长时间没有到账请把订单号发给客服核实。",
     "充值失败 话费 没到账 直充 充不进去 失败"),
    ("卡密没收到怎么办？", "先私聊机器人发送「我的卡券」查看；如果里面没有，发送「补发 订单号」重新获取，"
     "卡密会再次发到聊天里。",
     "没收到 收不到 没发货 卡密 丢了 找不到 补发"),
    ("在哪里看我的订单？", "小程序「我的订单」可以查看全部订单和状态；卡密在机器人私聊「我的卡券」里。",
     "订单 查询 订单记录 我的订单 购买记录"),
    ("支持哪些付款方式？", "目前支持微信支付，在小程序下单后直接用微信付款。",
     "付款 支付 微信支付 支付宝 付款方式 怎么付"),
    ("卡密会过期吗？", "卡密的有效期以对应平台的规则为准，建议拿到后尽快兑换使用。",
     "过期 有效期 期限 失效 多久有效"),
    ("可以一次买多张吗？", "可以，下单时选择数量即可；每单数量有上限，需要更多请分几次下单。",
     "多张 数量 批量 一次买 买几张 多买"),
    ("商品显示售罄怎么办？", "售罄表示库存暂时卖完了，补货后会重新上架，可以先看看其他商品或稍后再来。",
     "售罄 卖完 没货 缺货 补货 断货"),
    ("卡密可以发到群里吗？", "卡密相当于现金，请不要截图或发到群里；怀疑泄露请尽快兑换，或转人工客服处理。",
     "卡密 泄露 安全 截图 被盗 发群里 别人看到 被看到 给别人"),
    ("怎么加入千星计划成为创作者？", "私聊机器人发送「/join」或点击好友的邀请链接即可加入千星计划，"
     "加入免费，没有任何门槛费用。",
     "加入 创作者 千星计划 入驻 注册 成为 带货 门槛 怎么加入"),
    ("佣金怎么算？", "佣金只来自真实成交的订单：你自己卖出的订单按你的等级比例或商品本身的比例计算（取高的），"
     "你邀请的创作者成交后你还有团队奖励。各等级比例见等级规则。",
     "佣金 分佣 提成 怎么算 比例 收入 赚钱"),
    ("提现多久到账？", "私聊机器人发送「提现 金额」申请，审核通过后打款到你的微信零钱，到账时间、"
     "门槛和手续费见提现规则。",
     "提现 到账 多久 打款 零钱 取钱"),
    ("怎么升级等级？", "等级按视频播放、直播成交、自己成交和直接邀请人数综合评定，"
     "达到下一级的全部门槛后自动升级；私聊机器人发送「收益」可以查看升级进度。",
     "升级 等级 星级 升星 进度 门槛"),
    ("邀请好友有奖励吗？", "邀请本身没有奖励，也没有人头费；收入只来自真实成交，"
     "你邀请的创作者卖出商品后你可以获得团队奖励。",
     "邀请 拉人 人头 下级 团队 奖励 好友"),
    ("怎么推广商品？", "私聊机器人发送「推广 商品编码」获取你的专属链接和海报，分享出去，"
     "有人通过你的链接下单就计佣金。",
     "推广 链接 海报 分享 专属链接 带货"),
    ("可以自己加价卖吗？", "可以，私聊机器人发送「加价 商品编码 金额」设置加价，加价部分归你，"
     "但不能超过平台设定的上限。",
     "加价 定价 改价 自己定价 加价上限"),
    ("拼团怎么玩？", "在小程序商品页发起拼团，把链接发给好友，在规定时间内凑齐人数即成团；"
     "没有成团的订单会自动退款。",
     "拼团 团购 成团 几人团 开团"),
    ("优惠券怎么用？", "在小程序领取优惠券后，下单金额满足券的门槛时会自动抵扣，一张订单用一张券。",
     "优惠券 券 领券 抵扣 满减 兑换码 优惠码"),
    ("直播间的商品怎么买？", "直播时点击直播间置顶的商品链接下单即可，直播价只在直播期间有效。",
     "直播 直播间 直播价 置顶 链接"),
)


def _text(value: object, limit: int, code: str, what: str, *, required: bool = True) -> str:
    text = value if isinstance(value, str) else ""  # as typed: full-width punctuation is normal Chinese
    text = "\n".join(" ".join(line.split()) for line in text.strip().splitlines()).strip()
    if (required and not text) or len(text) > limit or _CONTROL.search(text):
        raise InvalidInput(f"{what}: 1 to {limit} characters without control characters" if required
                           else f"{what}: at most {limit} characters without control characters", code=code)
    return text


def _keywords(value: object) -> str:
    text = _text(value if value is not None else "", KEYWORDS_MAX, "invalid_faq_keywords", "keywords",
                 required=False)
    words = [w for w in re.split(r"[\s,，、;；]+", text) if w]
    return " ".join(dict.fromkeys(words))[:KEYWORDS_MAX]


def _position(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not POSITION_RANGE[0] <= value <= POSITION_RANGE[1]:
        raise InvalidInput("the position is a whole number from -1000000 to 1000000", code="invalid_faq_position")
    return value


def _actor(by: object) -> str:
    return (str(by or "system").strip() or "system")[:64]


def _clean(question: object, answer: object, keywords: object, position: object) -> dict[str, Any]:
    return {"question": _text(question, QUESTION_MAX, "invalid_faq_question", "question"),
            "answer": _text(answer, ANSWER_MAX, "invalid_faq_answer", "answer"),
            "keywords": _keywords(keywords), "position": _position(position)}


def _taken(question: str, but: int | None = None) -> None:
    query = Faq.select().where(Faq.question == question)
    if but is not None:
        query = query.where(Faq.id != but)
    if query.exists():
        raise Conflict(f"an FAQ entry asks {question!r} already", code="faq_question_taken")


def create(question: object, answer: object, keywords: object = "", position: object = 0, *,
           by: object = "system") -> Faq:
    """A new enabled entry."""
    values = _clean(question, answer, keywords, position)
    _taken(values["question"])
    with db.atomic():
        return Faq.create(**values, enabled=True, updated_at=utcnow(), updated_by=_actor(by))


def get(entry_id: int) -> Faq:
    found = Faq.get_or_none(Faq.id == entry_id)
    if found is None:
        raise NotFound(f"FAQ entry {entry_id} not found", code="faq_not_found")
    return found


def update(entry_id: int, *, question: object, answer: object, keywords: object = "", position: object = 0,
           enabled: bool = True, by: object = "system") -> dict[str, tuple[Any, Any]]:
    """Change an entry; returns what changed as {field: (before, after)} (empty: nothing)."""
    found = get(entry_id)
    after = {**_clean(question, answer, keywords, position), "enabled": bool(enabled)}
    if after["question"] != found.question:
        _taken(after["question"], but=entry_id)
    diff = {k: (getattr(found, k), v) for k, v in after.items() if getattr(found, k) != v}
    if diff:
        Faq.update(**{k: v for k, (_b, v) in diff.items()}, updated_at=utcnow(),
                   updated_by=_actor(by)).where(Faq.id == entry_id).execute()
    return diff


def disable(entry_id: int, *, by: object = "system") -> bool:
    """Stop answering with an entry; False when it was disabled already."""
    found = get(entry_id)
    if not found.enabled:
        return False
    Faq.update(enabled=False, updated_at=utcnow(), updated_by=_actor(by)).where(Faq.id == entry_id).execute()
    return True


def all_entries() -> list[Faq]:
    return list(Faq.select().order_by(Faq.position, Faq.id))


def enabled() -> list[Faq]:
    return list(Faq.select().where(Faq.enabled).order_by(Faq.position, Faq.id))


def version() -> tuple:
    """Changes whenever an entry is added, edited, enabled or disabled (one aggregate query)."""
    row = Faq.select(pw.fn.COUNT(Faq.id), pw.fn.MAX(Faq.id), pw.fn.MAX(Faq.updated_at),
                     pw.fn.SUM(pw.Case(None, [(Faq.enabled, 1)], 0))).tuples().first()
    return tuple(str(v) for v in (row or ()))


def seed_defaults(*, replace: bool = False) -> int:
    """Write the default entries where the table is empty (`replace`: empty it first); returns
    the rows written."""
    with db.atomic():
        if replace:
            Faq.delete().execute()
        elif Faq.select().exists():
            return 0
        now = utcnow()
        Faq.insert_many([{"question": q, "answer": a, "keywords": _keywords(k), "position": (i + 1) * 10,
                          "enabled": True, "updated_at": now, "updated_by": "system"}
                         for i, (q, a, k) in enumerate(DEFAULTS)]).execute()
    return len(DEFAULTS)
