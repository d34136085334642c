"""What a live talk track may say (issue 16): the facts of one session, read from the database.

`talk_facts(session_id, tz)` gathers the session (title, planned or actual start in `tz`, the
host's name), each pinned product in its order (name, retail price, its price ladder as tiers
of (units, price), its planned slot, its assist offer) and the welfare item when the session
has one: the reservation lottery's prize (models/lottery.py), else the first assist offer
(models/assist.py). Four indexed queries, whatever the number of pins.

`facts_text()` is the same facts as Chinese sentences: the text a generated talk track is
checked against (content_ai.guard) and the model's prompt; every number a template or the
model may say is in it. `next_session(creator)` is the creator's next scheduled session (the
chat command's default). The generation itself is content_ai/live_tracks.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from models.assist import PinOffer
from models.catalog import Sku
from models.db import utcnow
from models.errors import InvalidState, NotFound
from models.live import LivePin, LiveSession, LiveState
from models.live_prices import LiveTier
from models.live_rules import local_time
from models.lottery import Lottery
from models.money import rmb
from models.network import Creator

PIN_LIMIT = 20  # a talk track covers at most this many pinned products (the first ones)


@dataclass(frozen=True)
class PinFact:
    sku: str
    name: str
    retail_fen: int
    tiers: tuple[tuple[int, int], ...] = ()  # (units, price_fen) in order
    slot: str = ""  # planned slot, "HH:MM" in the session's zone ("" when none)

    @property
    def lowest_fen(self) -> int:
        return min([p for _, p in self.tiers] or [self.retail_fen])


@dataclass(frozen=True)
class Welfare:
    kind: str  # lottery | assist
    name: str  # the product
    count: int  # lottery: prizes; assist: friends needed
    threshold: int = 0  # lottery: reservations needed for the draw
    price_fen: int = 0  # assist: the unlocked price


@dataclass(frozen=True)
class TalkFacts:
    session_id: int
    title: str
    state: str
    when: str  # "MM-DD HH:MM" in tz ("" when unknown)
    tz: str
    host: str
    pins: list[PinFact] = field(default_factory=list)
    welfare: Welfare | None = None

    def facts_text(self) -> str:
        """The facts as sentences: the guard's reference and the model's prompt."""
        lines = [f"直播场次 #{self.session_id}：「{self.title or '直播'}」，主播 {self.host or '主播'}"
                 + (f"，开播时间 {self.when}（{self.tz}）" if self.when else "") + "。"]
        for i, p in enumerate(self.pins, 1):
            line = f"商品{i}「{p.name}」（编码 {p.sku}）原价 {rmb(p.retail_fen)}"
            if p.tiers:
                parts, first = [], 1
                for n, (units, price) in enumerate(p.tiers, 1):
                    parts.append(f"第{n}档 第{first}-{first + units - 1}位买家 {units}件 {rmb(price)}")
                    first += units
                line += "；直播阶梯价（优惠）：" + "，".join(parts)
            if p.slot:
                line += f"；计划 {p.slot} 上架"
            lines.append(line + "。")
        w = self.welfare
        if w is not None and w.kind == "lottery":
            lines.append(f"福利：预约满 {w.threshold} 人开奖，抽 {w.count} 位送「{w.name}」（免单）。")
        elif w is not None:
            lines.append(f"福利：邀请 {w.count} 位好友助力，「{w.name}」以 {rmb(w.price_fen)} 优惠价购买。")
        return "\n".join(lines)


def _session(session_id: int, creator: Creator | None) -> LiveSession:
    query = LiveSession.select(LiveSession, Creator).join(Creator).where(LiveSession.id == session_id)
    if creator is not None:
        query = query.where(LiveSession.creator == creator.id)
    session = query.first()
    if session is None:
        raise NotFound(f"live session {session_id} not found", code="live_not_found")
    return session


def talk_facts(session_id: int, tz: str, *, creator: Creator | None = None) -> TalkFacts:
    """The facts of a session that is scheduled or live; with `creator`, only that creator's
    session. Raises NotFound (live_not_found), InvalidState (live_ended, live_cancelled: a talk
    track is for a session still to come or on air)."""
    session = _session(session_id, creator)
    if session.state in (LiveState.ENDED, LiveState.CANCELLED):
        raise InvalidState(f"live session {session_id} is {session.state}", code=f"live_{session.state}")
    pins = list(LivePin.select(LivePin, Sku).join(Sku).where(LivePin.session == session.id)
                .order_by(LivePin.position, LivePin.id).limit(PIN_LIMIT))
    pin_ids = [p.id for p in pins] or [0]
    tiers: dict[int, list[tuple[int, int]]] = {}
    for pin_id, units, price in (LiveTier.select(LiveTier.pin, LiveTier.units, LiveTier.price_fen)
                                 .where(LiveTier.pin.in_(pin_ids)).order_by(LiveTier.pin, LiveTier.seq).tuples()):
        tiers.setdefault(pin_id, []).append((units, price))
    facts = [PinFact(p.sku.code, p.sku.name, p.sku.retail_price_fen, tuple(tiers.get(p.id, ())),
                     local_time(p.slot_at, tz, "%H:%M")) for p in pins]
    when = session.scheduled_at or session.started_at
    return TalkFacts(session.id, session.title, session.state, local_time(when, tz, "%m-%d %H:%M"), tz,
                     session.creator.name, facts, _welfare(session.id, pins))


def _welfare(session_id: int, pins: list[LivePin]) -> Welfare | None:
    draw = (Lottery.select(Lottery, Sku).join(Sku, on=(Lottery.prize_sku == Sku.id))
            .where(Lottery.session == session_id).first())
    if draw is not None:
        return Welfare("lottery", draw.prize_sku.name, draw.prizes, threshold=draw.threshold)
    names = {p.id: p.sku.name for p in pins}
    offer = (PinOffer.select().where(PinOffer.pin.in_(list(names) or [0])).order_by(PinOffer.id).first())
    if offer is not None:
        return Welfare("assist", names[offer.pin_id], offer.helpers_needed, price_fen=offer.price_fen)
    return None


def next_session(creator: Creator, *, now: dt.datetime | None = None) -> LiveSession | None:
    """The creator's session live now, else the next scheduled one (soonest first)."""
    now = now or utcnow()
    live_now = (LiveSession.select().where(LiveSession.creator == creator.id, LiveSession.state == LiveState.LIVE)
                .order_by(LiveSession.id.desc()).first())
    if live_now is not None:
        return live_now
    return (LiveSession.select().where(LiveSession.creator == creator.id,
                                       LiveSession.state == LiveState.SCHEDULED, LiveSession.scheduled_at >= now)
            .order_by(LiveSession.scheduled_at, LiveSession.id).first())
