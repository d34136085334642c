"""What a script may say about a product: the catalog's facts, as data and as the text the
guards compare a generated script with.

The price is what a buyer pays through the creator's link (`models.network.price_through`:
retail plus the creator's markup). Selling points are the clauses of the product's description
(the catalog has no other selling-point field), then its title and SKU name; the delivery fact
comes from the SKU's kind (card keys and serials are delivered automatically, top-ups credited).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from models.catalog import Kind, Sku
from models.money import rmb
from models.network import Creator, price_through

POINT_MAX = 40  # characters of one selling point
POINTS_MAX = 6
_CLAUSE = re.compile(r"[。；;！!？?\n]+")

DELIVERY = {
    Kind.CARD_KEY.value: "付款后自动发货，卡密在「我的卡券」随时查看",
    Kind.SERIAL.value: "付款后自动发货，兑换码在「我的卡券」随时查看",
    Kind.BUNDLE.value: "付款后自动发货，组合内的卡券一次到齐",
    Kind.TOPUP.value: "付款后自动充值到账",
}


def clean(text: str, limit: int) -> str:
    """NFKC, control characters out, spaces collapsed, cut to `limit` characters."""
    text = unicodedata.normalize("NFKC", text or "")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return re.sub(r"\s+", " ", text).strip()[:limit]


@dataclass(frozen=True)
class ScriptFacts:
    sku: str
    name: str  # the SKU's name, e.g. 视频会员月卡
    title: str  # the product's title, e.g. 视频会员
    description: str
    price_fen: int  # through the creator's link
    kind: str
    points: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str:
        if self.title and self.title not in self.name:
            return f"{self.title}·{self.name}"
        return self.name

    @property
    def price(self) -> str:
        return rmb(self.price_fen)

    @property
    def delivery(self) -> str:
        return DELIVERY.get(self.kind, "付款后自动发货")

    def text(self) -> str:
        """The facts as the guards and the model read them."""
        lines = [f"商品：{self.label}（编码 {self.sku}）", f"到手价：{self.price}（{self.price_fen / 100:.2f} 元）",
                 f"发货：{self.delivery}"]
        if self.description:
            lines.append(f"介绍：{self.description}")
        if self.points:
            lines.append("卖点：" + "；".join(self.points))
        return "\n".join(lines)


def selling_points(title: str, name: str, description: str) -> tuple[str, ...]:
    """The description's clauses (long ones cut at a comma), deduplicated, at most POINTS_MAX."""
    found: list[str] = []
    for clause in _CLAUSE.split(description or ""):
        clause = clause.strip(" ，,、")
        if len(clause) > POINT_MAX:
            clause = clause[:POINT_MAX].rsplit("，", 1)[0] if "，" in clause[:POINT_MAX] else clause[:POINT_MAX]
        if len(clause) >= 4 and clause not in found:
            found.append(clause)
        if len(found) >= POINTS_MAX:
            break
    return tuple(found)


def facts_of(sku: Sku, creator: Creator | None) -> ScriptFacts:
    """The facts of an active SKU (with its product loaded) at the creator's price."""
    title, name = clean(sku.product.title, 60), clean(sku.name, 60)
    description = clean(sku.product.description, 400)
    return ScriptFacts(sku=sku.code, name=name, title=title, description=description,
                       price_fen=price_through(creator, sku), kind=sku.kind,
                       points=selling_points(title, name, description))


def generic_text() -> str:
    """The facts of a script without a product: the platform's own, no price."""
    return "千星好物：虚拟商品，付款后自动发货，卡券在「我的卡券」随时查看"
