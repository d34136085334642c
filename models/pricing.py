"""What a SKU sells for through a creator, and how much a creator may add: two pure functions,
the only place these rules live.

Inputs, all integer fen or basis points (100 bp = 1%):
- the SKU's retail price (`Sku.retail_price_fen`) and its markup cap (`Sku.max_markup_bp`, a
  share of retail; None means the DEFAULT_MAX_MARKUP_BP setting, passed in as `default_bp`);
- the creator's markup on the SKU (`CreatorPrice.markup_fen`, 0 or more; 0 when the buyer came
  through no creator or the creator set none).

Rules:
1. selling price = retail + markup, per unit. An order's amount is selling price x quantity
   and its markup_fen is markup x quantity; the markup is the creator's, paid within the
   order's payout cap (models.commission).
2. markup cap = floor(retail x cap_bp / 10000), cap_bp = the SKU's max_markup_bp, else the
   default. A markup above the cap is refused when it is set (`network.set_markup`), so every
   stored markup is within the cap of its SKU at the time it was set.

The PostgreSQL hot path prices an order in SQL for speed: `qx_place_order` (migration 0004)
computes `s.retail_price_fen + p_markup` in the order's transaction, mirroring rule 1.
tests/models/test_pricing.py checks that both agree (an order placed through the API on
PostgreSQL has amount = selling_price x quantity); change both together.
"""

from __future__ import annotations

from typing import Protocol

BP = 10_000


class Priced(Protocol):
    """What the rules read of a SKU (a models.catalog.Sku, or anything with these fields)."""

    retail_price_fen: int
    max_markup_bp: int | None


def selling_price(sku: Priced, markup_fen: int) -> int:
    """What one unit of `sku` costs a buyer through a creator whose markup on it is
    `markup_fen` (0: no creator, or no markup): retail + markup."""
    return sku.retail_price_fen + markup_fen


def markup_cap(sku: Priced, default_bp: int) -> int:
    """The most a creator may add to `sku`, in fen: its max_markup_bp (else `default_bp`) of
    retail, rounded down."""
    cap_bp = sku.max_markup_bp if sku.max_markup_bp is not None else default_bp
    return sku.retail_price_fen * cap_bp // BP
