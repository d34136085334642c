"""What the catalog pages share: field labels, the operator-language message of every refusal,
and the parsing of typed values (prices in yuan to fen through `catalog_edits.yuan_to_fen`,
Decimal; rates and caps in percent through `catalog_edits.percent_to_bp`; whole numbers; a
bundle's "CODE QTY" lines). The pages are miniapp_api/admin/catalog.py (products) and
catalog_skus.py (SKUs)."""

from __future__ import annotations

from typing import Any

from flask import flash, request
from flask_babel import gettext as _

from miniapp_api.admin.actions import flash_duplicate
from miniapp_api.admin.security import current
from models import catalog_edits as edits
from models.catalog import Kind, Sku
from models.catalog_edits import CatalogInputError
from models.errors import DomainError
from models.money import yuan

FIELD_LABELS = {
    "title": "标题", "description": "描述", "code": "编码", "name": "名称", "kind": "类型", "product": "商品",
    "supply_price_fen": "供货价", "retail_price_fen": "零售价", "commission_bp": "佣金比例",
    "max_markup_bp": "加价上限", "max_per_order": "每单限购", "low_stock_threshold": "低库存阈值",
    "min_rank": "解锁星级", "stock": "库存", "quantity": "数量", "bundle": "礼包组成", "serial": "序列号",
}
# Why a value was refused, by the service's error code (params: field, and the error's own).
MESSAGES = {
    "price_format": "%(field)s：请输入以元为单位的金额，例如 19.90",
    "price_decimals": "%(field)s：最多两位小数（分）",
    "price_negative": "%(field)s：不能为负数",
    "price_zero": "%(field)s：必须大于 0",
    "price_too_large": "%(field)s：不能超过 %(max)s 元",
    "supply_above_retail": "供货价不能高于零售价",
    "invalid_rate": "佣金比例必须在 %(min)s%% 到 %(max)s%% 之间",
    "invalid_markup_cap": "加价上限必须在 0%% 到 100%% 之间（留空为默认值）",
    "percent_format": "%(field)s：请输入百分比数字，例如 12.5",
    "integer_format": "%(field)s：请输入整数",
    "out_of_range": "%(field)s：请输入 %(min)s 到 %(max)s 之间的整数",
    "required": "%(field)s：不能为空",
    "too_long": "%(field)s：最多 %(max)s 个字符，且不能含控制字符",
    "invalid_code": "编码只能包含字母、数字和 - _ .，以字母或数字开头，最长 64 位",
    "invalid_kind": "请选择 SKU 类型",
    "duplicate_code": "这个编码已经存在，请换一个",
    "no_counter_stock": "只有序列号和直充类 SKU 有库存数",
    "bundle_empty": "礼包至少需要一个组件",
    "bundle_self": "礼包不能包含自己",
    "bundle_component_kind": "礼包只能包含卡密和序列号类 SKU（%(sku)s 不行）",
    "bundle_repeated": "%(sku)s 在礼包里出现了两次",
    "bundle_line": "礼包组成第 %(line)s 行看不懂：每行写“SKU 编码 数量”，例如 CARD-1 2",
    "not_bundle": "只有礼包类 SKU 有组件",
    "bundle_not_component": "%(sku)s 不是这个礼包的组件",
    "unknown_sku": "没有这个 SKU：%(sku)s",
    "unknown_product": "请选择一个存在的商品",
    "serial_invalid": "序列号：必填，最多 512 个可打印字符，且不能以 = + - @ 开头",
    "reason_required": "请填写原因（至少 2 个字）",
    "missing_action_token": "表单缺少一次性令牌，请刷新页面后重试",
}
KIND_LABELS = {Kind.CARD_KEY: "卡密", Kind.SERIAL: "序列号", Kind.TOPUP: "直充", Kind.BUNDLE: "礼包"}


def message_of(exc: DomainError) -> str:
    """A domain error as a sentence in the operator's language."""
    template = MESSAGES.get(exc.code)
    if template is None:
        return exc.message
    params: dict[str, Any] = dict(getattr(exc, "params", {}) or {})
    field = getattr(exc, "field", None)
    params["field"] = _(FIELD_LABELS[field]) if field in FIELD_LABELS else (field or "")
    return _(template, **params)


def actor() -> str:
    """The signed-in operator as the services' `actor` ("operator:<id>")."""
    who = current()
    return f"operator:{who.id}" if who else "operator:?"


def blank(name: str) -> bool:
    """True when the form field is empty or spaces."""
    return not (request.form.get(name) or "").strip()


def form_int(name: str, field: str) -> int | None:
    """A whole number typed in form field `name` (None when blank); CatalogInputError
    `integer_format` about `field` otherwise."""
    text = (request.form.get(name) or "").strip()
    if not text:
        return None
    if not text.lstrip("-").isdigit() or len(text) > 12:
        raise CatalogInputError(f"{field}: not a whole number", code="integer_format", field=field)
    return int(text)


def sku_values(*, creating: bool) -> dict[str, Any]:
    """The SKU form as service values (fen, bp, None for 'use the default'). Raises
    CatalogInputError for a value that is not even of the right type."""
    f = request.form
    values: dict[str, Any] = {
        "name": f.get("name") or "",
        "supply_price_fen": edits.yuan_to_fen(f.get("supply_price") or "", "supply_price_fen"),
        "retail_price_fen": edits.yuan_to_fen(f.get("retail_price") or "", "retail_price_fen"),
        "commission_bp": edits.percent_to_bp(f.get("commission") or "", "commission_bp"),
        "max_markup_bp": None if blank("max_markup") else edits.percent_to_bp(f["max_markup"], "max_markup_bp"),
        "max_per_order": form_int("max_per_order", "max_per_order"),
        "low_stock_threshold": form_int("low_stock_threshold", "low_stock_threshold"),
        "min_rank": form_int("min_rank", "min_rank") or 0,
        "active": f.get("active") == "1",
    }
    if creating:
        values["stock"] = form_int("stock", "stock") or 0
    return values


def form_defaults(sku: Sku | None) -> dict[str, str]:
    """What the SKU form shows: the stored values as typed (yuan, percent), or the defaults."""
    if sku is None:
        return {"commission": "10", "active": "1", "min_rank": "0"}
    return {
        "name": sku.name, "supply_price": yuan(sku.supply_price_fen), "retail_price": yuan(sku.retail_price_fen),
        "commission": percent(sku.commission_bp),
        "max_markup": "" if sku.max_markup_bp is None else percent(sku.max_markup_bp),
        "max_per_order": "" if sku.max_per_order is None else str(sku.max_per_order),
        "low_stock_threshold": "" if sku.low_stock_threshold is None else str(sku.low_stock_threshold),
        "min_rank": str(sku.min_rank), "active": "1" if sku.active else "",
    }


def percent(bp: int) -> str:
    whole, rest = divmod(bp, 100)
    return f"{whole}.{rest:02d}".rstrip("0").rstrip(".") if rest else str(whole)


def bundle_lines(text: str) -> list[tuple[Sku, int]]:
    """'CODE QTY' (or CODE*QTY, CODE x QTY, CODE alone for 1) per line -> [(sku, qty)]."""
    parts: list[tuple[Sku, int]] = []
    for lineno, raw in enumerate((text or "").splitlines(), start=1):
        line = raw.replace("*", " ").replace("×", " ").replace(",", " ").strip()
        if not line:
            continue
        bits = line.split()
        if len(bits) == 3 and bits[1].lower() == "x":
            bits = [bits[0], bits[2]]
        if len(bits) > 2 or (len(bits) == 2 and not bits[1].isdigit()):
            raise CatalogInputError("bad bundle line", code="bundle_line", field="bundle", line=lineno)
        sku = Sku.get_or_none(Sku.code == bits[0])
        if sku is None:
            raise CatalogInputError("unknown SKU", code="unknown_sku", field="bundle", sku=bits[0][:64])
        parts.append((sku, int(bits[1]) if len(bits) == 2 else 1))
    return parts


def done(outcome: Any, success: str) -> None:
    """Flash the outcome of `perform`: `success`, or that the form had been submitted already."""
    if outcome.duplicate:
        flash_duplicate()
    else:
        flash(success, "success")
