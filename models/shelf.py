"""The shopper's shelf (issue 14): categories, search, keyset pages, stock state.

- `parse_query` checks what a client may ask (a page of 1..50 products, a search of at most 40
  characters without control characters, a cursor it was given): InvalidInput otherwise.
- `page` lists active products with active SKUs in a stable order (category sort, then product
  id; products without a category last) from the cursor `after`; `q` matches the product's
  title, its SKUs' names and codes (Chinese as typed, Latin letters in any case; `%` and `_`
  are plain characters).
- `stock_state` is the rule for what a shopper sees of stock: "sold_out", "low" (under the SKU's
  threshold) or "in_stock", and the exact count only from `exact_from` units up.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import peewee as pw

from models import inventory
from models.catalog import Category, Product, Sku
from models.db import db
from models.errors import Conflict, InvalidInput, NotFound

MAX_LIMIT = 50
Q_MAX = 40
NO_CATEGORY_SORT = 2**31 - 1  # products without a category come after every category
_CURSOR = re.compile(r"^(-?\d{1,10})\.(\d{1,19})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class ShelfQuery:
    category: int | None = None
    q: str | None = None  # normalized (see `normalize`)
    after: tuple[int, int] | None = None  # (category sort, product id) of the last product seen
    limit: int = 20


def normalize(text: str) -> str:
    """Full-width forms folded (NFKC), whitespace runs collapsed, Latin letters lower-cased."""
    return " ".join(unicodedata.normalize("NFKC", text).split()).lower()


def parse_query(*, category: int | None = None, q: str | None = None, after: str | None = None,
                limit: int = 20) -> ShelfQuery:
    """Raises InvalidInput: invalid_limit (not 1..50), invalid_query (over 40 characters or a
    control character), invalid_cursor (not one this service gave)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit: a page holds 1 to {MAX_LIMIT} products", code="invalid_limit")
    query = None
    if q is not None:
        if len(q) > Q_MAX or _CONTROL.search(q):
            raise InvalidInput(f"q: at most {Q_MAX} characters, no control characters", code="invalid_query")
        query = normalize(q) or None
    cursor = None
    if after is not None:
        found = _CURSOR.match(after)
        if found is None:
            raise InvalidInput("after: use the `next` value of the previous page", code="invalid_cursor")
        # past every id (and inside a bigint): a made-up cursor reads an empty page, never an error
        cursor = (int(found.group(1)), min(int(found.group(2)), 2**62))
    if category is not None and (isinstance(category, bool) or not isinstance(category, int) or category < 1):
        raise InvalidInput("category: a category id", code="invalid_category")
    return ShelfQuery(category=category, q=query, after=cursor, limit=limit)


@dataclass(frozen=True)
class SkuStock:
    sku: Sku
    state: str  # in_stock | low | sold_out
    available: int | None  # the exact count, only from SHELF_EXACT_STOCK_FROM units up


@dataclass(frozen=True)
class ShelfProduct:
    product: Product
    category_id: int | None
    skus: list[SkuStock]


@dataclass(frozen=True)
class Page:
    products: list[ShelfProduct]
    next: str | None  # the cursor of the next page, None on the last one


def stock_state(available: int, threshold: int, exact_from: int) -> tuple[str, int | None]:
    """What the shopper sees of a SKU's stock: ("sold_out" | "low" | "in_stock", the count or
    None). "low" is under the SKU's threshold (its own, or LOW_STOCK_THRESHOLD); the count is
    shown only when there are at least `exact_from` units, so a small stock is never exact (a
    reseller watching counts learns nothing below it), and 0 is always shown (sold out)."""
    if available <= 0:
        return "sold_out", 0
    state = "low" if available < threshold else "in_stock"
    return state, available if available >= exact_from else None


def stocks(skus: list[Sku], *, default_threshold: int, exact_from: int) -> dict[int, SkuStock]:
    counts = inventory.available(skus)
    out = {}
    for s in skus:
        threshold = s.low_stock_threshold if s.low_stock_threshold is not None else default_threshold
        state, shown = stock_state(counts.get(s.id, 0), threshold, exact_from)
        out[s.id] = SkuStock(sku=s, state=state, available=shown)
    return out


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def page(query: ShelfQuery, *, default_threshold: int, exact_from: int) -> Page:
    """One page of the shelf. Raises NotFound (category_not_found) for a category that does not
    exist or is hidden."""
    if query.category is not None and not Category.select().where(
            (Category.id == query.category) & Category.active).exists():
        raise NotFound(f"category {query.category} not found", code="category_not_found")
    sort_key = pw.fn.COALESCE(Category.sort, NO_CATEGORY_SORT)
    active_sku = Sku.select(Sku.id).where((Sku.product == Product.id) & Sku.active)
    cond = Product.active & pw.fn.EXISTS(active_sku)
    if query.category is not None:
        cond &= Product.category_id == query.category
    if query.q is not None:
        pattern = _like(query.q)
        title_like = pw.NodeList((pw.fn.LOWER(Product.title), pw.SQL("LIKE"), pattern, pw.SQL("ESCAPE '\\'")))
        sku_like = Sku.select(Sku.id).where(
            (Sku.product == Product.id) & Sku.active
            & (pw.NodeList((pw.fn.LOWER(Sku.name), pw.SQL("LIKE"), pattern, pw.SQL("ESCAPE '\\'")))
               | pw.NodeList((pw.fn.LOWER(Sku.code), pw.SQL("LIKE"), pattern, pw.SQL("ESCAPE '\\'")))))
        cond &= (title_like | pw.fn.EXISTS(sku_like))
    if query.after is not None:
        sort, pid = query.after
        cond &= (sort_key > sort) | ((sort_key == sort) & (Product.id > pid))
    rows = list(Product.select(Product, sort_key.alias("shelf_sort"))
                .join(Category, pw.JOIN.LEFT_OUTER, on=(Category.id == Product.category_id))
                .where(cond).order_by(sort_key, Product.id).limit(query.limit + 1))
    more, rows = len(rows) > query.limit, rows[:query.limit]
    skus = list(Sku.select().where(Sku.product.in_([p.id for p in rows]) & Sku.active)
                .order_by(Sku.id)) if rows else []
    by_sku = stocks(skus, default_threshold=default_threshold, exact_from=exact_from)
    grouped: dict[int, list[SkuStock]] = {}
    for s in skus:
        grouped.setdefault(s.product_id, []).append(by_sku[s.id])
    products = [ShelfProduct(product=p, category_id=p.category_id, skus=grouped.get(p.id, [])) for p in rows]
    last = rows[-1] if rows else None
    return Page(products=products, next=f"{last.shelf_sort}.{last.id}" if more and last else None)


def product(product_id: int, *, default_threshold: int, exact_from: int) -> ShelfProduct:
    """One active product with its active SKUs' stock state. NotFound: product_not_found."""
    found = Product.get_or_none((Product.id == product_id) & Product.active)
    if found is None:
        raise NotFound("product not found", code="product_not_found")
    skus = list(found.skus.where(Sku.active).order_by(Sku.id))
    by_sku = stocks(skus, default_threshold=default_threshold, exact_from=exact_from)
    return ShelfProduct(product=found, category_id=found.category_id, skus=[by_sku[s.id] for s in skus])


def categories() -> list[Category]:
    """The active categories in shelf order."""
    return list(Category.select().where(Category.active).order_by(Category.sort, Category.id))


# ---- operators: categories (the admin's catalogue pages) -------------------------------------

NAME_MAX = 40
SORT_RANGE = (-1_000_000, 1_000_000)


def _clean_name(name: object) -> str:
    text = " ".join(name.split()) if isinstance(name, str) else ""
    if not 1 <= len(text) <= NAME_MAX or _CONTROL.search(text):
        raise InvalidInput(f"a category name has 1 to {NAME_MAX} characters", code="invalid_category_name")
    return text


def _clean_sort(sort: object) -> int:
    if isinstance(sort, bool) or not isinstance(sort, int) or not SORT_RANGE[0] <= sort <= SORT_RANGE[1]:
        raise InvalidInput("the sort order is a whole number from -1000000 to 1000000", code="invalid_sort")
    return sort


def create_category(name: object, sort: object = 0) -> Category:
    """A new active category. Raises InvalidInput (invalid_category_name, invalid_sort),
    Conflict (category_name_taken)."""
    clean, order = _clean_name(name), _clean_sort(sort)
    if Category.select().where(Category.name == clean).exists():
        raise Conflict(f"a category named {clean!r} exists", code="category_name_taken")
    try:
        with db.atomic():
            return Category.create(name=clean, sort=order)
    except pw.IntegrityError:
        raise Conflict(f"a category named {clean!r} exists", code="category_name_taken") from None


def update_category(category_id: int, *, name: object, sort: object, active: bool) -> dict[str, tuple]:
    """Rename, reorder, hide or show a category; returns what changed as {field: (before, after)}.
    Raises NotFound (category_not_found) and as `create_category`."""
    found = Category.get_or_none(Category.id == category_id)
    if found is None:
        raise NotFound(f"category {category_id} not found", code="category_not_found")
    after = {"name": _clean_name(name), "sort": _clean_sort(sort), "active": bool(active)}
    if after["name"] != found.name and Category.select().where(Category.name == after["name"]).exists():
        raise Conflict(f"a category named {after['name']!r} exists", code="category_name_taken")
    diff = {k: (getattr(found, k), v) for k, v in after.items() if getattr(found, k) != v}
    if diff:
        Category.update(**{k: v for k, (_b, v) in diff.items()}).where(Category.id == category_id).execute()
    return diff


def set_product_category(product_id: int, category_id: int | None) -> tuple[int | None, int | None]:
    """Put a product into a category (None: none); (before, after). Raises NotFound
    (product_not_found, category_not_found)."""
    found = Product.get_or_none(Product.id == product_id)
    if found is None:
        raise NotFound(f"product {product_id} not found", code="product_not_found")
    if category_id is not None and not Category.select().where(Category.id == category_id).exists():
        raise NotFound(f"category {category_id} not found", code="category_not_found")
    Product.update(category_id=category_id).where(Product.id == product_id).execute()
    return found.category_id, category_id


def all_categories() -> list[tuple[Category, int]]:
    """Every category (hidden ones too) with its number of products, in shelf order."""
    counts = dict(Product.select(Product.category_id, pw.fn.COUNT(Product.id))
                  .where(Product.category_id.is_null(False)).group_by(Product.category_id).tuples())
    return [(c, int(counts.get(c.id, 0))) for c in Category.select().order_by(Category.sort, Category.id)]
