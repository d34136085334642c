"""Earnings center: what the creator-facing screens read (balances by state, the statement of
ledger entries and its CSV export, commission lines, the creator's products and prices) and
the join flow of the mini-program.

Sign convention: the ledger keeps debits positive and credits negative, so money the platform
owes a creator is a NEGATIVE balance in `creator:{id}:{bucket}`. Everything here is turned
round to the creator's point of view: a positive amount is money for the creator.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

import peewee as pw

from models import ledger, network, withdrawals
from models.catalog import Product, Sku
from models.commission import seller_rate
from models.db import db
from models.errors import NotFound
from models.ledger import LedgerTransaction, Posting
from models.levels import StarLevel
from models.money import yuan
from models.network import BindVia, Creator, CreatorPrice
from models.orders import Order
from models.pricing import markup_cap, selling_price
from models.settlement import Commission, Settlement
from models.users import User


def _creator_id(creator: Creator | int) -> int:
    return creator if isinstance(creator, int) else creator.id


def _accounts(creator_id: int) -> list[str]:
    return [ledger.creator_account(creator_id, b) for b in ledger.CREATOR_BUCKETS]


# -- balances ---------------------------------------------------------------------------------

def balances(creator: Creator | int) -> dict[str, int]:
    """The creator's money by state, in positive fen owed to the creator (one query):
    pending_fen (inside the refund window), available_fen (withdrawable), withdrawing_fen
    (requested, not yet paid out), credit_fen (shopping credit), and debt_fen: what the creator
    owes the platform when clawbacks took the available balance below zero (available_fen is
    then 0; future earnings pay the debt off first). One implementation, shared with the
    withdrawal checks: `models.withdrawals.balances`."""
    return withdrawals.balances(_creator_id(creator))


# -- statement --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One posting on one of the creator's accounts. `amount_fen` is from the creator's point
    of view: positive when money arrives in `bucket`, negative when it leaves it."""

    id: int  # the posting id (the paging key)
    kind: str  # the ledger transaction kind: commission, release, reversal, clawback, ...
    key: str
    memo: str
    bucket: str  # pending | available | withdrawing | credit
    amount_fen: int
    order_id: int | None
    created_at: dt.datetime


STATEMENT_MAX = 500


def statement(creator: Creator | int, limit: int = 50, before_id: int | None = None) -> list[Entry]:
    """The creator's ledger postings, newest first, `limit` at a time; pass the last entry's id
    as `before_id` for the next page."""
    cid = _creator_id(creator)
    limit = max(1, min(int(limit), STATEMENT_MAX))
    query = (Posting.select(Posting.id, Posting.account, Posting.amount_fen, LedgerTransaction.kind,
                            LedgerTransaction.key, LedgerTransaction.memo, LedgerTransaction.order_id,
                            LedgerTransaction.created_at)
             .join(LedgerTransaction)
             .where(Posting.account.in_(_accounts(cid))))
    if before_id is not None:
        query = query.where(Posting.id < before_id)
    rows = query.order_by(Posting.id.desc()).limit(limit).tuples()
    return [Entry(id=pid, kind=kind, key=key, memo=memo, bucket=account.rsplit(":", 1)[1],
                  amount_fen=-int(amount), order_id=order_id, created_at=created_at)
            for pid, account, amount, kind, key, memo, order_id, created_at in rows]


CSV_COLUMNS = ("entry_id", "created_at_utc", "kind", "bucket", "amount_yuan", "amount_fen",
               "order_id", "key", "memo")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _safe_text(value: str) -> str:
    """Spreadsheets run a cell that starts with = + - @ (or a tab / CR) as a formula: prefix
    such text with a quote so it stays text (OWASP's CSV-injection advice)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def statement_csv(creator: Creator | int) -> str:
    """Every entry of the statement as CSV text (newest first, a header row, amounts in yuan
    with two decimals and in fen). Text cells are guarded against formula injection; the
    numeric cells are written here from integers, so they are plain numbers."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    before: int | None = None
    while True:
        page = statement(creator, STATEMENT_MAX, before)
        for e in page:
            writer.writerow([e.id, e.created_at.strftime("%Y-%m-%d %H:%M:%S"), _safe_text(e.kind),
                             _safe_text(e.bucket), yuan(e.amount_fen), e.amount_fen,
                             "" if e.order_id is None else e.order_id, _safe_text(e.key),
                             _safe_text(e.memo)])
        if len(page) < STATEMENT_MAX:
            return out.getvalue()
        before = page[-1].id


# -- commission lines -------------------------------------------------------------------------

@dataclass(frozen=True)
class Line:
    id: int
    order_id: int
    order_no: str
    kind: str  # markup | sale | team1 | team2
    amount_fen: int
    state: str  # the order's settlement state: pending | available | reversed | clawed_back
    created_at: dt.datetime


def commission_lines(creator: Creator | int, limit: int = 50, before_id: int | None = None) -> list[Line]:
    """The creator's commission lines, newest first, with their order's number and where the
    order's commission stands (one query; keyset paging by line id)."""
    cid = _creator_id(creator)
    limit = max(1, min(int(limit), STATEMENT_MAX))
    query = (Commission.select(Commission.id, Commission.order_id, Order.no, Commission.kind,
                               Commission.amount_fen, Settlement.state, Commission.created_at)
             .join(Order, on=(Order.id == Commission.order_id))
             .switch(Commission)
             .join(Settlement, on=(Settlement.order_id == Commission.order_id))
             .where(Commission.creator_id == cid))
    if before_id is not None:
        query = query.where(Commission.id < before_id)
    rows = query.order_by(Commission.id.desc()).limit(limit).tuples()
    return [Line(id=i, order_id=o, order_no=no, kind=k, amount_fen=int(a), state=s, created_at=c)
            for i, o, no, k, a, s, c in rows]


# -- joining and the profile ------------------------------------------------------------------

def join(user_id: int, *, name: str = "", invite_code: str | None = None,
         via: BindVia | str = BindVia.MINIAPP) -> Creator:
    """Join the creator plan (idempotent) and, with an invite code, bind to its owner (the
    first binding wins). All or nothing: a refused binding (unknown_invite_code,
    self_binding, invite_cycle, already_bound) leaves no new creator behind."""
    user = User.get_or_none(User.id == user_id)
    if user is None:
        raise NotFound("this account no longer exists", code="user_not_found")
    via = BindVia(via)
    if invite_code is not None:
        network.by_code(invite_code)  # refuse a bad code before writing anything
    with db.atomic():
        creator = network.become_creator(user, name.strip())
        if invite_code is not None:
            creator = network.bind(creator, invite_code, via)
    return creator


SHARE_PAGE = "pages/index/index"  # the mini-program page a share opens, with ?ref=<code>


@dataclass(frozen=True)
class Profile:
    id: int
    code: str
    name: str
    rank: int
    level_name: str  # "" before one-star
    parent_code: str | None
    bound_via: str | None
    ref: str  # what a buyer's order carries as `ref`: the creator's code
    share_path: str
    joined_at: dt.datetime


def profile(creator: Creator) -> Profile:
    level = StarLevel.get_or_none(StarLevel.rank == creator.rank)
    parent = Creator.get_or_none(Creator.id == creator.parent_id) if creator.parent_id else None
    return Profile(id=creator.id, code=creator.code, name=creator.name, rank=creator.rank,
                   level_name=level.name if level else "", parent_code=parent.code if parent else None,
                   bound_via=creator.bound_via, ref=creator.code,
                   share_path=f"{SHARE_PAGE}?ref={creator.code}", joined_at=creator.created_at)


# -- products and prices ----------------------------------------------------------------------

@dataclass(frozen=True)
class CreatorProduct:
    sku: str
    name: str
    product: str
    retail_price_fen: int
    markup_fen: int
    max_markup_fen: int
    selling_price_fen: int  # what a buyer through the creator's ref pays: retail + markup
    commission_bp: int  # the creator's own-sale rate on it: max(SKU rate, level rate)
    min_rank: int
    locked: bool  # min_rank above the creator's rank: no markup, no promotion yet
    ref: str


def products(creator: Creator, *, default_cap_bp: int) -> list[CreatorProduct]:
    """Every active SKU with the creator's price on it and whether the creator's level unlocks
    it (one query for the SKUs and markups, one for the level rate)."""
    level = StarLevel.get_or_none(StarLevel.rank == creator.rank)
    level_rate = level.own_rate_bp if level else 0
    rows = (Sku.select(Sku.code, Sku.name, Product.title, Sku.retail_price_fen, Sku.max_markup_bp,
                       Sku.commission_bp, Sku.min_rank, CreatorPrice.markup_fen)
            .join(Product)
            .switch(Sku)
            .join(CreatorPrice, join_type=pw.JOIN.LEFT_OUTER,
                  on=(CreatorPrice.sku_id == Sku.id) & (CreatorPrice.creator == creator.id))
            .where(Sku.active & Product.active)
            .order_by(Sku.id).objects())
    found = []
    for sku in rows:  # Sku rows carrying the product's title and the creator's markup_fen
        markup = int(sku.markup_fen or 0)
        found.append(CreatorProduct(
            sku=sku.code, name=sku.name, product=sku.title, retail_price_fen=sku.retail_price_fen,
            markup_fen=markup, max_markup_fen=markup_cap(sku, default_cap_bp),
            selling_price_fen=selling_price(sku, markup),
            commission_bp=seller_rate(sku.commission_bp, level_rate), min_rank=sku.min_rank,
            locked=sku.min_rank > creator.rank, ref=creator.code))
    return found
