"""Catalog: products, SKUs and bundles, and how much of each can be sold right now.

The operator's edits (validated, evented changes from the admin) are models/catalog_edits.py."""

from __future__ import annotations

from enum import StrEnum

import peewee as pw

from models.db import BaseModel, utcnow
from models.errors import InvalidInput, NotFound


class Kind(StrEnum):
    CARD_KEY = "card_key"  # one-time key from the vault pool
    SERIAL = "serial"  # the same code for every buyer
    TOPUP = "topup"  # an upstream provider credits the buyer's account
    BUNDLE = "bundle"  # several SKUs delivered together, all or nothing


class Category(BaseModel):
    """A shelf category (issue 14): products list by it in the mini-program."""

    name = pw.CharField(max_length=40, unique=True)
    sort = pw.IntegerField(default=0)  # lower first
    active = pw.BooleanField(default=True)
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "category"


class Product(BaseModel):
    title = pw.CharField(max_length=120)
    description = pw.TextField(default="")
    category_id = pw.BigIntegerField(null=True, index=True)
    active = pw.BooleanField(default=True)
    created_at = pw.DateTimeField(default=utcnow)


class Sku(BaseModel):
    product = pw.ForeignKeyField(Product, backref="skus", on_delete="RESTRICT")
    code = pw.CharField(max_length=64, unique=True)
    name = pw.CharField(max_length=120)
    kind = pw.CharField(max_length=16, choices=[(k.value, k.value) for k in Kind])
    supply_price_fen = pw.IntegerField()
    retail_price_fen = pw.IntegerField()
    # Counter stock for serial and top-up SKUs. Card-key stock is the count of available keys;
    # bundle stock derives from its components.
    stock = pw.IntegerField(default=0, constraints=[pw.Check("stock >= 0")])
    # Serial SKUs: the shared code, encrypted by the vault cipher (kid, nonce, ciphertext).
    serial_key_id = pw.CharField(max_length=32, null=True)
    serial_nonce = pw.BlobField(null=True)
    serial_ciphertext = pw.BlobField(null=True)
    low_stock_threshold = pw.IntegerField(null=True)  # None: the LOW_STOCK_THRESHOLD setting
    low_stock_flag = pw.BooleanField(default=False)
    max_per_order = pw.IntegerField(null=True)  # None: the MAX_QUANTITY setting
    commission_bp = pw.IntegerField(default=1000)  # the seller's rate, 10%-30% (1000-3000 bp)
    max_markup_bp = pw.IntegerField(null=True)  # of retail; None: DEFAULT_MAX_MARKUP_BP
    min_rank = pw.IntegerField(default=0)  # star level that unlocks this supply
    active = pw.BooleanField(default=True)
    created_at = pw.DateTimeField(default=utcnow)


class BundleItem(BaseModel):
    bundle = pw.ForeignKeyField(Sku, backref="bundle_items", on_delete="CASCADE")
    component = pw.ForeignKeyField(Sku, backref="+", on_delete="RESTRICT")
    quantity = pw.IntegerField(default=1, constraints=[pw.Check("quantity > 0")])

    class Meta:
        indexes = ((("bundle", "component"), True),)


MIN_COMMISSION_BP, MAX_COMMISSION_BP = 1000, 3000


def get_sku(code_or_id: str | int, *, active_only: bool = True) -> Sku:
    """Raises NotFound for an unknown or inactive SKU."""
    query = Sku.select(Sku, Product).join(Product)
    if isinstance(code_or_id, int):
        query = query.where(Sku.id == code_or_id)
    else:
        query = query.where(Sku.code == code_or_id)
    if active_only:
        query = query.where(Sku.active & Product.active)
    sku = query.first()
    if sku is None:
        raise NotFound(f"unknown SKU {code_or_id!r}", code="unknown_sku")
    return sku


def components(sku: Sku) -> list[tuple[Sku, int]]:
    """What one unit of a SKU is made of: itself, or a bundle's components (ordered by id)."""
    if sku.kind != Kind.BUNDLE:
        return [(sku, 1)]
    items = (
        BundleItem.select(BundleItem, Sku)
        .join(Sku, on=BundleItem.component)
        .where(BundleItem.bundle == sku)
        .order_by(Sku.id)
    )
    return [(item.component, item.quantity) for item in items]


def create_product(title: str, description: str = "") -> Product:
    return Product.create(title=title, description=description)


def create_sku(
    product: Product,
    *,
    code: str,
    name: str,
    kind: Kind,
    supply_price_fen: int,
    retail_price_fen: int,
    stock: int = 0,
    bundle: list[tuple[Sku, int]] | None = None,
    low_stock_threshold: int | None = None,
    commission_bp: int = 1000,
    max_markup_bp: int | None = None,
    min_rank: int = 0,
) -> Sku:
    """Create a SKU. Raises InvalidInput for prices below zero, retail under supply, a
    commission rate outside 10%-30%, or a bundle that is empty or contains bundles or top-ups
    (a top-up cannot be undone inside a bundle)."""
    if not MIN_COMMISSION_BP <= commission_bp <= MAX_COMMISSION_BP:
        raise InvalidInput("the commission rate must be 10%-30% (1000-3000 bp)", code="invalid_rate")
    if max_markup_bp is not None and not 0 <= max_markup_bp <= 10_000:
        raise InvalidInput("the markup cap must be 0-100% of retail", code="invalid_rate")
    if supply_price_fen < 0 or retail_price_fen <= 0:
        raise InvalidInput("prices must be positive integers in fen")
    if retail_price_fen < supply_price_fen:
        raise InvalidInput("retail price must not be below supply price")
    if kind == Kind.BUNDLE:
        if not bundle:
            raise InvalidInput("a bundle needs at least one component")
        if any(c.kind in (Kind.BUNDLE, Kind.TOPUP) for c, _ in bundle):
            raise InvalidInput("bundles may contain card keys and serials only")
    sku = Sku.create(
        product=product,
        code=code,
        name=name,
        kind=kind.value,
        supply_price_fen=supply_price_fen,
        retail_price_fen=retail_price_fen,
        stock=stock,
        low_stock_threshold=low_stock_threshold,
        commission_bp=commission_bp,
        max_markup_bp=max_markup_bp,
        min_rank=min_rank,
    )
    for component, qty in bundle or []:
        BundleItem.create(bundle=sku, component=component, quantity=qty)
    return sku


def add_stock(sku: Sku, quantity: int) -> None:
    """Top up a counter-stocked SKU (serial or top-up)."""
    if sku.kind not in (Kind.SERIAL, Kind.TOPUP):
        raise InvalidInput("only serial and top-up SKUs have counter stock")
    Sku.update(stock=Sku.stock + quantity).where(Sku.id == sku.id).execute()
