"""Request and response models of the shelf: GET /api/v1/products (miniapp_api/api.py) and
GET /api/v1/categories (miniapp_api/shop/self_service.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from miniapp_api.schemas import Absent, CachedSchema, Id, _no_default

StockState = Literal["in_stock", "low", "sold_out"]
# At most 40 characters, no control characters (models/shelf.py `parse_query`).
SearchText = Annotated[str, Field(max_length=40, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")]
Cursor = Annotated[str, Field(max_length=32, pattern=r"^-?\d{1,10}\.\d{1,19}$")]


class ShelfSkuOut(BaseModel):
    id: int
    code: str
    name: str
    kind: str
    price_fen: int
    stock_state: StockState
    available: int | None = Field(description="units on sale; null below SHELF_EXACT_STOCK_FROM (see stock_state)")


class ShelfProductOut(BaseModel):
    id: int
    title: str
    description: str
    category: int | None
    skus: list[ShelfSkuOut]


class ShelfPage(BaseModel):
    products: list[ShelfProductOut]
    next: str | None = Field(default=None, description="pass as `after` for the next page; null on the last one")


class ShelfQuery(CachedSchema):
    category: Id | Absent = Field(default=None, json_schema_extra=_no_default, description="a category id")
    q: SearchText | Absent = Field(default=None, json_schema_extra=_no_default,
                                   description="search in product titles and SKU names (Chinese or Latin, any case)")
    after: Cursor | Absent = Field(default=None, json_schema_extra=_no_default,
                                   description="the `next` of the previous page")
    limit: int = Field(default=50, ge=1, le=50, description="products per page")


class CategoryOut(BaseModel):
    id: int
    name: str


class CategoryList(BaseModel):
    categories: list[CategoryOut]
