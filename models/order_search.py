"""Orders as operators read them: the filtered list, one page at a time, and one order's record.

The list is newest first and paged by keyset, never by OFFSET and never with a COUNT(*):
`search(filters, after=id)` answers the rows after the order `after` and the cursor of the next
page. Each filter has an index behind it (migration 0010 and the earlier ones), so a page is an
index range scan of about `limit` entries whatever the size of the table:

- no filter, a status, an amount range, a buyer: the primary key read backwards from `after`
  (a buyer's orders through (user_id, idempotency_key); refunded orders through a partial index);
- a creator, a SKU, a live session: (seller_id, id), (sku_id, id), (live_id);
- a date range: (created_at, id). With a date range the order of the list is (created_at, id),
  newest first, and `after` stands for that order's place in it: ids rise with created_at (both
  are given at insert), so it is the same order as by id, and an exact one even for the orders
  placed within a millisecond of midnight, which a date-to-id translation would not be.

Filters are parsed from text (a query string) by `parse_filters`, which raises `FilterError`
naming the field for anything malformed; references (creator code, SKU code, buyer openid or
id) are resolved by `search`, which raises `FilterError` for one that does not exist. Dates are
calendar dates in Asia/Shanghai, both ends inclusive, on created_at (naive UTC in the database).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any
from zoneinfo import ZoneInfo

from models.catalog import Sku
from models.errors import InvalidInput
from models.network import CODE_PATTERN, Creator
from models.orders import Order, Status
from models.users import User

SHANGHAI = ZoneInfo("Asia/Shanghai")
PAGE = 50
MAX_LIMIT = 1000  # the largest page: exports read in batches of this size
MAX_FEN = 10**11  # a billion yuan: anything above is a typo, not a filter
_YUAN = re.compile(r"^(\d{1,9})(?:\.(\d{1,2}))?$")
_ORDER_NO = re.compile(r"^[A-Za-z0-9]{1,32}$")
_MAX_ID = 2**63 - 1


class FilterError(InvalidInput):
    """A filter value that cannot be used; `field` is the query argument it came from."""

    code = "invalid_filter"

    def __init__(self, field: str, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


@dataclass(frozen=True)
class OrderFilters:
    """What the operator looks for; None is "any". `buyer` is an openid, or a user id in digits;
    `creator` the seller's invite code; `sku` a SKU code; amounts in fen, both ends inclusive;
    dates in Asia/Shanghai, both ends inclusive."""

    status: str | None = None
    buyer: str | None = None
    creator: str | None = None
    sku: str | None = None
    live_id: int | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    min_fen: int | None = None
    max_fen: int | None = None
    no: str | None = None

    @property
    def dated(self) -> bool:
        return self.date_from is not None or self.date_to is not None

    def as_args(self) -> dict[str, str]:
        """The filters as query arguments (`parse_filters` reads them back), for links and the
        audit log; the ones not set are left out."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            arg = ARGS[f.name]
            if f.name in ("min_fen", "max_fen"):
                out[arg] = f"{value // 100}.{value % 100:02d}"
            elif isinstance(value, dt.date):
                out[arg] = value.isoformat()
            else:
                out[arg] = str(value)
        return out

    def utc_bounds(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        return utc_bounds(self.date_from, self.date_to)


# Query argument of each filter (what the list page's form and the export links use).
ARGS = {"status": "status", "buyer": "buyer", "creator": "creator", "sku": "sku", "live_id": "live",
        "date_from": "from", "date_to": "to", "min_fen": "min", "max_fen": "max", "no": "no"}


def utc_bounds(date_from: dt.date | None, date_to: dt.date | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Asia/Shanghai calendar dates (inclusive) as naive UTC [start, end) for created_at."""

    def midnight(day: dt.date) -> dt.datetime:
        return dt.datetime(day.year, day.month, day.day, tzinfo=SHANGHAI).astimezone(dt.UTC).replace(tzinfo=None)

    return (midnight(date_from) if date_from else None,
            midnight(date_to + dt.timedelta(days=1)) if date_to else None)


def shanghai(moment: dt.datetime | None) -> str:
    """A naive UTC timestamp as Asia/Shanghai wall time, to the second ("" for None)."""
    if moment is None:
        return ""
    return moment.replace(tzinfo=dt.UTC).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


# ---- parsing -------------------------------------------------------------------------------------


def parse_date(field: str, text: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise FilterError(field, f"{field}: a date is written YYYY-MM-DD", code="invalid_date") from None
    if not 2000 <= day.year <= 2100 or len(text) != 10:
        raise FilterError(field, f"{field}: a date is written YYYY-MM-DD", code="invalid_date")
    return day


def parse_yuan(field: str, text: str) -> int:
    """Yuan as typed ("12", "12.5", "12.50") to fen; negative, more than 2 decimals or absurd
    amounts are refused."""
    if text.startswith("-"):
        raise FilterError(field, f"{field}: an amount cannot be negative", code="negative_amount")
    found = _YUAN.match(text)
    if not found:
        raise FilterError(field, f"{field}: an amount is yuan with at most 2 decimals", code="invalid_amount")
    fen = int(found.group(1)) * 100 + int((found.group(2) or "0").ljust(2, "0"))
    if fen > MAX_FEN:
        raise FilterError(field, f"{field}: the amount is too large", code="invalid_amount")
    return fen


def parse_id(field: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= _MAX_ID:
        raise FilterError(field, f"{field}: an id is a positive whole number", code="invalid_id")
    return int(text)


def parse_filters(args: Mapping[str, str]) -> OrderFilters:
    """Filters from query arguments (see ARGS); blank ones are "any". Raises FilterError."""

    def arg(name: str) -> str | None:
        value = args.get(name)
        value = value.strip() if isinstance(value, str) else None
        return value or None

    values: dict[str, Any] = {}
    if (status := arg("status")) is not None:
        if status not in {s.value for s in Status}:
            raise FilterError("status", f"status: one of {', '.join(s.value for s in Status)}",
                              code="invalid_status")
        values["status"] = status
    if (buyer := arg("buyer")) is not None:
        if len(buyer) > 64 or not buyer.isprintable():
            raise FilterError("buyer", "buyer: an openid or a user id", code="invalid_buyer")
        values["buyer"] = buyer
    if (code := arg("creator")) is not None:
        if not CODE_PATTERN.match(code):
            raise FilterError("creator", "creator: an invite code is 4-32 letters, digits, '-' or '_'",
                              code="invalid_creator")
        values["creator"] = code
    if (sku := arg("sku")) is not None:
        if len(sku) > 64 or not sku.isprintable():
            raise FilterError("sku", "sku: a SKU code is at most 64 printable characters", code="invalid_sku")
        values["sku"] = sku
    if (live := arg("live")) is not None:
        values["live_id"] = parse_id("live", live)
    if (start := arg("from")) is not None:
        values["date_from"] = parse_date("from", start)
    if (end := arg("to")) is not None:
        values["date_to"] = parse_date("to", end)
    if "date_from" in values and "date_to" in values and values["date_from"] > values["date_to"]:
        raise FilterError("to", "the end date is before the start date", code="invalid_range")
    if (low := arg("min")) is not None:
        values["min_fen"] = parse_yuan("min", low)
    if (high := arg("max")) is not None:
        values["max_fen"] = parse_yuan("max", high)
    if "min_fen" in values and "max_fen" in values and values["min_fen"] > values["max_fen"]:
        raise FilterError("max", "the largest amount is below the smallest", code="invalid_range")
    if (no := arg("no")) is not None:
        if not _ORDER_NO.match(no):
            raise FilterError("no", "no: an order number is letters and digits", code="invalid_no")
        values["no"] = no.upper()
    return OrderFilters(**values)


def parse_cursor(text: str | None) -> int | None:
    """The `after` argument: an order id, or None for the first page."""
    text = (text or "").strip()
    return parse_id("after", text) if text else None


# ---- the list ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderRow:
    id: int
    no: str
    status: str
    created_at: dt.datetime
    paid_at: dt.datetime | None
    delivered_at: dt.datetime | None
    refunded_at: dt.datetime | None
    quantity: int
    unit_price_fen: int
    amount_fen: int
    markup_fen: int
    risk_hold: bool
    ref_code: str | None
    live_id: int | None
    recipient_account: str | None
    sku_id: int
    sku_code: str
    sku_name: str
    user_id: int
    buyer_openid: str
    buyer_nickname: str
    seller_id: int | None
    seller_code: str | None


@dataclass(frozen=True)
class Page:
    rows: list[OrderRow]
    next_after: int | None  # the `after` of the next page; None on the last one


_COLUMNS = (Order.id, Order.no, Order.status, Order.created_at, Order.paid_at, Order.delivered_at,
            Order.refunded_at, Order.quantity, Order.unit_price_fen, Order.amount_fen, Order.markup_fen,
            Order.risk_hold, Order.ref_code, Order.live_id, Order.recipient_account, Order.sku,
            Order.user, Order.seller_id)


def _scope(filters: OrderFilters) -> list[Any]:
    """The WHERE terms of the filters, with references resolved (FilterError when unknown)."""
    terms: list[Any] = []
    if filters.status is not None:
        terms.append(Order.status == filters.status)
    if filters.buyer is not None:
        if filters.buyer.isdigit():
            user_id = User.select(User.id).where(User.id == parse_id("buyer", filters.buyer)).scalar()
        else:
            user_id = User.select(User.id).where(User.openid == filters.buyer).scalar()
        if user_id is None:
            raise FilterError("buyer", f"no buyer {filters.buyer!r}", code="unknown_buyer")
        terms.append(Order.user == user_id)
    if filters.creator is not None:
        seller = Creator.select(Creator.id).where(Creator.code == filters.creator).scalar()
        if seller is None:
            raise FilterError("creator", f"no creator has the invite code {filters.creator!r}",
                              code="unknown_creator")
        terms.append(Order.seller_id == seller)
    if filters.sku is not None:
        sku_id = Sku.select(Sku.id).where(Sku.code == filters.sku).scalar()
        if sku_id is None:
            raise FilterError("sku", f"no SKU {filters.sku!r}", code="unknown_sku")
        terms.append(Order.sku == sku_id)
    if filters.live_id is not None:
        terms.append(Order.live_id == filters.live_id)
    start, end = filters.utc_bounds()
    if start is not None:
        terms.append(Order.created_at >= start)
    if end is not None:
        terms.append(Order.created_at < end)
    if filters.min_fen is not None:
        terms.append(Order.amount_fen >= filters.min_fen)
    if filters.max_fen is not None:
        terms.append(Order.amount_fen <= filters.max_fen)
    if filters.no is not None:
        terms.append(Order.no == filters.no)
    return terms


def _page(filters: OrderFilters, terms: list[Any], after: int | None, limit: int) -> Page:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1-{MAX_LIMIT}")
    terms = list(terms)
    if filters.dated:
        order_by = (Order.created_at.desc(), Order.id.desc())
        if after is not None:
            at = Order.select(Order.created_at).where(Order.id == after).scalar()
            if at is None:
                raise FilterError("after", f"no order {after} to continue after", code="unknown_cursor")
            # The first term bounds the (created_at, id) index scan; the second is the exact cut.
            terms += [Order.created_at <= at, (Order.created_at < at) | (Order.id < after)]
    else:
        order_by = (Order.id.desc(),)
        if after is not None:
            terms.append(Order.id < after)
    query = Order.select(*_COLUMNS)
    if terms:
        query = query.where(*terms)
    found = list(query.order_by(*order_by).limit(limit + 1).tuples())
    more = len(found) > limit
    found = found[:limit]
    return Page(_rows(found), found[-1][0] if more else None)


def _rows(found: list[tuple]) -> list[OrderRow]:
    """Order tuples with their SKU, buyer and seller: three primary-key lookups per page, not a
    join the planner might turn into a scan of the users."""
    if not found:
        return []
    skus = {i: (c, n) for i, c, n in Sku.select(Sku.id, Sku.code, Sku.name)
            .where(Sku.id.in_({r[15] for r in found})).tuples()}
    users = {i: (o, n) for i, o, n in User.select(User.id, User.openid, User.nickname)
             .where(User.id.in_({r[16] for r in found})).tuples()}
    seller_ids = {r[17] for r in found if r[17] is not None}
    sellers = dict(Creator.select(Creator.id, Creator.code).where(Creator.id.in_(seller_ids)).tuples()) \
        if seller_ids else {}
    rows = []
    for r in found:
        code, name = skus.get(r[15], ("?", "?"))
        openid, nickname = users.get(r[16], ("", ""))
        rows.append(OrderRow(*r[:15], sku_id=r[15], sku_code=code, sku_name=name, user_id=r[16],
                             buyer_openid=openid, buyer_nickname=nickname, seller_id=r[17],
                             seller_code=sellers.get(r[17]) if r[17] is not None else None))
    return rows


def search(filters: OrderFilters, *, after: int | None = None, limit: int = PAGE) -> Page:
    """One page of the orders matching `filters`, newest first, after the order `after`.
    Raises FilterError for a creator, SKU, buyer or cursor that does not exist."""
    return _page(filters, _scope(filters), after, limit)


def walk(filters: OrderFilters, *, batch: int = MAX_LIMIT) -> Iterator[list[OrderRow]]:
    """Every matching order, newest first, in keyset batches (an export: memory stays one batch).
    The references are resolved by this call, before any batch is read (FilterError here, not
    half-way through the iteration)."""
    terms = _scope(filters)

    def batches() -> Iterator[list[OrderRow]]:
        after = None
        while True:
            page = _page(filters, terms, after, batch)
            if page.rows:
                yield page.rows
            if page.next_after is None:
                return
            after = page.next_after

    return batches()
