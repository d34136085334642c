"""Products and promotion: the supply pool, markups and promotion links with posters."""

from __future__ import annotations

from bots.commands.i18n import N_, _
from bots.commands.links import product_path, product_payload, telegram_link
from bots.commands.parsing import ChatInputError, first_word, parse_yuan
from bots.commands.registry import Command, Context, MenuPlace, command
from bots.commands.replies import LIST_MAX, level_name, level_names, money, percent, text
from bots.types import Button, Reply
from models import earnings, network, pricing
from models.catalog import Sku, get_sku
from models.errors import NotFound


@command("products", keywords=("商品", "选品", "货架"), creator=True, help=N_("/products · 商品 — 选品库"),
         menu=(MenuPlace("main", 1, 1, N_("选品")), MenuPlace("wechat", 0, 1, N_("选品推广"))))
def cmd_products(ctx: Context, cmd: Command) -> list[Reply]:
    creator = ctx.creator
    items = earnings.products(creator, default_cap_bp=ctx.settings.DEFAULT_MAX_MARKUP_BP)
    if not items:
        return text(_("选品库暂时没有商品，请稍后再来。"))
    names = level_names()
    lines = [_("选品库（编码 · 商品 · 售价 · 佣金）")]
    for p in items[:LIST_MAX]:
        if p.locked:
            lines.append(_("🔒 {sku} · {name} · {price} · {level}解锁").format(
                sku=p.sku, name=p.name, price=money(p.retail_price_fen), level=level_name(p.min_rank, names)))
            continue
        markup = _("（含加价 {markup}）").format(markup=money(p.markup_fen)) if p.markup_fen else ""
        lines.append(_("{sku} · {name} · {price}{markup} · {rate} · 最高加价 {cap}").format(
            sku=p.sku, name=p.name, price=money(p.selling_price_fen), markup=markup, rate=percent(p.commission_bp),
            cap=money(p.max_markup_fen)))
    if len(items) > LIST_MAX:
        lines.append(_("……共 {count} 件，发送「推广 编码」查看任一商品。").format(count=len(items)))
    lines.append(_("发送「加价 编码 金额」设置加价，「推广 编码」获取推广链接和海报。"))
    open_items = [p for p in items if not p.locked][:3]
    buttons = (tuple(Button(_("推广 {sku}").format(sku=p.sku)[:30], f"promo:{p.sku}") for p in open_items),) \
        if open_items else ()
    return text("\n".join(lines), buttons=buttons)


def _sku_arg(code: str) -> Sku:
    code = code.strip()
    if not code or len(code) > Sku.code.max_length:
        raise NotFound("unknown SKU", code="unknown_sku")
    return get_sku(code)


def _locked_reply(sku: Sku) -> list[Reply]:
    return text(_("{sku} 需要达到{level}才能推广，发送「进度」查看升级条件。").format(
        sku=sku.code, level=level_name(sku.min_rank)))


def markup_args(text: str) -> tuple[Sku, int]:
    """'SKU001 5' -> the SKU and the markup in fen."""
    words = text.split()
    if len(words) < 2:
        raise ChatInputError(_("请发送：加价 商品编码 金额（元），例如 加价 SKU001 5；加价 0 即取消加价。"))
    return _sku_arg(words[0]), parse_yuan(words[1])


@command("markup", keywords=("加价",), creator=True, args=markup_args,
         help=N_("/markup 商品编码 金额 · 加价 SKU 5 — 设置我的加价"))
def cmd_markup(ctx: Context, cmd: Command) -> list[Reply]:
    creator = ctx.creator
    sku, amount = cmd.value
    cap = pricing.markup_cap(sku, ctx.settings.DEFAULT_MAX_MARKUP_BP)
    if sku.min_rank > creator.rank:
        return _locked_reply(sku)
    if amount > cap:
        return text(_("{sku} 最多加价 {cap}，你输入的是 {amount}。").format(sku=sku.code, cap=money(cap),
                                                                     amount=money(amount)))
    network.set_markup(creator, sku.code, amount, default_cap_bp=ctx.settings.DEFAULT_MAX_MARKUP_BP)
    if amount == 0:
        return text(_("已取消 {sku} 的加价，买家按零售价 {price} 购买。").format(
            sku=sku.code, price=money(sku.retail_price_fen)))
    return text(_("已设置 {sku} 加价 {amount}：通过你的链接购买价 {price}，加价部分全部归你。").format(
        sku=sku.code, amount=money(amount), price=money(pricing.selling_price(sku, amount))))


def promo_sku(text: str) -> Sku:
    """'SKU001' -> the SKU to promote."""
    code = first_word(text)
    if code is None:
        raise ChatInputError(_("请发送：推广 商品编码，例如 推广 SKU001（发送「商品」查看编码）。"))
    return _sku_arg(code)


@command("promo", keywords=("推广",), creator=True, args=promo_sku,
         help=N_("/promo 商品编码 · 推广 SKU — 推广链接与海报"))
def cmd_promo(ctx: Context, cmd: Command) -> list[Reply]:
    creator = ctx.creator
    sku = cmd.value
    if sku.min_rank > creator.rank:
        return _locked_reply(sku)
    price = network.price_through(creator, sku)
    path = product_path(sku.code, creator.code)
    link = telegram_link(ctx.settings, product_payload(sku.code, creator.code))
    message = _("{title} · {name}\n你的售价：{price}\n小程序路径：{path}").format(
        title=sku.product.title, name=sku.name, price=money(price), path=path)
    if link:
        message += "\n" + _("Telegram 链接：{link}").format(link=link)
    message += "\n" + _("把海报或链接分享出去，成交即有佣金。")
    from bots import poster

    png, key = poster.product_poster(creator, sku, settings=ctx.settings)
    return [Reply(text=message, image=png, image_key=key, link=link)]
