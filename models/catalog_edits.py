"""Editing the catalog: every change an operator makes to products, SKUs and bundles (the admin).

These functions validate the whole change, write it in one transaction with an event
(`sku.price_changed` with before and after for every price change), and raise
`CatalogInputError` (a stable `code`, the `field` it is about and its `params`) so a form can say
what is wrong in the operator's language. Nothing is ever deleted: products and SKUs are
deactivated instead (orders and vouchers point at them). Amounts typed by an operator are read
exactly (`yuan_to_fen`, `percent_to_bp`: Decimal, never a float).

The catalog itself (models, lookups, `create_product` / `create_sku`) is models/catalog.py.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

import peewee as pw

from models import events
from models.catalog import (
    MAX_COMMISSION_BP,
    MIN_COMMISSION_BP,
    BundleItem,
    Kind,
    Product,
    Sku,
    add_stock,
    components,
    create_sku,
)
from models.db import db, lock_rows
from models.errors import Conflict, InvalidInput

MAX_PRICE_FEN = 100_000_000  # 1,000,000 yuan: anything above is a typo, not a price
MAX_ORDER_LIMIT = 1000  # the MAX_QUANTITY setting's own ceiling
MAX_MIN_RANK = 99
MAX_STOCK_ADD = 1_000_000
MAX_BUNDLE_QUANTITY = 100
MAX_TITLE, MAX_NAME, MAX_DESCRIPTION = 120, 120, 4000
CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_AMOUNT = re.compile(r"^([+-]?)(\d+)(?:\.(\d*))?$")
PRICE_FIELDS = ("supply_price_fen", "retail_price_fen")
SKU_EDITABLE = ("name", "supply_price_fen", "retail_price_fen", "commission_bp", "max_markup_bp",
                "max_per_order", "low_stock_threshold", "min_rank", "active")
PRODUCT_EDITABLE = ("title", "description", "active")
BUNDLE_PARTS = (Kind.CARD_KEY, Kind.SERIAL)  # a top-up cannot be undone inside a bundle


class CatalogInputError(InvalidInput):
    """A catalog value that cannot be accepted: `code` says why, `field` which value,
    `params` the numbers a message needs (limits, the line of a bundle list...)."""

    def __init__(self, message: str, *, code: str, field: str | None = None, **params: object) -> None:
        super().__init__(message, code=code)
        self.field = field
        self.params = params


class DuplicateCode(Conflict):
    code = "duplicate_code"


def yuan_to_fen(text: str, field: str = "price") -> int:
    """An amount typed in yuan ('19.90', '¥19.9', '１９．９０') as exact integer fen, through
    Decimal (never a float). Raises CatalogInputError: `price_format` (not a number),
    `price_decimals` (more than two decimals) or `price_too_large`. The sign is kept: range
    checks belong to the field (`price_negative`, `price_zero`)."""
    value = unicodedata.normalize("NFKC", text or "").strip().removeprefix("¥").removesuffix("元").strip()
    m = _AMOUNT.match(value.replace(",", ""))
    if m is None:
        raise CatalogInputError(f"{field}: not an amount in yuan", code="price_format", field=field)
    sign, whole, cents = m.group(1), m.group(2), m.group(3) or ""
    if len(cents) > 2:
        raise CatalogInputError(f"{field}: at most two decimals", code="price_decimals", field=field)
    if len(whole.lstrip("0")) > 9:
        raise CatalogInputError(f"{field}: too large", code="price_too_large", field=field,
                                max=MAX_PRICE_FEN // 100)
    fen = int(Decimal(f"{whole}.{cents or '0'}") * 100)
    return -fen if sign == "-" else fen


def percent_to_bp(text: str, field: str = "rate") -> int:
    """A percentage ('12.5', '12.5%', '30') as integer basis points (1250), exactly; at most two
    decimals. Raises CatalogInputError `percent_format`."""
    value = unicodedata.normalize("NFKC", text or "").strip().removesuffix("%").strip()
    m = _AMOUNT.match(value)
    if m is None or len(m.group(3) or "") > 2 or len(m.group(2).lstrip("0")) > 6:
        raise CatalogInputError(f"{field}: not a percentage", code="percent_format", field=field)
    bp = int(Decimal(f"{m.group(2)}.{m.group(3) or '0'}") * 100)
    return -bp if m.group(1) == "-" else bp


def _price(field: str, fen: int, *, zero_ok: bool) -> None:
    if fen < 0:
        raise CatalogInputError(f"{field}: negative", code="price_negative", field=field)
    if fen == 0 and not zero_ok:
        raise CatalogInputError(f"{field}: must be above zero", code="price_zero", field=field)
    if fen > MAX_PRICE_FEN:
        raise CatalogInputError(f"{field}: too large", code="price_too_large", field=field,
                                max=MAX_PRICE_FEN // 100)


def _whole(field: str, value: int | None, low: int, high: int, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if value is None or isinstance(value, bool) or not low <= value <= high:
        raise CatalogInputError(f"{field}: must be a whole number {low}-{high}", code="out_of_range",
                                field=field, min=low, max=high)


def _text(field: str, value: str, limit: int, *, required: bool = True) -> str:
    value = (value or "").strip()
    if required and not value:
        raise CatalogInputError(f"{field}: required", code="required", field=field)
    if len(value) > limit or any(unicodedata.category(ch) == "Cc" and ch not in "\n\r\t" for ch in value):
        raise CatalogInputError(f"{field}: at most {limit} characters of text", code="too_long",
                                field=field, max=limit)
    return value


def check_sku_values(values: dict[str, object], *, changed: frozenset[str] | set[str] | None = None) -> None:
    """Validate SKU values (`changed`: only these fields, plus the supply <= retail rule when a
    price changed). Raises CatalogInputError."""
    fields = set(values) if changed is None else set(changed)
    if "name" in fields:
        _text("name", str(values["name"] or ""), MAX_NAME)
    if "supply_price_fen" in fields:
        _price("supply_price_fen", int(values["supply_price_fen"]), zero_ok=True)  # type: ignore[call-overload]
    if "retail_price_fen" in fields:
        _price("retail_price_fen", int(values["retail_price_fen"]), zero_ok=False)  # type: ignore[call-overload]
    if fields & set(PRICE_FIELDS) and int(values["supply_price_fen"]) > int(values["retail_price_fen"]):  # type: ignore[call-overload]
        raise CatalogInputError("supply price above retail price", code="supply_above_retail",
                                field="supply_price_fen")
    if "commission_bp" in fields:
        rate = values["commission_bp"]
        if not isinstance(rate, int) or not MIN_COMMISSION_BP <= rate <= MAX_COMMISSION_BP:
            raise CatalogInputError("the commission rate must be 10%-30%", code="invalid_rate",
                                    field="commission_bp", min=MIN_COMMISSION_BP // 100,
                                    max=MAX_COMMISSION_BP // 100)
    if "max_markup_bp" in fields:
        cap = values["max_markup_bp"]
        if cap is not None and (not isinstance(cap, int) or not 0 <= cap <= 10_000):
            raise CatalogInputError("the markup cap must be 0-100% of retail", code="invalid_markup_cap",
                                    field="max_markup_bp")
    if "max_per_order" in fields:
        _whole("max_per_order", values["max_per_order"], 1, MAX_ORDER_LIMIT)  # type: ignore[arg-type]
    if "low_stock_threshold" in fields:
        _whole("low_stock_threshold", values["low_stock_threshold"], 0, MAX_STOCK_ADD)  # type: ignore[arg-type]
    if "min_rank" in fields:
        _whole("min_rank", values["min_rank"], 0, MAX_MIN_RANK, optional=False)  # type: ignore[arg-type]


def sku_snapshot(sku: Sku) -> dict[str, object]:
    """What an operator may see and change of a SKU (never the sealed serial code)."""
    return {"code": sku.code, "kind": sku.kind, "product_id": sku.product_id,
            **{f: getattr(sku, f) for f in SKU_EDITABLE}}


def _check_parts(parts: list[tuple[Sku, int]], bundle_id: int | None = None) -> None:
    if not parts:
        raise CatalogInputError("a bundle needs at least one component", code="bundle_empty", field="bundle")
    seen: set[int] = set()
    for component, qty in parts:
        if bundle_id is not None and component.id == bundle_id:
            raise CatalogInputError("a bundle cannot contain itself", code="bundle_self", field="bundle")
        if component.kind not in BUNDLE_PARTS:
            raise CatalogInputError("bundles may contain card keys and serials only",
                                    code="bundle_component_kind", field="bundle", sku=component.code)
        if component.id in seen:
            raise CatalogInputError("a component is listed twice", code="bundle_repeated", field="bundle",
                                    sku=component.code)
        seen.add(component.id)
        _whole("quantity", qty, 1, MAX_BUNDLE_QUANTITY, optional=False)


def add_product(title: str, description: str = "", *, actor: str, active: bool = True) -> Product:
    """A new product, validated (title 1-120 characters). Event `product.created`."""
    title = _text("title", title, MAX_TITLE)
    description = _text("description", description, MAX_DESCRIPTION, required=False)
    with db.atomic():
        product = Product.create(title=title, description=description, active=bool(active))
        events.record("product.created", f"product:{product.id}", actor, title=title, active=product.active)
    return product


def update_product(product: Product, changes: dict[str, object], *, actor: str) -> dict[str, tuple]:
    """Change a product's title, description or active flag. Returns {field: (before, after)}
    of what changed (nothing: {}); event `product.updated`. Deactivating a product takes all
    its SKUs off sale (orders check both flags)."""
    unknown = set(changes) - set(PRODUCT_EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    clean = dict(changes)
    if "title" in clean:
        clean["title"] = _text("title", str(clean["title"] or ""), MAX_TITLE)
    if "description" in clean:
        clean["description"] = _text("description", str(clean["description"] or ""), MAX_DESCRIPTION,
                                     required=False)
    if "active" in clean:
        clean["active"] = bool(clean["active"])
    with db.atomic():
        row = lock_rows(Product.select().where(Product.id == product.id)).get()
        diff = {f: (getattr(row, f), v) for f, v in clean.items() if getattr(row, f) != v}
        if diff:
            Product.update(**{f: after for f, (_b, after) in diff.items()}).where(Product.id == row.id).execute()
            events.record("product.updated", f"product:{row.id}", actor,
                          before={f: b for f, (b, _a) in diff.items()}, after={f: a for f, (_b, a) in diff.items()})
    for f, (_before, after) in diff.items():
        setattr(product, f, after)
    return diff


def add_sku(product: Product, *, actor: str, code: str, name: str, kind: Kind | str, supply_price_fen: int,
            retail_price_fen: int, commission_bp: int = 1000, max_markup_bp: int | None = None,
            max_per_order: int | None = None, low_stock_threshold: int | None = None, min_rank: int = 0,
            active: bool = True, stock: int = 0, bundle: list[tuple[Sku, int]] | None = None) -> Sku:
    """A new SKU, validated as a whole (see `check_sku_values`; the code is 1-64 letters, digits,
    '-', '_' or '.', and unique), through `create_sku`. Event `sku.created` with its prices.
    Raises CatalogInputError or DuplicateCode; nothing is written then."""
    code = (code or "").strip()
    if not CODE_PATTERN.match(code):
        raise CatalogInputError("the code is 1-64 letters, digits, '-', '_' or '.'", code="invalid_code",
                                field="code")
    try:
        kind = Kind(kind)
    except ValueError:
        raise CatalogInputError("unknown kind", code="invalid_kind", field="kind") from None
    values: dict[str, object] = {
        "name": name, "supply_price_fen": supply_price_fen, "retail_price_fen": retail_price_fen,
        "commission_bp": commission_bp, "max_markup_bp": max_markup_bp, "max_per_order": max_per_order,
        "low_stock_threshold": low_stock_threshold, "min_rank": min_rank}
    check_sku_values(values)
    if kind in (Kind.SERIAL, Kind.TOPUP):
        _whole("stock", stock, 0, MAX_STOCK_ADD, optional=False)
    elif stock:
        raise CatalogInputError("only serial and top-up SKUs have counter stock", code="no_counter_stock",
                                field="stock")
    if kind == Kind.BUNDLE:
        _check_parts(bundle or [])
    elif bundle:
        raise CatalogInputError("only a bundle has components", code="not_bundle", field="bundle")
    if Sku.select().where(Sku.code == code).exists():
        raise DuplicateCode(f"SKU code {code!r} exists", code="duplicate_code")
    try:
        with db.atomic():
            sku = create_sku(product, code=code, name=str(name).strip(), kind=kind,
                             supply_price_fen=supply_price_fen, retail_price_fen=retail_price_fen, stock=stock,
                             bundle=bundle, low_stock_threshold=low_stock_threshold,
                             commission_bp=commission_bp, max_markup_bp=max_markup_bp, min_rank=min_rank)
            if max_per_order is not None or not active:
                Sku.update(max_per_order=max_per_order, active=bool(active)).where(Sku.id == sku.id).execute()
                sku.max_per_order, sku.active = max_per_order, bool(active)
            events.record("sku.created", f"sku:{sku.id}", actor, code=code, kind=kind.value,
                          supply_price_fen=supply_price_fen, retail_price_fen=retail_price_fen)
    except pw.IntegrityError:
        raise DuplicateCode(f"SKU code {code!r} exists", code="duplicate_code") from None
    return sku


def update_sku(sku: Sku, changes: dict[str, object], *, actor: str) -> dict[str, tuple]:
    """Change a SKU (the fields of SKU_EDITABLE; code and kind are fixed once sold). Validates the
    changed fields, and supply <= retail when a price changes; writes the change and, in the same
    transaction, `sku.price_changed` (before/after of both prices) when a price changed and
    `sku.updated` for the other fields. Returns {field: (before, after)} ({}: nothing changed).
    Raises CatalogInputError; nothing is written then.

    Callers that serve orders from a cache drop it afterwards (models.orders.forget_cached_skus)."""
    unknown = set(changes) - set(SKU_EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    with db.atomic():
        row = lock_rows(Sku.select().where(Sku.id == sku.id)).get()
        now = {f: getattr(row, f) for f in SKU_EDITABLE}
        clean = dict(changes)
        if "name" in clean:
            clean["name"] = str(clean["name"] or "").strip()
        if "active" in clean:
            clean["active"] = bool(clean["active"])
        diff = {f: (now[f], v) for f, v in clean.items() if now[f] != v}
        if not diff:
            return {}
        check_sku_values({**now, **clean}, changed=set(diff))
        Sku.update(**{f: after for f, (_b, after) in diff.items()}).where(Sku.id == row.id).execute()
        subject = f"sku:{row.id}"
        if set(diff) & set(PRICE_FIELDS):
            events.record("sku.price_changed", subject, actor, code=row.code,
                          before={f: now[f] for f in PRICE_FIELDS},
                          after={f: diff[f][1] if f in diff else now[f] for f in PRICE_FIELDS})
        others = {f: d for f, d in diff.items() if f not in PRICE_FIELDS}
        if others:
            events.record("sku.updated", subject, actor, code=row.code,
                          before={f: b for f, (b, _a) in others.items()},
                          after={f: a for f, (_b, a) in others.items()})
    for f, (_before, after) in diff.items():
        setattr(sku, f, after)
    return diff


def restock(sku: Sku, quantity: int, *, actor: str) -> int:
    """Add counter stock to a serial or top-up SKU (1..1,000,000 at a time); event `sku.restocked`.
    Returns the new stock."""
    _whole("quantity", quantity, 1, MAX_STOCK_ADD, optional=False)
    if sku.kind not in (Kind.SERIAL, Kind.TOPUP):
        raise CatalogInputError("only serial and top-up SKUs have counter stock", code="no_counter_stock",
                                field="stock")
    with db.atomic():
        add_stock(sku, quantity)
        stock = Sku.select(Sku.stock).where(Sku.id == sku.id).scalar()
        events.record("sku.restocked", f"sku:{sku.id}", actor, added=quantity, stock=stock)
    return stock


def bundle_parts(bundle: Sku) -> list[tuple[str, int]]:
    """A bundle's composition as (component code, quantity), ordered by component id."""
    return [(c.code, q) for c, q in components(bundle)] if bundle.kind == Kind.BUNDLE else []


def set_bundle_part(bundle: Sku, component: Sku, quantity: int, *, actor: str) -> list[tuple[str, int]]:
    """Add a component to a bundle, or set its quantity (1-100). Only card-key and serial SKUs can
    be components (never the bundle itself, another bundle or a top-up). Event
    `sku.bundle_changed`; returns the new composition. Orders already placed keep what they
    reserved (their order items)."""
    if bundle.kind != Kind.BUNDLE:
        raise CatalogInputError("not a bundle", code="not_bundle", field="bundle")
    with db.atomic():
        lock_rows(Sku.select(Sku.id).where(Sku.id == bundle.id)).get()
        before = bundle_parts(bundle)
        current = [(c, q) for c, q in components(bundle) if c.id != component.id]
        _check_parts([*current, (component, quantity)], bundle_id=bundle.id)
        updated = (BundleItem.update(quantity=quantity)
                   .where((BundleItem.bundle == bundle.id) & (BundleItem.component == component.id)).execute())
        if not updated:
            BundleItem.create(bundle=bundle.id, component=component.id, quantity=quantity)
        after = bundle_parts(bundle)
        events.record("sku.bundle_changed", f"sku:{bundle.id}", actor, code=bundle.code,
                      before=[list(p) for p in before], after=[list(p) for p in after])
    return after


def remove_bundle_part(bundle: Sku, component: Sku, *, actor: str) -> list[tuple[str, int]]:
    """Take a component out of a bundle (a bundle keeps at least one). Event `sku.bundle_changed`."""
    if bundle.kind != Kind.BUNDLE:
        raise CatalogInputError("not a bundle", code="not_bundle", field="bundle")
    with db.atomic():
        lock_rows(Sku.select(Sku.id).where(Sku.id == bundle.id)).get()
        before = bundle_parts(bundle)
        if component.code not in dict(before):
            raise CatalogInputError("not a component of this bundle", code="bundle_not_component",
                                    field="bundle", sku=component.code)
        if len(before) == 1:
            raise CatalogInputError("a bundle needs at least one component", code="bundle_empty", field="bundle")
        BundleItem.delete().where((BundleItem.bundle == bundle.id) & (BundleItem.component == component.id)).execute()
        after = bundle_parts(bundle)
        events.record("sku.bundle_changed", f"sku:{bundle.id}", actor, code=bundle.code,
                      before=[list(p) for p in before], after=[list(p) for p in after])
    return after


def bundles_containing(component: Sku) -> list[Sku]:
    """The bundles that list `component` (to warn before deactivating it)."""
    return list(Sku.select().join(BundleItem, on=BundleItem.bundle == Sku.id)
                .where(BundleItem.component == component.id).order_by(Sku.id))
