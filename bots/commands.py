"""The command set of every chat platform: parsing and the commands themselves.

One command, three spellings, the same behaviour everywhere:
- English slash forms (`/withdraw 100`; Telegram's `/poster@bot` too),
- Chinese keywords for the WeChat official account (`提现 100`, `海报`; a keyword that takes
  arguments may be glued to them: `提现100`; one that takes none must be the whole message, so
  "商品怎么买" stays a question),
- menu-click keys `CMD_<NAME>` (`CMD_POSTER`), which the WeChat adapter passes as a callback.

Button presses come back as `Incoming.callback`: `CMD_<NAME>`, `wd:ok:<token>` /
`wd:no:<token>` (withdrawal confirmation) and `promo:<SKU>`.

Withdrawals take two steps: `/withdraw 100` shows the amount, fee and a confirm/cancel pair
whose callbacks carry a one-time token stored in Redis (`SET NX EX`, WITHDRAW_CONFIRM_TTL_S);
only the confirm press calls `models.withdrawals.request_withdrawal`, with the token as the
request key, so a double press is one withdrawal. A second Redis key decides between confirm
and cancel atomically (`SET NX`): whichever press comes first wins, the other is told so.

Deep-link payloads (Telegram `?start=`, WeChat QR scene): an invite code as is (join, then bind
to its owner), `_p<base64url("SKU\\nCODE")>` (a product through a creator's link) or
`_s<CODE>` (the shop through a creator's link). Generated invite codes never start with `_`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from redis import Redis

import content_ai
from bots.types import Button, Incoming, Reply
from models import delivery, earnings, levels, network, withdrawals
from models.catalog import Sku, get_sku
from models.errors import DomainError, InvalidInput, NotFound
from models.network import BindVia, Creator
from models.orders import Order, Status
from models.users import User

log = logging.getLogger(__name__)

TEXT_MAX = 4096  # longer messages are cut before parsing
WITHDRAW_CONFIRM_TTL_S = 300
MAX_YUAN_DIGITS = 9  # up to 999,999,999.99 yuan; anything longer is refused before arithmetic
LIST_MAX = 20
VOUCHERS_MAX = 10
PRODUCT_PAGE = "pages/product/index"
PREFIX = "qx:chat"

# name -> (slash aliases, Chinese keywords, takes arguments)
COMMANDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    "start": (("start",), ("开始",), True),
    "join": (("join",), ("加入", "加入千星"), False),
    "bind": (("bind",), ("绑定", "绑定邀请码"), True),
    "poster": (("poster",), ("海报", "邀请海报"), False),
    "team": (("team",), ("团队", "我的团队"), False),
    "progress": (("progress",), ("进度", "升级进度"), False),
    "level": (("level",), ("等级", "我的等级"), False),
    "earnings": (("earnings",), ("收益", "我的收益"), False),
    "statement": (("statement",), ("明细", "收益明细"), False),
    "withdraw": (("withdraw",), ("提现",), True),
    "products": (("products",), ("商品", "选品", "货架"), False),
    "markup": (("markup",), ("加价",), True),
    "promo": (("promo",), ("推广",), True),
    "script": (("script",), ("文案", "话术"), True),
    "vouchers": (("vouchers",), ("我的卡券", "卡券", "卡密"), False),
    "resend": (("resend",), ("补发",), True),
    "help": (("help", "menu"), ("帮助", "菜单"), False),
}
SLASH = {alias: name for name, (aliases, _, _) in COMMANDS.items() for alias in aliases}
KEYWORDS = {kw: name for name, (_, kws, _) in COMMANDS.items() for kw in kws}
_KEYWORDS_LONGEST_FIRST = sorted(KEYWORDS, key=len, reverse=True)

# Commands that show money or goods of the sender: answered in a private chat only.
PRIVATE_ONLY = frozenset({"withdraw", "vouchers", "statement", "earnings", "resend",
                          "withdraw_confirm", "withdraw_cancel"})


def menu_key(name: str) -> str:
    """The menu-click key of a command (the WeChat menu's `key`)."""
    return f"CMD_{name.upper()}"


@dataclass(frozen=True)
class Command:
    name: str  # a COMMANDS name, withdraw_confirm / withdraw_cancel, unknown, stale_button
    args: tuple[str, ...] = ()
    rest: str = ""  # the text after the command word, as typed (script topics)
    via_button: bool = False


@dataclass
class Context:
    incoming: Incoming
    user: User
    settings: Any  # qianxing.settings.Settings
    redis: Redis
    withdraw_policy: withdrawals.WithdrawPolicy

    @property
    def private(self) -> bool:
        return self.incoming.chat_kind != "group"

    @property
    def display_name(self) -> str:
        return (self.incoming.sender.name or self.user.nickname or "").strip()[:64]


def normalize(text: str) -> str:
    """NFKC (full-width ／１００ -> /100), cut to TEXT_MAX, stripped."""
    return unicodedata.normalize("NFKC", (text or "")[:TEXT_MAX]).strip()


# ---- parsing ------------------------------------------------------------------------------------


def parse(incoming: Incoming) -> Command | None:
    """The command in an update, or None for free text (and for an empty message)."""
    if incoming.callback is not None:
        return _parse_callback(normalize(incoming.callback))
    text = normalize(incoming.text)
    if not text:
        return None
    if text.startswith("/"):
        word, _, rest = text[1:].partition(" ")
        word = word.split("@", 1)[0].lower()
        rest = rest.strip()
        name = SLASH.get(word)
        if name is None:
            return Command("unknown", (word[:32],))
        return Command(name, tuple(rest.split()), rest)
    for kw in _KEYWORDS_LONGEST_FIRST:
        if not text.startswith(kw):
            continue
        name = KEYWORDS[kw]
        rest = text[len(kw):]
        if not rest:
            return Command(name)
        takes_args = COMMANDS[name][2]
        if takes_args and (rest[0].isspace() or rest[0].isascii() or rest[0] in "¥￥"):
            rest = rest.strip()
            return Command(name, tuple(rest.split()), rest)
    return None


def _parse_callback(data: str) -> Command:
    if data.startswith("CMD_"):
        name = data[4:].lower()
        return Command(name, via_button=True) if name in COMMANDS else Command("stale_button")
    kind, _, arg = data.partition(":")
    if kind == "wd":
        action, _, token = arg.partition(":")
        if action in ("ok", "no") and re.fullmatch(r"[A-Za-z0-9_-]{8,64}", token):
            return Command("withdraw_confirm" if action == "ok" else "withdraw_cancel", (token,),
                           via_button=True)
    if kind == "promo" and arg:
        return Command("promo", (arg[:64],), arg[:64], via_button=True)
    return Command("stale_button")


# ---- amounts ------------------------------------------------------------------------------------

_AMOUNT = re.compile(r"^[¥￥]?\s*(\d+)(?:\.(\d+))?\s*(?:元|块|rmb|cny)?$", re.IGNORECASE)


def parse_yuan(text: str) -> int:
    """'100', '100.5', '¥100.50', '100元' -> fen. Raises InvalidInput (invalid_amount) for
    anything else: negatives, more than two decimals, more than MAX_YUAN_DIGITS digits."""
    m = _AMOUNT.match(normalize(text))
    if m is None:
        raise InvalidInput(f"「{text[:20]}」不是有效金额，请输入数字，例如 100 或 99.50", code="invalid_amount")
    whole, cents = m.group(1), m.group(2) or ""
    if len(whole.lstrip("0")) > MAX_YUAN_DIGITS:
        raise InvalidInput("金额太大了，请检查后重新输入", code="amount_too_large")
    if len(cents) > 2:
        raise InvalidInput("金额最多两位小数（分）", code="invalid_amount")
    try:
        return int(Decimal(f"{whole}.{cents or '0'}") * 100)
    except InvalidOperation:  # pragma: no cover - the pattern admits digits only
        raise InvalidInput("不是有效金额", code="invalid_amount") from None


yuan = earnings.yuan


def money(fen: int) -> str:
    return f"¥{yuan(int(fen))}"


def percent(bp: int) -> str:
    return content_ai.offline.percent(bp)


# ---- deep links ---------------------------------------------------------------------------------


def telegram_link(settings: Any, payload: str) -> str | None:
    """https://t.me/<bot>?start=<payload>, or None when the payload does not fit (64 chars of
    A-Za-z0-9_-)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", payload):
        return None
    return f"https://t.me/{settings.TELEGRAM_BOT_USERNAME}?start={payload}"


def product_payload(sku_code: str, creator_code: str) -> str:
    raw = f"{sku_code}\n{creator_code}".encode()
    return "_p" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def shop_payload(creator_code: str) -> str:
    return "_s" + creator_code


def product_path(sku_code: str, creator_code: str) -> str:
    return f"{PRODUCT_PAGE}?sku={quote(sku_code, safe='')}&ref={quote(creator_code, safe='')}"


def shop_path(creator_code: str) -> str:
    return f"{earnings.SHARE_PAGE}?ref={quote(creator_code, safe='')}"


def parse_payload(payload: str) -> tuple[str, str, str | None]:
    """('invite', code, None) | ('product', creator_code, sku) | ('shop', creator_code, None)."""
    if payload.startswith("_p"):
        body = payload[2:]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raw = ""
        sku, sep, code = raw.partition("\n")
        if sep and sku and code:
            return "product", code, sku
    if payload.startswith("_s") and len(payload) > 2:
        return "shop", payload[2:], None
    return "invite", payload, None


# ---- replies ------------------------------------------------------------------------------------

def _text(text: str, **kw: Any) -> list[Reply]:
    return [Reply(text=text, **kw)]


MAIN_MENU: tuple[tuple[Button, ...], ...] = (
    (Button("邀请海报", menu_key("poster")), Button("我的团队", menu_key("team")),
     Button("升级进度", menu_key("progress"))),
    (Button("我的收益", menu_key("earnings")), Button("选品", menu_key("products")),
     Button("我的卡券", menu_key("vouchers"))),
)
JOIN_MENU: tuple[tuple[Button, ...], ...] = (
    (Button("加入千星计划", menu_key("join")), Button("我的卡券", menu_key("vouchers")),
     Button("帮助", menu_key("help"))),
)

HELP = """千星机器人命令（英文命令与中文关键词效果相同）：
/start 开始 · /join 加入 — 加入千星计划
/bind 邀请码 · 绑定 邀请码 — 绑定邀请人
/poster · 海报 — 我的邀请海报
/team · 团队 — 我的团队与业绩
/progress · 进度 — 升级进度
/level · 等级 — 我的等级与佣金比例
/earnings · 收益 — 我的收益
/statement · 明细 — 收益明细
/withdraw 金额 · 提现 100 — 提现到微信零钱（需确认）
/products · 商品 — 选品库
/markup 商品编码 金额 · 加价 SKU 5 — 设置我的加价
/promo 商品编码 · 推广 SKU — 推广链接与海报
/script [主题] · 文案 [主题] — 带货文案
/vouchers · 我的卡券 — 查看卡密（仅私聊）
/resend 订单号 · 补发 订单号 — 重新发送发货通知
/help · 帮助 — 本说明"""

# Polite Chinese for the domain errors a user can cause.
MESSAGES: dict[str, str] = {
    "not_a_creator": "你还不是千星创作者，发送 /join（加入）即可免费加入。",
    "unknown_invite_code": "邀请码不存在，请核对后重新发送。",
    "invalid_invite_code": "邀请码格式不对：邀请码是 4-32 位字母或数字。",
    "self_binding": "不能绑定自己的邀请码哦。",
    "invite_cycle": "对方已经在你的团队里，不能绑定为你的邀请人。",
    "already_bound": "你已经绑定了邀请人，如需更换请联系客服。",
    "unknown_sku": "没有找到这个商品，发送「商品」查看商品编码。",
    "invalid_markup": "加价必须是 0 或正数（元）。",
    "markup_too_high": "加价超过了这个商品允许的上限。",
    "supply_locked": "这个商品还没有为你的等级解锁。",
    "below_minimum": "提现金额低于最低提现额。",
    "insufficient_balance": "可提现余额不足。",
    "in_debt": "你的账户有待抵扣的欠款，需先由后续收益抵扣后才能提现。",
    "invalid_amount": "金额格式不对，请输入数字，例如 100 或 99.50。",
    "amount_too_large": "金额太大了，请检查后重新输入。",
    "request_key_reused": "这个确认按钮已经用过了，请重新发起提现。",
    "voucher_not_found": "没有找到这张卡券。",
    "order_not_found": "没有找到你的这个订单，请核对订单号。",
    "user_not_found": "账户不存在，请重新发送 /start。",
    "code_exhausted": "系统繁忙，请稍后再试。",
    "invalid_account": "无法识别你的账号，请稍后再试。",
    "unknown_platform": "暂不支持这个平台。",
}


def polite(exc: DomainError) -> str:
    """A polite Chinese reply naming the problem (never a stack trace or an internal id)."""
    if any("\u4e00" <= ch <= "\u9fff" for ch in exc.message):
        return exc.message  # raised here in the chat layer, already in Chinese
    return MESSAGES.get(exc.code) or "操作没有成功，请检查输入后重试。"


# ---- running ------------------------------------------------------------------------------------

Handler = Callable[[Context, Command], list[Reply]]


def execute(ctx: Context, cmd: Command) -> list[Reply]:
    """Run a command; a domain error becomes a polite reply."""
    handler = HANDLERS.get(cmd.name)
    try:
        if handler is None:
            return _text(f"没有这个命令。{_help_hint()}")
        return handler(ctx, cmd)
    except DomainError as exc:
        return _text(polite(exc))


def free_text(ctx: Context) -> list[Reply]:
    """A private message that is no command: an offline answer when content_ai has one."""
    text = normalize(ctx.incoming.text)
    if not text:
        return _text(f"你好！{_help_hint()}", buttons=MAIN_MENU)
    found = content_ai.answer(text)
    if found:
        return _text(found)
    return _text(f"抱歉，我没有听懂。{_help_hint()}", buttons=MAIN_MENU)


def _help_hint() -> str:
    return "发送 /help（帮助）查看可用命令。"


def _creator(ctx: Context) -> Creator | None:
    return Creator.get_or_none(Creator.user == ctx.user.id)


def _join_first() -> list[Reply]:
    return _text(MESSAGES["not_a_creator"] + "\n也可以点击好友的邀请链接加入。", buttons=JOIN_MENU)


def _level_names() -> dict[int, str]:
    return {lv.rank: lv.name for lv in levels.table()}


def _level_name(rank: int, names: dict[int, str] | None = None) -> str:
    names = names if names is not None else _level_names()
    return names.get(rank, levels.UNRANKED_NAME if rank <= 0 else f"{rank}星")


# ---- start, join, bind --------------------------------------------------------------------------

def cmd_start(ctx: Context, cmd: Command) -> list[Reply]:
    payload = (ctx.incoming.start_payload or (cmd.args[0] if cmd.args else "")).strip()
    if payload:
        kind, code, sku = parse_payload(payload[:64])
        if kind == "product" and sku:
            return _product_card(ctx, code, sku)
        if kind == "shop":
            return _shop_card(ctx, code)
        via = {"telegram": BindVia.TELEGRAM, "wechat": BindVia.WECHAT_QR}.get(
            ctx.incoming.platform, BindVia.TYPED) if ctx.incoming.start_payload else BindVia.TYPED
        return _join_and_bind(ctx, code, via)
    creator = _creator(ctx)
    if creator is None:
        return _text("欢迎来到千星！这里可以查看卡券、领取福利，也可以免费加入千星计划带货分佣。\n"
                     f"{_help_hint()}", buttons=JOIN_MENU)
    return _text(f"欢迎回来，{creator.name or ctx.display_name or '创作者'}！你的邀请码：{creator.code}\n"
                 f"{_help_hint()}", buttons=MAIN_MENU)


def cmd_join(ctx: Context, cmd: Command) -> list[Reply]:
    existing = _creator(ctx)
    creator = existing or network.become_creator(ctx.user, ctx.display_name)
    first = "你已经是千星创作者了。" if existing else "欢迎加入千星计划！"
    return _text(f"{first}你的邀请码：{creator.code}\n发送「海报」生成邀请海报，发送「商品」开始选品。",
                 buttons=MAIN_MENU)


def cmd_bind(ctx: Context, cmd: Command) -> list[Reply]:
    if not cmd.args:
        return _text("请发送：/bind 邀请码（或：绑定 邀请码），例如 /bind ABCD2345。")
    return _join_and_bind(ctx, cmd.args[0], BindVia.TYPED)


def _join_and_bind(ctx: Context, code: str, via: BindVia) -> list[Reply]:
    """Join the plan first (so the invite is never lost on a refused code), then bind: the
    first binding wins."""
    existed = _creator(ctx) is not None
    creator = network.become_creator(ctx.user, ctx.display_name)
    joined = "" if existed else f"欢迎加入千星计划！你的邀请码：{creator.code}\n"
    try:
        parent = network.by_code(code)
        before = creator.parent_id
        creator = network.bind(creator, code, via)
    except DomainError as exc:
        return _text(f"{joined}绑定邀请人没有成功：{polite(exc)}", buttons=MAIN_MENU)
    who = parent.name or parent.code
    if before == parent.id:
        return _text(f"{joined}你已绑定邀请人 {who}（{parent.code}），无需重复绑定。", buttons=MAIN_MENU)
    return _text(f"{joined}绑定成功！你的邀请人是 {who}（{parent.code}）。", buttons=MAIN_MENU)


def _selling_price(creator: Creator, sku: Sku) -> int:
    row = network.CreatorPrice.get_or_none((network.CreatorPrice.creator == creator.id)
                                           & (network.CreatorPrice.sku_id == sku.id))
    return sku.retail_price_fen + (row.markup_fen if row else 0)


def _product_card(ctx: Context, creator_code: str, sku_code: str) -> list[Reply]:
    sku = get_sku(sku_code)
    creator = Creator.get_or_none((Creator.code == creator_code) & Creator.active)
    ref = creator.code if creator else ""
    price = _selling_price(creator, sku) if creator else sku.retail_price_fen
    path = product_path(sku.code, ref) if ref else f"{PRODUCT_PAGE}?sku={quote(sku.code, safe='')}"
    return _text(f"{sku.product.title} · {sku.name}\n价格：{money(price)}\n"
                 f"在微信小程序打开下单：{path}\n付款后自动发货，私聊发送「我的卡券」查看。")


def _shop_card(ctx: Context, creator_code: str) -> list[Reply]:
    creator = Creator.get_or_none((Creator.code == creator_code) & Creator.active)
    if creator is None:
        return _text("这个链接已失效。发送「帮助」查看可用命令。")
    return _text(f"欢迎光临 {creator.name or creator.code} 的小店！\n在微信小程序打开：{shop_path(creator.code)}",
                 buttons=JOIN_MENU)


# ---- poster -------------------------------------------------------------------------------------

def cmd_poster(ctx: Context, cmd: Command) -> list[Reply]:
    creator = _creator(ctx)
    if creator is None:
        return _join_first()
    from bots import poster

    png, key = poster.invite_poster(creator, settings=ctx.settings)
    link = telegram_link(ctx.settings, creator.code)
    return [Reply(text=f"你的邀请海报已生成，分享给好友扫码加入。\n邀请码：{creator.code}"
                       + (f"\n邀请链接：{link}" if link else ""),
                  image=png, image_key=key, link=link)]


# ---- team, progress, level ----------------------------------------------------------------------

def cmd_team(ctx: Context, cmd: Command) -> list[Reply]:
    creator = _creator(ctx)
    if creator is None:
        return _join_first()
    team = network.team(creator)
    names = _level_names()
    lines = ["我的团队",
             f"直属成员 {len(team.direct)} 人，销售额 {money(team.direct_gmv_fen)}",
             f"二级成员 {team.second} 人，销售额 {money(team.second_gmv_fen)}"]
    if team.direct:
        lines.append("—— 直属成员 ——")
        for i, m in enumerate(sorted(team.direct, key=lambda m: -m.gmv_fen)[:LIST_MAX], 1):
            lines.append(f"{i}. {m.name or m.code}（{_level_name(m.rank, names)}）销售额 {money(m.gmv_fen)}，"
                         f"{m.orders} 单，团队 {len(m.children)} 人")
        if len(team.direct) > LIST_MAX:
            lines.append(f"……共 {len(team.direct)} 人")
    else:
        lines.append("还没有成员，发送「海报」邀请好友加入吧。")
    return _text("\n".join(lines))


def _need(metric: str, value: int) -> str:
    return money(value) if metric.endswith("_fen") else str(value)


def cmd_progress(ctx: Context, cmd: Command) -> list[Reply]:
    creator = _creator(ctx)
    if creator is None:
        return _join_first()
    p = levels.progress(creator, entry_videos=ctx.settings.ENTRY_VIDEOS,
                        entry_invites=ctx.settings.ENTRY_INVITES)
    lines = [f"当前等级：{p.name}"]
    if p.next_rank is None:
        lines.append("你已经是最高等级，继续保持！")
    else:
        lines.append(f"下一等级：{p.next_name}，需要：")
        for t in p.thresholds:
            state = "✅" if t.met else f"还差 {_need(t.metric, t.need - t.have)}"
            lines.append(f"· {levels.LABELS[t.metric]} {_need(t.metric, t.have)}/{_need(t.metric, t.need)} {state}")
        if p.capped:
            lines.append("账户目前受限，暂不能升级，如有疑问请联系客服。")
        elif p.ready:
            lines.append("已满足升级条件，系统下次评估时自动升级。")
    lines.append(p.invite_line)
    return _text("\n".join(lines))


def cmd_level(ctx: Context, cmd: Command) -> list[Reply]:
    creator = _creator(ctx)
    if creator is None:
        return _join_first()
    table = {lv.rank: lv for lv in levels.table()}
    current, nxt = table.get(creator.rank), table.get(creator.rank + 1)
    if current is None:
        lines = [f"当前等级：{levels.UNRANKED_NAME}",
                 "自己的销售按商品佣金比例计算，升到一星后还有团队奖励。"]
    else:
        fee = current.withdraw_fee_bp if current.withdraw_fee_bp is not None else ctx.withdraw_policy.fee_bp
        lines = [f"当前等级：{current.name}",
                 f"自己销售佣金：不低于 {percent(current.own_rate_bp)}",
                 f"团队奖励：直属成员销售的 {percent(current.team1_rate_bp)}，"
                 f"二级成员销售的 {percent(current.team2_rate_bp)}",
                 f"提现手续费：{percent(fee)}",
                 f"可选商品：{current.supply_tier} 级货源"]
    lines.append(f"下一等级：{nxt.name}，发送「进度」查看升级条件。" if nxt else "已是最高等级。")
    lines.append("佣金只来自真实成交的订单，与邀请人数无关。")
    return _text("\n".join(lines))


# ---- money --------------------------------------------------------------------------------------

def cmd_earnings(ctx: Context, cmd: Command) -> list[Reply]:
    creator = _creator(ctx)
    if creator is None:
        return _join_first()
    b = earnings.balances(creator)
    lines = ["我的收益",
             f"可提现：{money(b['available_fen'])}",
             f"待结算：{money(b['pending_fen'])}（订单完成 {ctx.settings.REFUND_WINDOW_DAYS} 天后转为可提现）",
             f"提现中：{money(b['withdrawing_fen'])}",
             f"购物金：{money(b['credit_fen'])}"]
    if b["debt_fen"]:
        lines.append(f"待抵扣欠款：{money(b['debt_fen'])}（由后续收益自动抵扣）")
    lines.append(f"最低提现 {money(ctx.withdraw_policy.min_fen)}，发送「提现 金额」申请。")
    return _text("\n".join(lines), buttons=((Button("收益明细", menu_key("statement")),),))


KIND_LABELS = {
    "commission": "佣金入账", "release": "结算可提现", "reversal": "退款冲回", "clawback": "追回佣金",
    "withdrawal": "申请提现", "payout": "提现到账", "payout_failed": "提现失败退回",
    "withdrawal_rejected": "提现驳回退回", "thousand_star_bonus": "千星奖励", "traffic_reward": "流量奖励",
    "credit_payment": "购物金消费", "refund": "退款",
}
BUCKET_LABELS = {"pending": "待结算", "available": "可提现", "withdrawing": "提现中", "credit": "购物金"}


def cmd_statement(ctx: Context, cmd: Command) -> list[Reply]:
    creator = _creator(ctx)
    if creator is None:
        return _join_first()
    entries = earnings.statement(creator, limit=10)
    if not entries:
        return _text("还没有收益记录。分享商品成交后，佣金会显示在这里。")
    lines = ["收益明细（最近 10 条）"]
    for e in entries:
        sign = "+" if e.amount_fen >= 0 else "-"
        lines.append(f"{e.created_at:%m-%d %H:%M} {KIND_LABELS.get(e.kind, e.kind)} · "
                     f"{BUCKET_LABELS.get(e.bucket, e.bucket)} {sign}{money(abs(e.amount_fen))}")
    return _text("\n".join(lines))


def _offer_key(token: str) -> str:
    return f"{PREFIX}:wd:{token}"


def _decision_key(token: str) -> str:
    return f"{PREFIX}:wd:{token}:decided"


def cmd_withdraw(ctx: Context, cmd: Command) -> list[Reply]:
    creator = _creator(ctx)
    if creator is None:
        return _join_first()
    policy = ctx.withdraw_policy
    b = earnings.balances(creator)
    if not cmd.args:
        return _text(f"请发送：提现 金额（元），例如 提现 {yuan(policy.min_fen)}。\n"
                     f"当前可提现 {money(b['available_fen'])}，最低提现 {money(policy.min_fen)}。")
    amount = parse_yuan(cmd.args[0])
    method = withdrawals.Method.WALLET
    if len(cmd.args) > 1 and cmd.args[1].lower() in ("credit", "购物金", "余额"):
        method = withdrawals.Method.CREDIT
    if amount < policy.min_fen:
        return _text(f"最低提现 {money(policy.min_fen)}，你输入的是 {money(amount)}。")
    if b["debt_fen"]:
        return _text(MESSAGES["in_debt"] + f"（欠款 {money(b['debt_fen'])}）")
    if amount > b["available_fen"]:
        return _text(f"可提现余额不足：当前可提现 {money(b['available_fen'])}。")
    fee = 0 if method == withdrawals.Method.CREDIT else amount * withdrawals.fee_bp_for(creator.rank, policy) // 10_000
    token = secrets.token_urlsafe(12)
    offer = {"user": ctx.user.id, "creator": creator.id, "amount_fen": amount, "method": method.value}
    if not ctx.redis.set(_offer_key(token), json.dumps(offer), nx=True, ex=WITHDRAW_CONFIRM_TTL_S):
        raise RuntimeError("withdrawal token collision")  # 96 random bits: never in practice
    if method == withdrawals.Method.CREDIT:
        what = f"确认把 {money(amount)} 转为购物金？无手续费，立即到账。"
    else:
        what = (f"确认提现 {money(amount)} 到微信零钱？\n手续费 {money(fee)}，实际到账 {money(amount - fee)}，"
                f"预计 {policy.delay_hours} 小时后到账。")
        if amount > policy.review_above_fen:
            what += "\n金额较大，需人工审核。"
    what += f"\n请在 {WITHDRAW_CONFIRM_TTL_S // 60} 分钟内确认。"
    return _text(what, buttons=((Button("确认提现", f"wd:ok:{token}"), Button("取消", f"wd:no:{token}")),))


def _withdrawal_done(w: withdrawals.Withdrawal) -> str:
    if w.method == withdrawals.Method.CREDIT:
        return f"已转为购物金 {money(w.amount_fen)}（编号 {w.no}）。"
    state = {"review": "已提交，等待人工审核", "approved": "已提交", "paying": "正在打款", "paid": "已到账",
             "rejected": "已驳回", "failed": "打款失败，金额已退回"}.get(w.state, w.state)
    return (f"提现{state}：{money(w.amount_fen)}，手续费 {money(w.fee_fen)}，实际到账 {money(w.net_fen)}"
            f"（编号 {w.no}）。")


def cmd_withdraw_confirm(ctx: Context, cmd: Command) -> list[Reply]:
    token = cmd.args[0]
    creator = _creator(ctx)
    raw = ctx.redis.get(_offer_key(token))
    if raw is None:
        done = None if creator is None else withdrawals.Withdrawal.get_or_none(
            (withdrawals.Withdrawal.creator == creator.id) & (withdrawals.Withdrawal.request_key == token))
        if done is not None:
            return _text(_withdrawal_done(done))
        return _text("这个确认已过期或已取消，未发起提现。如需提现请重新发送「提现 金额」。")
    offer = json.loads(raw)
    if creator is None or offer["user"] != ctx.user.id or offer["creator"] != creator.id:
        return _text("这个按钮不是发给你的。")
    ctx.redis.set(_decision_key(token), "ok", nx=True, ex=WITHDRAW_CONFIRM_TTL_S * 2)
    if ctx.redis.get(_decision_key(token)) != b"ok":
        return _text("这笔提现已经取消，未发起提现。")
    w = withdrawals.request_withdrawal(creator, int(offer["amount_fen"]), offer["method"],
                                       policy=ctx.withdraw_policy, request_key=token,
                                       actor=f"user:{ctx.user.id}")
    return _text(_withdrawal_done(w))


def cmd_withdraw_cancel(ctx: Context, cmd: Command) -> list[Reply]:
    token = cmd.args[0]
    raw = ctx.redis.get(_offer_key(token))
    if raw is None:
        return _text("这个确认已过期，无需取消。")
    if json.loads(raw)["user"] != ctx.user.id:
        return _text("这个按钮不是发给你的。")
    ctx.redis.set(_decision_key(token), "no", nx=True, ex=WITHDRAW_CONFIRM_TTL_S * 2)
    if ctx.redis.get(_decision_key(token)) == b"ok":
        return _text("这笔提现已经确认提交，无法取消。")
    return _text("已取消，未发起提现。")


# ---- products, markup, promo, script ------------------------------------------------------------

def cmd_products(ctx: Context, cmd: Command) -> list[Reply]:
    creator = _creator(ctx)
    if creator is None:
        return _join_first()
    items = earnings.products(creator, default_cap_bp=ctx.settings.DEFAULT_MAX_MARKUP_BP)
    if not items:
        return _text("选品库暂时没有商品，请稍后再来。")
    names = _level_names()
    lines = ["选品库（编码 · 商品 · 售价 · 佣金）"]
    for p in items[:LIST_MAX]:
        if p.locked:
            lines.append(f"🔒 {p.sku} · {p.name} · {money(p.retail_price_fen)} · {_level_name(p.min_rank, names)}解锁")
            continue
        markup = f"（含加价 {money(p.markup_fen)}）" if p.markup_fen else ""
        lines.append(f"{p.sku} · {p.name} · {money(p.selling_price_fen)}{markup} · {percent(p.commission_bp)}"
                     f" · 最高加价 {money(p.max_markup_fen)}")
    if len(items) > LIST_MAX:
        lines.append(f"……共 {len(items)} 件，发送「推广 编码」查看任一商品。")
    lines.append("发送「加价 编码 金额」设置加价，「推广 编码」获取推广链接和海报。")
    open_items = [p for p in items if not p.locked][:3]
    buttons = (tuple(Button(f"推广 {p.sku}"[:30], f"promo:{p.sku}") for p in open_items),) if open_items else ()
    return _text("\n".join(lines), buttons=buttons)


def _sku_arg(code: str) -> Sku:
    code = code.strip()
    if not code or len(code) > Sku.code.max_length:
        raise NotFound("unknown SKU", code="unknown_sku")
    return get_sku(code)


def _locked_reply(sku: Sku) -> list[Reply]:
    return _text(f"{sku.code} 需要达到{_level_name(sku.min_rank)}才能推广，发送「进度」查看升级条件。")


def cmd_markup(ctx: Context, cmd: Command) -> list[Reply]:
    creator = _creator(ctx)
    if creator is None:
        return _join_first()
    if len(cmd.args) < 2:
        return _text("请发送：加价 商品编码 金额（元），例如 加价 SKU001 5；加价 0 即取消加价。")
    sku = _sku_arg(cmd.args[0])
    amount = parse_yuan(cmd.args[1])
    cap_bp = sku.max_markup_bp if sku.max_markup_bp is not None else ctx.settings.DEFAULT_MAX_MARKUP_BP
    cap = sku.retail_price_fen * cap_bp // 10_000
    if sku.min_rank > creator.rank:
        return _locked_reply(sku)
    if amount > cap:
        return _text(f"{sku.code} 最多加价 {money(cap)}，你输入的是 {money(amount)}。")
    network.set_markup(creator, sku.code, amount, default_cap_bp=ctx.settings.DEFAULT_MAX_MARKUP_BP)
    if amount == 0:
        return _text(f"已取消 {sku.code} 的加价，买家按零售价 {money(sku.retail_price_fen)} 购买。")
    return _text(f"已设置 {sku.code} 加价 {money(amount)}：通过你的链接购买价 {money(sku.retail_price_fen + amount)}，"
                 "加价部分全部归你。")


def cmd_promo(ctx: Context, cmd: Command) -> list[Reply]:
    creator = _creator(ctx)
    if creator is None:
        return _join_first()
    if not cmd.args:
        return _text("请发送：推广 商品编码，例如 推广 SKU001（发送「商品」查看编码）。")
    sku = _sku_arg(cmd.args[0])
    if sku.min_rank > creator.rank:
        return _locked_reply(sku)
    price = _selling_price(creator, sku)
    path = product_path(sku.code, creator.code)
    link = telegram_link(ctx.settings, product_payload(sku.code, creator.code))
    text = (f"{sku.product.title} · {sku.name}\n你的售价：{money(price)}\n"
            f"小程序路径：{path}" + (f"\nTelegram 链接：{link}" if link else "")
            + "\n把海报或链接分享出去，成交即有佣金。")
    from bots import poster

    png, key = poster.product_poster(creator, sku, settings=ctx.settings)
    return [Reply(text=text, image=png, image_key=key, link=link)]


def cmd_script(ctx: Context, cmd: Command) -> list[Reply]:
    creator = _creator(ctx)
    name = (creator.name if creator else "") or ctx.display_name or "千星创作者"
    topic, product = cmd.rest, None
    if cmd.args:
        sku = Sku.get_or_none((Sku.code == cmd.args[0][:64]) & Sku.active)
        if sku is not None:
            price = _selling_price(creator, sku) if creator else sku.retail_price_fen
            link = product_path(sku.code, creator.code) if creator else ""
            product = content_ai.ProductInfo(name=sku.name, price_fen=price, sku=sku.code,
                                             title=sku.product.title, link=link)
            topic = cmd.rest[len(cmd.args[0]):].strip() or sku.name
    return _text(content_ai.generate_script(topic, creator_name=name, product=product))


# ---- shoppers -----------------------------------------------------------------------------------

def cmd_vouchers(ctx: Context, cmd: Command) -> list[Reply]:
    if not ctx.private:
        return _text("请私聊机器人查看卡券。")
    found = delivery.my_vouchers(ctx.user, limit=VOUCHERS_MAX)
    if not found:
        return _text("你还没有卡券。在小程序下单付款后，卡券会自动发到这里。", private=True)
    lines = [f"我的卡券（最近 {len(found)} 张，请勿泄露给他人）"]
    for i, v in enumerate(found, 1):
        if v.revoked:
            lines.append(f"{i}. {v.name}：已作废")
            continue
        secret = delivery.reveal(ctx.user, v.id).secret
        lines.append(f"{i}. {v.name}：{secret or v.masked}")
    return _text("\n".join(lines), private=True)


def _resend_allowed(ctx: Context) -> bool:
    """A fixed one-hour window per user: RESEND_PER_HOUR resends, then a polite no."""
    window = int(time.time() // 3600)
    key = f"{PREFIX}:resend:{ctx.user.id}:{window}"
    pipe = ctx.redis.pipeline()
    pipe.incr(key)
    pipe.expire(key, 3700)
    count, _ = pipe.execute()
    return int(count) <= ctx.settings.RESEND_PER_HOUR


STATUS_LABELS = {Status.PENDING: "待付款", Status.PAID: "已付款，正在发货", Status.DELIVERED: "已发货",
                 Status.EXPIRED: "已过期（未付款）", Status.REFUNDED: "已退款"}


def cmd_resend(ctx: Context, cmd: Command) -> list[Reply]:
    if not ctx.private:
        return _text("请私聊机器人补发。")
    if not cmd.args:
        return _text("请发送：补发 订单号，例如 补发 QX20250101ABCDEF。订单号在小程序「我的订单」里。")
    no = cmd.args[0].upper()
    if not _resend_allowed(ctx):
        return _text(f"补发太频繁了：每小时最多 {ctx.settings.RESEND_PER_HOUR} 次，请稍后再试。")
    order = None
    if re.fullmatch(r"[A-Z0-9]{4,32}", no):
        order = (Order.select(Order, Sku).join(Sku, on=(Order.sku == Sku.id))
                 .where((Order.no == no) & (Order.user == ctx.user.id)).first())
    if order is None:
        return _text(MESSAGES["order_not_found"])
    status = Status(order.status)
    if status != Status.DELIVERED:
        return _text(f"订单 {order.no}：{STATUS_LABELS.get(status, order.status)}。")
    lines = ["发货通知（补发）", f"订单号：{order.no}", f"商品：{order.sku.name} × {order.quantity}",
             f"金额：{money(order.amount_fen)}"]
    if order.delivered_at:
        lines.append(f"发货时间：{order.delivered_at:%Y-%m-%d %H:%M} (UTC)")
    vouchers = (delivery.Voucher.select(delivery.Voucher.id)
                .where((delivery.Voucher.order == order.id) & (delivery.Voucher.user == ctx.user.id))
                .order_by(delivery.Voucher.seq))
    for i, v in enumerate(vouchers, 1):
        try:
            view = delivery.reveal(ctx.user, v.id)
        except DomainError:
            lines.append(f"卡券{i}：已作废")
            continue
        lines.append(f"卡券{i}：{view.secret or view.masked}")
    return _text("\n".join(lines), private=True)


def cmd_help(ctx: Context, cmd: Command) -> list[Reply]:
    return _text(HELP, buttons=MAIN_MENU if _creator(ctx) else JOIN_MENU)


def cmd_stale(ctx: Context, cmd: Command) -> list[Reply]:
    return _text(f"这个按钮已失效。{_help_hint()}")


def cmd_unknown(ctx: Context, cmd: Command) -> list[Reply]:
    word = cmd.args[0] if cmd.args else ""
    shown = "".join(ch for ch in word if ch.isalnum() or ch in "_-")[:32]
    return _text(f"没有 /{shown} 这个命令。{_help_hint()}" if shown else f"没有这个命令。{_help_hint()}")


HANDLERS: dict[str, Handler] = {
    "start": cmd_start, "join": cmd_join, "bind": cmd_bind, "poster": cmd_poster, "team": cmd_team,
    "progress": cmd_progress, "level": cmd_level, "earnings": cmd_earnings, "statement": cmd_statement,
    "withdraw": cmd_withdraw, "withdraw_confirm": cmd_withdraw_confirm,
    "withdraw_cancel": cmd_withdraw_cancel, "products": cmd_products, "markup": cmd_markup,
    "promo": cmd_promo, "script": cmd_script, "vouchers": cmd_vouchers, "resend": cmd_resend,
    "help": cmd_help, "stale_button": cmd_stale, "unknown": cmd_unknown,
}

