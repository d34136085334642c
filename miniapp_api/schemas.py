"""Request and response models of the mini-program API (they generate the OpenAPI document)."""

from __future__ import annotations

import copy
from functools import cache
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

_strict = ConfigDict(extra="forbid", strict=True)
# Free text in a body: anything but NUL, which PostgreSQL cannot store (every body is refused
# with one, see api._json_object_body; the document says so).
NO_NUL = r"^[^\x00]*$"


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


# An optional header or query parameter is absent or has a value: `null` is not one it can take
# (`?before_id=null` sends the text "null"), so the document shows only the value's schema.
Absent = SkipJsonSchema[None]
Id = Annotated[int, Field(ge=1, le=2**62)]


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# A JSON integer: 2.0 is the number 2 (JSON does not tell them apart, nor does the document's
# `type: integer`); 2.5, "2" and true stay refused (strict models).
JsonInt = Annotated[int, BeforeValidator(_integral)]


class LoginIn(BaseModel):
    model_config = _strict
    code: str = Field(min_length=1, max_length=128, pattern=NO_NUL, description="wx.login() code")


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
    sku: str = Field(min_length=1, max_length=64, pattern=NO_NUL, description="SKU code")
    quantity: JsonInt = Field(default=1, ge=1, le=1000)
    ref: str | None = Field(default=None, max_length=32, pattern=r"^[A-Za-z0-9_-]{1,32}$",
                            description="creator code the buyer came through")
    account: str | None = Field(default=None, max_length=64, pattern=NO_NUL,
                                description="account to credit (top-up products only)")
    live: Annotated[int, Field(ge=1, le=2**53), BeforeValidator(_integral)] | None = Field(
        default=None, description="live session id, when bought in the creator's live room")
    coupons: list[Annotated[int, Field(ge=1, le=2**53), BeforeValidator(_integral)]] = Field(
        default_factory=list, max_length=3, description="ids of the buyer's coupons (GET /me/coupons) to apply")
    group_activity: Annotated[int, Field(ge=1, le=2**53), BeforeValidator(_integral)] | None = Field(
        default=None, description="start a new team of this group-buy activity (pay the group price)")
    team: Annotated[int, Field(ge=1, le=2**53), BeforeValidator(_integral)] | None = Field(
        default=None, description="join this group-buy team (pay the group price)")


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


IdempotencyKey = Annotated[str, Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


class IdempotencyHeader(CachedSchema):
    idempotency_key: IdempotencyKey | Absent = Field(
        default=None, alias="Idempotency-Key", json_schema_extra=_no_default,
        description="same key + same body returns the same order; another body is a 409")


class OrderOut(BaseModel):
    id: int
    no: str
    sku: str
    product: str
    quantity: int
    amount_fen: int
    discount_fen: int = 0
    status: str
    ref: str | None
    group_team: int | None = Field(default=None, description="the group-buy team this order waits for "
                                                             "(null for other orders and once the team succeeded)")
    created_at: str
    expires_at: str
    paid_at: str | None
    delivered_at: str | None


class OrderList(BaseModel):
    orders: list[OrderOut]


class ListQuery(CachedSchema):
    limit: int = Field(default=20, ge=1, le=100)
    before_id: Id | Absent = Field(default=None, json_schema_extra=_no_default)


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


class HealthOut(BaseModel):
    status: str = Field(description="ok when every dependency answers; otherwise what is down")
    database: str = Field(description="ok, or why the database is unavailable")
    redis: str = Field(description="ok, or why Redis is unavailable")


ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorOut"}


def document(app: Any, settings: Any) -> None:
    """Make the app's OpenAPI document say what the app does (call once, from create_app):
    flask-openapi3 documents every 400 as an array of errors (the app answers one error object)
    and to every operation (also those without any input); and some limits are settings of the
    app, not constants of the models: the document states the values this app was created with."""
    generate = app.generate_spec_json

    def generate_true_to_the_api() -> None:
        generate()
        correct_document(app.spec_json, settings)

    app.generate_spec_json = generate_true_to_the_api


def correct_document(doc: dict[str, Any], settings: Any) -> None:
    for path, item in doc["paths"].items():
        for op in item.values():
            if path.startswith("/api/v1/") and path != "/api/v1/ping":
                op["responses"].setdefault("503", {
                    "description": "database_unavailable: a brief outage; try again after Retry-After",
                    "content": {"application/json": {"schema": dict(ERROR_SCHEMA)}}})
            if op.get("requestBody"):
                op["responses"]["413"] = {
                    "description": f"the body is larger than MAX_BODY_BYTES ({settings.MAX_BODY_BYTES})",
                    "content": {"application/json": {"schema": dict(ERROR_SCHEMA)}}}
            bad = op.get("responses", {}).get("400")
            if not bad:
                continue
            if bad["content"]["application/json"]["schema"].get("type") == "array":
                if not op.get("parameters") and not op.get("requestBody"):
                    del op["responses"]["400"]  # nothing in the request can be invalid
                    continue
                bad["content"]["application/json"]["schema"] = dict(ERROR_SCHEMA)
            bad["description"] = ("invalid_request / invalid_json: the request does not match this "
                                  "document (the message says where); other codes: a rule in the "
                                  "operation's description")
    models = doc["components"]["schemas"]
    quantity = models["CreateOrderIn"]["properties"]["quantity"]
    quantity["maximum"] = settings.MAX_QUANTITY
    quantity["description"] = (f"at most MAX_QUANTITY ({settings.MAX_QUANTITY}); a SKU may allow fewer "
                               "and top-ups are bought one at a time (400 invalid_quantity)")
    events = models["TrackIn"]["properties"]["events"]
    events["maxItems"] = settings.ACTIVITY_MAX_BATCH
    events["description"] = f"at most ACTIVITY_MAX_BATCH ({settings.ACTIVITY_MAX_BATCH}) events"
    amount = models["WithdrawIn"]["properties"]["amount_fen"]
    amount["minimum"] = settings.WITHDRAW_MIN_FEN
    amount["description"] = (f"taken from the available balance (fee included); at least "
                             f"WITHDRAW_MIN_FEN ({settings.WITHDRAW_MIN_FEN})")
