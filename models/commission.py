"""What one order pays, and to whom: one pure function, the only place the rule lives.

Inputs, all integer fen or basis points (100 bp = 1%):
- amount: what the buyer paid; markup: the seller's markup inside it (retail + markup = price);
  cost: supply price x quantity. base = amount - markup (the retail part); margin = amount - cost.
- the seller's rate: max(SKU commission rate, the seller's level own rate);
- the first and second upline's team rates, by their levels.

Rule:
1. raw amounts: markup (all of it), sale = base * seller_rate, team1 = base * upline1_rate,
   team2 = base * upline2_rate. Each product is rounded DOWN to whole fen (floor division):
   the platform keeps every fraction, so rounding can never pay more than the rule.
2. cap = floor(max(margin, 0) * cap_bp / 10_000): the most one order may pay out in total.
3. the cap is handed out in priority order markup -> sale -> team1 -> team2, each line getting
   min(raw, what is left). The seller is paid first because the seller made the sale.
4. only the seller and at most `upline_depth` (<= 2) uplines appear; nobody else is ever paid.
5. a creator's coupon (issue 14) is funded by the seller out of their earnings on the order:
   with D = the order's creator-funded discount, the split is computed on amount = what the
   buyer paid + D (the price the seller's coupon was given on), then the seller funds
   r = min(D, markup + sale) (`creator_funded`): charged to the markup first, then to the sale
   commission, so the seller's earnings on the order shrink to markup + sale - r, never below
   zero; the uplines keep their lines; the rest of D, if any, stays the platform's discount.
   A platform coupon changes nothing here: the split is computed on what the buyer paid.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_UPLINES = 2  # compliance: the seller plus two uplines, never more
BP = 10_000


@dataclass(frozen=True)
class OrderFacts:
    amount_fen: int
    markup_fen: int
    cost_fen: int
    seller_rate_bp: int
    upline1_rate_bp: int = 0  # 0 when there is no first upline
    upline2_rate_bp: int = 0


@dataclass(frozen=True)
class Split:
    markup: int
    sale: int
    team1: int
    team2: int

    @property
    def total(self) -> int:
        return self.markup + self.sale + self.team1 + self.team2


def split(facts: OrderFacts, *, cap_bp: int, upline_depth: int = MAX_UPLINES) -> Split:
    """The payout lines of one order (see the module docstring for the rule)."""
    if not 0 <= upline_depth <= MAX_UPLINES:
        raise ValueError("upline_depth must be 0, 1 or 2")
    if not 0 <= cap_bp <= BP:
        raise ValueError("cap_bp must be within 0..10000")
    markup = max(min(facts.markup_fen, facts.amount_fen), 0)
    base = max(facts.amount_fen - markup, 0)
    raw = [
        markup,
        base * max(facts.seller_rate_bp, 0) // BP,
        base * max(facts.upline1_rate_bp, 0) // BP if upline_depth >= 1 else 0,
        base * max(facts.upline2_rate_bp, 0) // BP if upline_depth >= 2 else 0,
    ]
    left = max(facts.amount_fen - facts.cost_fen, 0) * cap_bp // BP
    paid = []
    for amount in raw:
        take = min(amount, left)
        paid.append(take)
        left -= take
    return Split(*paid)


def creator_funded(got: Split, creator_discount_fen: int) -> int:
    """The part r of a creator-funded discount the seller pays out of this order's lines (rule
    5): min(D, markup + sale), never negative."""
    return max(min(creator_discount_fen, got.markup + got.sale), 0)


def seller_rate(sku_rate_bp: int, level_rate_bp: int) -> int:
    return max(sku_rate_bp, level_rate_bp)
