"""Request and response models of the mini-program API (they generate the OpenAPI document)."""

from __future__ import annotations

import copy
from functools import cache
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_strict = ConfigDict(extra="forbid", strict=True)


class LoginIn(BaseModel):
    model_config = _strict
    code: str = Field(min_length=1, max_length=128, description="wx.login() code")


class DevLoginIn(BaseModel):
    model_config = _strict
    openid: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class UserOut(BaseModel):
    id: int
    nickname: str


class LoginOut(BaseModel):
    token: str
    user: UserOut


class SkuOut(BaseModel):
    id: int
    code: str
    name: str
    kind: str
    price_fen: int
    available: int


class ProductOut(BaseModel):
    id: int
    title: str
    description: str
    skus: list[SkuOut]


class ProductList(BaseModel):
    products: list[ProductOut]


class ProductPath(BaseModel):
    product_id: int = Field(ge=1, le=2**62)


class OrderPath(BaseModel):
    order_id: int = Field(ge=1, le=2**62)


class VoucherPath(BaseModel):
    voucher_id: int = Field(ge=1, le=2**62)


class CreateOrderIn(BaseModel):
    model_config = _strict
    sku: str = Field(min_length=1, max_length=64, description="SKU code")
    quantity: int = Field(default=1, ge=1, le=1000)
    ref: str | None = Field(default=None, max_length=32, pattern=r"^[A-Za-z0-9_-]{1,32}$",
                            description="creator code the buyer came through")
    account: str | None = Field(default=None, max_length=64,
                                description="account to credit (top-up products only)")
    live: int | None = Field(default=None, ge=1, le=2**53,
                             description="live session id, when bought in the creator's live room")


class CachedSchema(BaseModel):
    """flask-openapi3 rebuilds the JSON schema of header and query models on every request;
    the schema of a class never changes, so build it once. Request validation calls this
    without arguments and only reads the result: it gets a read-only view instead of a deep
    copy (the copy cost more than validating the header). Callers with arguments (the OpenAPI
    document) get their own copy."""

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        schema = _schema(cls, args, tuple(sorted(kwargs.items())))
        if not args and not kwargs:
            return MappingProxyType(schema)  # type: ignore[return-value]
        return copy.deepcopy(schema)


@cache
def _schema(cls: type[BaseModel], args: tuple, kwargs: tuple) -> dict[str, Any]:
    return BaseModel.model_json_schema.__func__(cls, *args, **dict(kwargs))  # type: ignore[attr-defined]


class IdempotencyHeader(CachedSchema):
    idempotency_key: str | None = Field(
        default=None, alias="Idempotency-Key", min_length=8, max_length=128,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="same key + same body returns the same order; another body is a 409")


class OrderOut(BaseModel):
    id: int
    no: str
    sku: str
    product: str
    quantity: int
    amount_fen: int
    status: str
    ref: str | None
    created_at: str
    expires_at: str
    paid_at: str | None
    delivered_at: str | None


class OrderList(BaseModel):
    orders: list[OrderOut]


class ListQuery(CachedSchema):
    limit: int = Field(default=20, ge=1, le=100)
    before_id: int | None = Field(default=None, ge=1, le=2**62)


class PayOut(BaseModel):
    provider: str
    params: dict[str, str]


class VoucherOut(BaseModel):
    id: int
    order_id: int
    sku: str
    name: str
    kind: str
    masked: str
    secret: str | None = Field(description="plaintext; only in the reveal call, only for the owner")
    revealed: bool
    revoked: bool
    created_at: str


class VoucherList(BaseModel):
    vouchers: list[VoucherOut]


class PingOut(BaseModel):
    ok: bool
