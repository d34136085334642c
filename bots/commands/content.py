"""Content: selling scripts (offline templates or the model behind content_ai)."""

from __future__ import annotations

import content_ai
from bots.commands.i18n import N_, _
from bots.commands.links import product_path
from bots.commands.parsing import first_word
from bots.commands.registry import Command, Context, MenuPlace, command
from bots.commands.replies import creator_of, text
from bots.types import Reply
from models.catalog import Sku
from models.network import price_through


def script_args(text: str) -> tuple[str, Sku | None]:
    """'[SKU] [topic]' -> the topic and the active SKU it names (when the first word is one;
    the topic is then the rest, or the SKU's name)."""
    code = first_word(text)
    sku = Sku.get_or_none((Sku.code == code[:64]) & Sku.active) if code is not None else None
    if sku is None:
        return text, None
    return text[len(code):].strip() or sku.name, sku


@command("script", keywords=("文案", "话术"), args=script_args, help=N_("/script [主题] · 文案 [主题] — 带货文案"),
         menu=MenuPlace("wechat", 0, 2, N_("带货文案")))
def cmd_script(ctx: Context, cmd: Command) -> list[Reply]:
    creator = creator_of(ctx)
    name = (creator.name if creator else "") or ctx.display_name or _("千星创作者")
    topic, sku = cmd.value
    product = None
    if sku is not None:
        price = price_through(creator, sku)
        link = product_path(sku.code, creator.code) if creator else ""
        product = content_ai.ProductInfo(name=sku.name, price_fen=price, sku=sku.code,
                                         title=sku.product.title, link=link)
    return text(content_ai.generate_script(topic, creator_name=name, product=product))
