"""Star levels (一星 ... 千星) kept as data, and the rules that read them: the level table and
its validation, the rates settlement reads, the metrics a creator is judged on, the pure rule
(`eligible_rank`), and the earnings center's progress and funnel. Evaluation, promotion and risk
penalties, which write ranks, are in models/level_evaluation.py.

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

from models.db import BaseModel, db, execute
from models.errors import InvalidInput
from models.network import SOLD, Creator


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


# ---- what a creator has done: the metrics levels are judged on --------------------------------

UNRANKED_NAME = "未入星"


@dataclass(frozen=True)
class Metrics:
    video_plays: int = 0  # sum of reported plays
    videos: int = 0  # distinct video refs with plays
    live_entries: int = 0
    own_gmv_fen: int = 0  # paid + delivered orders the creator sold (refunded ones do not count)
    live_gmv_fen: int = 0  # ... of those, bought in one of the creator's live sessions
    direct_invites: int = 0  # active creators bound directly under this one

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Sales:
    orders: int = 0
    gmv_fen: int = 0
    live_orders: int = 0
    live_gmv_fen: int = 0


def _activity(creator_id: int | None) -> dict[int, tuple[int, int, int]]:
    """creator -> (video plays, distinct videos, live entries): one GROUP BY."""
    where, params = ("WHERE creator_id = %s", [creator_id]) if creator_id is not None else ("", [])
    rows = execute(
        'SELECT creator_id, SUM(CASE WHEN kind = %s THEN "count" ELSE 0 END), '
        "COUNT(DISTINCT CASE WHEN kind = %s THEN ref END), "
        'SUM(CASE WHEN kind = %s THEN "count" ELSE 0 END) '
        f"FROM activity_event {where} GROUP BY creator_id",
        ["video_play", "video_play", "live_entry", *params]).fetchall()
    return {r[0]: (int(r[1] or 0), int(r[2] or 0), int(r[3] or 0)) for r in rows}


def _sales(creator_id: int | None) -> dict[int, Sales]:
    """seller -> sold orders and GMV, all and in live sessions: one GROUP BY over the
    order_seller index."""
    where, params = (" AND seller_id = %s", [creator_id]) if creator_id is not None else ("", [])
    rows = execute(
        "SELECT seller_id, COUNT(*), SUM(amount_fen), "
        "SUM(CASE WHEN live_id IS NOT NULL THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN live_id IS NOT NULL THEN amount_fen ELSE 0 END) "
        f'FROM "order" WHERE seller_id IS NOT NULL AND status IN (%s, %s){where} GROUP BY seller_id',
        [*SOLD, *params]).fetchall()
    return {r[0]: Sales(int(r[1]), int(r[2] or 0), int(r[3] or 0), int(r[4] or 0)) for r in rows}


def _invites(creator_id: int | None) -> dict[int, int]:
    where, params = (" AND parent_id = %s", [creator_id]) if creator_id is not None else ("", [])
    rows = execute("SELECT parent_id, COUNT(*) FROM creator WHERE parent_id IS NOT NULL AND active"
                   f"{where} GROUP BY parent_id", params).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def _combine(cid: int, act: dict, sales: dict, invites: dict) -> Metrics:
    plays, videos, entries = act.get(cid, (0, 0, 0))
    sold = sales.get(cid, Sales())
    return Metrics(video_plays=plays, videos=videos, live_entries=entries,
                   own_gmv_fen=sold.gmv_fen, live_gmv_fen=sold.live_gmv_fen,
                   direct_invites=invites.get(cid, 0))


def all_metrics() -> dict[int, Metrics]:
    """Metrics of every creator with any activity, sale or invite: three GROUP BY queries,
    whatever the number of creators (a creator missing from the result has none)."""
    act, sales, invites = _activity(None), _sales(None), _invites(None)
    return {cid: _combine(cid, act, sales, invites) for cid in {*act, *sales, *invites}}


def metrics_of(creator: Creator | int) -> Metrics:
    cid = creator if isinstance(creator, int) else creator.id
    return _combine(cid, _activity(cid), _sales(cid), _invites(cid))


# ---- the rule ---------------------------------------------------------------------------------


def _requirements(lv: LevelSpec, entry_videos: int, entry_invites: int) -> list[tuple[str, int]]:
    """(metric, minimum) pairs a level asks for; zero thresholds are left out."""
    if lv.rank == 1:
        # The entry: ENTRY_VIDEOS videos AND ENTRY_INVITES invites; at least one video always,
        # so invites alone never make a star.
        pairs = [("videos", max(entry_videos, 1)), ("direct_invites", entry_invites)]
    else:
        pairs = [("video_plays", lv.min_video_plays), ("live_gmv_fen", lv.min_live_gmv_fen),
                 ("own_gmv_fen", lv.min_own_gmv_fen), ("direct_invites", lv.min_team_size)]
    return [(m, n) for m, n in pairs if n > 0]


def _grantable(lv: LevelSpec) -> bool:
    """Belt and braces beside validate_table: a higher level gated by team size without a
    sales threshold is never granted (team size only ever counts together with real sales)."""
    return lv.rank == 1 or not lv.min_team_size or bool(lv.min_own_gmv_fen or lv.min_live_gmv_fen)


def eligible_rank(metrics: Metrics, levels: list[LevelSpec], entry_videos: int, entry_invites: int) -> int:
    """The highest rank whose thresholds, and those of every rank below, the metrics meet
    (0: not yet a star). Pure."""
    rank = 0
    for lv in sorted(levels, key=lambda lv: lv.rank):
        if lv.rank != rank + 1 or not _grantable(lv):
            break
        if any(getattr(metrics, m) < n for m, n in _requirements(lv, entry_videos, entry_invites)):
            break
        rank = lv.rank
    return rank


# ---- earnings center: progress and funnel ------------------------------------------------------

LABELS = {"videos": "视频作品", "video_plays": "视频播放", "live_gmv_fen": "直播销售额",
          "own_gmv_fen": "个人销售额", "direct_invites": "直接邀请"}


@dataclass(frozen=True)
class Threshold:
    metric: str  # videos, video_plays, live_gmv_fen, own_gmv_fen, direct_invites
    have: int
    need: int

    @property
    def met(self) -> bool:
        return self.have >= self.need

    def as_dict(self) -> dict:
        return {"metric": self.metric, "label": LABELS[self.metric], "have": self.have,
                "need": self.need, "met": self.met}


@dataclass(frozen=True)
class Progress:
    rank: int
    name: str
    rank_cap: int | None
    next_rank: int | None  # None at the top level
    next_name: str | None
    thresholds: list[Threshold]  # what the next level needs
    invites: int
    invite_line: str  # e.g. 已邀请2人，还差1人升级

    @property
    def capped(self) -> bool:
        """A risk penalty keeps the creator from the next level."""
        return self.next_rank is not None and self.rank_cap is not None and self.rank_cap < self.next_rank

    @property
    def ready(self) -> bool:
        """Every threshold of the next level is met: the next evaluation promotes."""
        return self.next_rank is not None and not self.capped and all(t.met for t in self.thresholds)

    def as_dict(self) -> dict:
        return {"rank": self.rank, "name": self.name, "capped": self.capped, "ready": self.ready,
                "next": None if self.next_rank is None else {
                    "rank": self.next_rank, "name": self.next_name,
                    "thresholds": [t.as_dict() for t in self.thresholds]},
                "invites": self.invites, "invite_line": self.invite_line}


def progress(creator: Creator, *, entry_videos: int, entry_invites: int) -> Progress:
    """Where the creator stands and what the next level needs, from the level table."""
    levels = {lv.rank: lv for lv in table()}
    m = metrics_of(creator)
    current = levels.get(creator.rank)
    nxt = levels.get(creator.rank + 1)
    thresholds = [] if nxt is None else [
        Threshold(metric, getattr(m, metric), need)
        for metric, need in _requirements(nxt, entry_videos, entry_invites)]
    invites = m.direct_invites
    line = f"已邀请{invites}人"
    need_invites = next((t.need for t in thresholds if t.metric == "direct_invites"), 0)
    if nxt is None:
        line += "，已是最高等级"
    elif invites < need_invites:
        line += f"，还差{need_invites - invites}人升级"
    elif need_invites and all(t.met for t in thresholds):
        line += "，已满足升级条件"
    elif need_invites:
        line += "，邀请人数已达标"
    return Progress(rank=creator.rank, name=current.name if current else UNRANKED_NAME,
                    rank_cap=creator.rank_cap, next_rank=nxt.rank if nxt else None,
                    next_name=nxt.name if nxt else None, thresholds=thresholds, invites=invites,
                    invite_line=line)


@dataclass(frozen=True)
class Funnel:
    """Video plays -> live-room entries -> orders. Conversions are integer basis points of
    orders per play and per live entry, rounded down (0 when nothing was played or entered):
    play_to_order_bp / 10 is orders per 1,000 plays, entry_to_order_bp / 100 the percentage
    of live entries that became an order."""

    video_plays: int
    live_entries: int
    orders: int  # the creator's sold orders (paid or delivered)
    gmv_fen: int
    live_orders: int
    live_gmv_fen: int

    @property
    def play_to_order_bp(self) -> int:
        return self.orders * 10_000 // self.video_plays if self.video_plays else 0

    @property
    def entry_to_order_bp(self) -> int:
        return self.orders * 10_000 // self.live_entries if self.live_entries else 0

    @property
    def orders_per_1000_plays(self) -> str:
        """Two decimals, rounded down."""
        hundredths = self.orders * 100_000 // self.video_plays if self.video_plays else 0
        return f"{hundredths // 100}.{hundredths % 100:02d}"

    def as_dict(self) -> dict:
        return {"video_plays": self.video_plays, "live_entries": self.live_entries,
                "orders": self.orders, "gmv_fen": self.gmv_fen, "live_orders": self.live_orders,
                "live_gmv_fen": self.live_gmv_fen,
                "conversion": {"play_to_order_bp": self.play_to_order_bp,
                               "entry_to_order_bp": self.entry_to_order_bp,
                               "orders_per_1000_plays": self.orders_per_1000_plays}}


def funnel(creator: Creator | int) -> Funnel:
    cid = creator if isinstance(creator, int) else creator.id
    plays, _, entries = _activity(cid).get(cid, (0, 0, 0))
    sold = _sales(cid).get(cid, Sales())
    return Funnel(video_plays=plays, live_entries=entries, orders=sold.orders, gmv_fen=sold.gmv_fen,
                  live_orders=sold.live_orders, live_gmv_fen=sold.live_gmv_fen)
