"""Star levels (一星 ... 千星) kept as data, and the rules that read them.

A level's thresholds (video plays, live GMV, own GMV, direct invites) must all be met. The
one-star entry is special only in where its numbers come from: the ENTRY_VIDEOS and
ENTRY_INVITES settings (one video and two invites by default). Compliance rules, checked by
`validate_table` whenever the table is written:
- a team-size threshold is only allowed together with a real-sales threshold (own or live GMV),
  except for the entry, which always also needs a video (never invites alone);
- no level has a fee, and no payment depends on headcount (rates apply to real sales only);
- rates stay inside the plan's ranges: own sale <= 30%, team rewards <= 8%.
"""

from __future__ import annotations

from dataclasses import dataclass

import peewee as pw

from models.db import BaseModel, db
from models.errors import InvalidInput


class StarLevel(BaseModel):
    rank = pw.IntegerField(primary_key=True)  # 1 = 一星; 0 (no row) = not yet a star
    name = pw.CharField(max_length=16)
    min_video_plays = pw.BigIntegerField(default=0)
    min_live_gmv_fen = pw.BigIntegerField(default=0)
    min_own_gmv_fen = pw.BigIntegerField(default=0)  # all the creator's own sales
    min_team_size = pw.IntegerField(default=0)  # direct invites
    own_rate_bp = pw.IntegerField()  # floor for the seller's rate (SKU rate if higher)
    team1_rate_bp = pw.IntegerField()  # paid to this creator as a first upline
    team2_rate_bp = pw.IntegerField()  # ... as a second upline
    withdraw_fee_bp = pw.IntegerField(null=True)  # perk; None = WITHDRAW_FEE_BP setting
    supply_tier = pw.IntegerField(default=0)  # SKUs with min_rank <= rank are unlocked


@dataclass(frozen=True)
class LevelSpec:
    rank: int
    name: str
    min_video_plays: int
    min_live_gmv_fen: int
    min_own_gmv_fen: int
    min_team_size: int
    own_rate_bp: int
    team1_rate_bp: int
    team2_rate_bp: int
    withdraw_fee_bp: int | None
    supply_tier: int


# The plan's defaults: 一星 10% -> 千星 25% on own sales; team rewards from 5% / 3% rising to
# 8% / 5%; amounts in fen. The one-star thresholds here are unused (the ENTRY_* settings).
DEFAULT_LEVELS: tuple[LevelSpec, ...] = (
    LevelSpec(1, "一星", 0, 0, 0, 0, 1000, 500, 300, None, 1),
    LevelSpec(2, "二星", 10_000, 0, 100_000, 3, 1200, 550, 300, None, 2),
    LevelSpec(3, "三星", 50_000, 0, 500_000, 5, 1500, 600, 350, None, 3),
    LevelSpec(4, "十星", 200_000, 2_000_000, 2_000_000, 9, 1800, 650, 400, 80, 4),
    LevelSpec(5, "百星", 1_000_000, 10_000_000, 10_000_000, 20, 2100, 700, 450, 50, 5),
    LevelSpec(6, "千星", 5_000_000, 100_000_000, 100_000_000, 30, 2500, 800, 500, 0, 6),
)
TOP_RANK_NAME = "千星"


def validate_table(levels: list[LevelSpec]) -> None:
    """Raises InvalidInput when the table breaks a rule in the module docstring."""
    ranks = [lv.rank for lv in levels]
    if not levels or sorted(ranks) != list(range(1, len(levels) + 1)):
        raise InvalidInput("levels must be ranked 1..N without gaps", code="invalid_levels")
    for lv in levels:
        if not 0 <= lv.own_rate_bp <= 3000:
            raise InvalidInput(f"{lv.name}: own-sale rate must be 0-30%", code="invalid_levels")
        if not (0 <= lv.team1_rate_bp <= 800 and 0 <= lv.team2_rate_bp <= 800):
            raise InvalidInput(f"{lv.name}: team rates must be 0-8%", code="invalid_levels")
        if lv.withdraw_fee_bp is not None and not 0 <= lv.withdraw_fee_bp <= 5000:
            raise InvalidInput(f"{lv.name}: withdrawal fee must be 0-50%", code="invalid_levels")
        if lv.rank > 1 and lv.min_team_size > 0 and not (lv.min_own_gmv_fen or lv.min_live_gmv_fen):
            raise InvalidInput(f"{lv.name}: a team-size threshold needs a sales threshold too",
                               code="headcount_only_level")


def seed_defaults() -> int:
    """Write the default table where none exists; returns the rows written."""
    if StarLevel.select().exists():
        return 0
    save_table(list(DEFAULT_LEVELS))
    return len(DEFAULT_LEVELS)


def save_table(levels: list[LevelSpec]) -> None:
    validate_table(levels)
    with db.atomic():
        StarLevel.delete().execute()
        StarLevel.insert_many([lv.__dict__ for lv in levels]).execute()


def table() -> list[LevelSpec]:
    return [LevelSpec(**{f: getattr(row, f) for f in LevelSpec.__dataclass_fields__})
            for row in StarLevel.select().order_by(StarLevel.rank)]


@dataclass(frozen=True)
class Rates:
    """Rates by rank for settlement; rank 0 (not yet a star) earns no team reward and only
    the SKU's own rate on its sales."""

    own: dict[int, int]
    team1: dict[int, int]
    team2: dict[int, int]

    @classmethod
    def load(cls) -> Rates:
        levels = table()
        return cls(own={lv.rank: lv.own_rate_bp for lv in levels},
                   team1={lv.rank: lv.team1_rate_bp for lv in levels},
                   team2={lv.rank: lv.team2_rate_bp for lv in levels})
