"""The operator's side of coupons and group-buy (issue 14): the reads the admin pages show (keyset
pages, never a whole-table count) and the few operator actions the coupon and group-buy services
leave to the admin: withdrawing a coupon or an activity, issuing a coupon to a list of shoppers
(user ids or mini-program openids, resolved and checked whole before anything is written), and
asking for a failing group refund's next try now. Creating coupons and activities is
`coupons.create_coupon` / `groupbuy.create_activity`; the admin calls them directly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from models import coupons, events
from models.catalog import Sku
from models.coupons import Coupon, CouponRedemption
from models.db import db, utcnow
from models.errors import InvalidInput, InvalidState, NotFound
from models.groupbuy import GroupActivity, GroupMember, GroupTeam
from models.network import Creator
from models.orders import Order
from models.payments import Refund
from models.users import User

PAGE = 50
ISSUE_MAX = 20_000  # recipients in one operator batch
_SPLIT = re.compile(r"[\s,;，；]+")
_OPENID = re.compile(r"[A-Za-z0-9_\-]{6,64}")


# ---- coupons -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CouponRow:
    coupon: Coupon
    owner_code: str | None  # the funding creator's invite code; None: the platform


def coupon_page(before: int | None = None, *, active: bool | None = None, limit: int = PAGE) -> list[CouponRow]:
    query = Coupon.select().order_by(Coupon.id.desc()).limit(limit)
    if before:
        query = query.where(Coupon.id < before)
    if active is not None:
        query = query.where(Coupon.active == active)
    rows = list(query)
    owners = {c.owner_creator_id for c in rows if c.owner_creator_id}
    codes = dict(Creator.select(Creator.id, Creator.code).where(Creator.id.in_(list(owners))).tuples()) \
        if owners else {}
    return [CouponRow(c, codes.get(c.owner_creator_id)) for c in rows]


def get_coupon(coupon_id: int) -> Coupon:
    found = Coupon.get_or_none(Coupon.id == coupon_id)
    if found is None:
        raise NotFound("no such coupon", code="coupon_not_found")
    return found


def owner_code(creator_id: int | None) -> str | None:
    """The invite code of a coupon's funding creator (None: the platform funds it)."""
    if not creator_id:
        return None
    return Creator.select(Creator.code).where(Creator.id == creator_id).scalar() or f"creator:{creator_id}"


def deactivate_coupon(coupon_id: int, *, actor: str) -> Coupon:
    """Withdraw a coupon: no new claims, issues or reservations (orders holding it keep their
    discount). Raises NotFound; InvalidState coupon_inactive when it was withdrawn already."""
    with db.atomic():
        coupon = get_coupon(coupon_id)
        if not Coupon.update(active=False).where((Coupon.id == coupon_id) & Coupon.active).execute():
            raise InvalidState("this coupon is withdrawn already", code="coupon_inactive")
        events.record("coupon.deactivated", f"coupon:{coupon_id}", actor)
    coupon.active = False
    return coupon


@dataclass(frozen=True)
class RedemptionRow:
    redemption: CouponRedemption
    order_no: str
    funder: str  # "platform" or the funding creator's invite code


def redemptions(coupon_id: int, before: int | None = None, limit: int = PAGE) -> list[RedemptionRow]:
    query = (CouponRedemption.select(CouponRedemption, Order.no)
             .join(Order, on=(CouponRedemption.order_id == Order.id))
             .where(CouponRedemption.coupon == coupon_id).order_by(CouponRedemption.id.desc()).limit(limit))
    if before:
        query = query.where(CouponRedemption.id < before)
    rows = list(query)
    funders = {r.creator_id for r in rows if r.creator_id}
    codes = dict(Creator.select(Creator.id, Creator.code).where(Creator.id.in_(list(funders))).tuples()) \
        if funders else {}
    return [RedemptionRow(r, r.order.no, codes.get(r.creator_id, f"creator:{r.creator_id}")
                          if r.creator_id else "platform") for r in rows]


def parse_recipients(text: str) -> list[str]:
    """The tokens of a pasted list or an uploaded CSV's text: user ids or openids, separated by
    new lines, commas, semicolons or spaces (a header cell such as `user_id` is skipped)."""
    tokens = [t.strip().strip('"').strip() for t in _SPLIT.split(text or "")]
    return [t for t in dict.fromkeys(tokens) if t and t.lower() not in ("user_id", "openid", "user", "id")]


def resolve_recipients(tokens: list[str]) -> list[int]:
    """User ids for the tokens (digits: a user id, else a mini-program openid), checked whole:
    InvalidInput naming the first unknown or malformed ones, so nothing is issued then."""
    if not tokens:
        raise InvalidInput("the list of shoppers is empty", code="no_recipients")
    if len(tokens) > ISSUE_MAX:
        raise InvalidInput(f"at most {ISSUE_MAX} shoppers per batch", code="too_many_recipients")
    ids = {int(t) for t in tokens if t.isdigit() and len(t) < 19}
    openids = [t for t in tokens if not (t.isdigit() and len(t) < 19)]
    bad = [t for t in openids if not _OPENID.fullmatch(t)]
    if bad:
        raise InvalidInput(f"not a user id or openid: {', '.join(b[:40] for b in bad[:5])}",
                           code="invalid_recipient")
    found: set[int] = set()
    known_openids: set[str] = set()
    id_list = sorted(ids)
    for i in range(0, len(id_list), 1000):
        found |= {int(u) for (u,) in User.select(User.id).where(User.id.in_(id_list[i:i + 1000])).tuples()}
    for i in range(0, len(openids), 1000):
        for user_id, openid in User.select(User.id, User.openid).where(User.openid.in_(openids[i:i + 1000])).tuples():
            found.add(int(user_id))
            known_openids.add(openid)
    unknown = [str(u) for u in id_list if u not in found] + [o for o in openids if o not in known_openids]
    if unknown:
        raise InvalidInput(f"{len(unknown)} unknown shopper(s): {', '.join(unknown[:5])}", code="unknown_recipient")
    return sorted(found)


def batch_key(token: str) -> str:
    """The grants' source_key of one operator batch, from its form's one-time token: the same
    form sent twice issues nothing twice."""
    return "operator:" + hashlib.sha256(token.encode()).hexdigest()[:32]


def issue_to_list(coupon_id: int, user_ids: list[int], *, key: str, actor: str) -> int:
    """Issue the coupon to these shoppers (source "operator", idempotent on `key`) with an event.
    Returns the new grants. Raises what coupons.issue raises (nothing written then)."""
    with db.atomic():
        made = coupons.issue(coupon_id, user_ids, source="operator", source_key=key)
        events.record("coupon.issued", f"coupon:{coupon_id}", actor, recipients=len(user_ids), granted=made, key=key)
    return made


# ---- group-buy ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivityRow:
    activity: GroupActivity
    sku_code: str
    sku_name: str


def _with_skus(rows: list[GroupActivity]) -> list[ActivityRow]:
    skus = {s.id: s for s in Sku.select(Sku.id, Sku.code, Sku.name).where(Sku.id.in_([a.sku_id for a in rows]))} \
        if rows else {}
    return [ActivityRow(a, skus[a.sku_id].code if a.sku_id in skus else "?",
                        skus[a.sku_id].name if a.sku_id in skus else "") for a in rows]


def activity_page(before: int | None = None, limit: int = PAGE) -> list[ActivityRow]:
    query = GroupActivity.select().order_by(GroupActivity.id.desc()).limit(limit)
    if before:
        query = query.where(GroupActivity.id < before)
    return _with_skus(list(query))


def get_activity(activity_id: int) -> ActivityRow:
    found = _with_skus(list(GroupActivity.select().where(GroupActivity.id == activity_id)))
    if not found:
        raise NotFound("no such group-buy activity", code="activity_not_found")
    return found[0]


def deactivate_activity(activity_id: int, *, actor: str) -> GroupActivity:
    """Stop an activity taking new teams (open teams run to their end). Raises NotFound;
    InvalidState activity_inactive when it was stopped already."""
    with db.atomic():
        found = GroupActivity.get_or_none(GroupActivity.id == activity_id)
        if found is None:
            raise NotFound("no such group-buy activity", code="activity_not_found")
        if not GroupActivity.update(active=False).where((GroupActivity.id == activity_id)
                                                        & GroupActivity.active).execute():
            raise InvalidState("this activity is stopped already", code="activity_inactive")
        events.record("group.activity_deactivated", f"group_activity:{activity_id}", actor)
    found.active = False
    return found


def teams(activity_id: int, *, state: str | None = None, before: int | None = None,
          limit: int = PAGE) -> list[GroupTeam]:
    query = (GroupTeam.select().where(GroupTeam.activity == activity_id)
             .order_by(GroupTeam.id.desc()).limit(limit))
    if state:
        query = query.where(GroupTeam.state == state)
    if before:
        query = query.where(GroupTeam.id < before)
    return list(query)


def get_team(team_id: int) -> GroupTeam:
    found = GroupTeam.get_or_none(GroupTeam.id == team_id)
    if found is None:
        raise NotFound("no such team", code="team_not_found")
    return found


@dataclass(frozen=True)
class MemberRow:
    member: GroupMember
    order_no: str
    order_status: str
    amount_fen: int
    refund_state: str | None


def members(team_id: int) -> list[MemberRow]:
    rows = list(GroupMember.select(GroupMember, Order.no, Order.status, Order.amount_fen)
                .join(Order, on=(GroupMember.order_id == Order.id))
                .where(GroupMember.team == team_id).order_by(GroupMember.id))
    refunds = dict(Refund.select(Refund.order, Refund.state).where(
        Refund.order.in_([m.order_id for m in rows])).tuples()) if rows else {}
    return [MemberRow(m, m.order.no, m.order.status, m.order.amount_fen, refunds.get(m.order_id)) for m in rows]


def retry_refund_now(order_id: int, *, actor: str, now: dt.datetime | None = None) -> Refund:
    """A failing refund's next automatic try is brought forward to now (the refund job then
    tries it; the caller queues that job after the commit). Raises NotFound; InvalidState
    refund_not_failing when the refund has succeeded or is not waiting for a retry."""
    now = now or utcnow()
    with db.atomic():
        refund = Refund.get_or_none(Refund.order == order_id)
        if refund is None:
            raise NotFound("this order has no refund", code="refund_not_found")
        moved = (Refund.update(next_attempt_at=now)
                 .where((Refund.id == refund.id) & (Refund.state != "succeeded")).execute())
        if not moved:
            raise InvalidState("this refund has succeeded", code="refund_not_failing")
        events.record("refund.retry_requested", f"order:{order_id}", actor, attempts=refund.attempts)
    refund.next_attempt_at = now
    return refund
