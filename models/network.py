"""Creator network: who invited whom, stored so that every question asked on a hot path is one
indexed query.

Each creator row carries its parent AND its grandparent. The two uplines paid on a sale are the
seller's own row; the team (direct and second level) is `parent_id = X OR grandparent_id = X`
over two indexes. Binding is first-come: a creator with a parent can only be moved by an
operator (`rebind`), which rewrites the moved creator's row and its children's grandparent in
one transaction and leaves an audit event. Cycles are refused by walking the new parent's
ancestors (a rare write, so a recursive query is fine there).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import peewee as pw

from models import events
from models.db import BaseModel, db, execute, is_postgres, lock_rows, utcnow
from models.errors import Conflict, InvalidInput, NotFound
from models.pricing import markup_cap, selling_price
from models.users import User

if TYPE_CHECKING:
    from models.catalog import Sku

NETWORK_LOCK = 742020  # pg_advisory_xact_lock id: one binding change at a time
CODE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{4,32}$")
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes get typed


class BindVia(StrEnum):
    TELEGRAM = "telegram"  # deep-link payload
    WECHAT_QR = "wechat_qr"  # official-account QR scene
    MINIAPP = "miniapp"  # mini-program share
    TYPED = "typed"
    OPERATOR = "operator"


class Creator(BaseModel):
    user = pw.ForeignKeyField(User, unique=True, backref="creator", on_delete="RESTRICT")
    code = pw.CharField(max_length=32, unique=True)  # invite code and order `ref`
    name = pw.CharField(max_length=64, default="")
    rank = pw.IntegerField(default=0)  # star level; 0 = not yet one-star
    rank_cap = pw.IntegerField(null=True)  # set by a risk penalty: never promoted above it
    # Indexed by partial indexes (migration 0004): most creators have no upline yet.
    parent = pw.ForeignKeyField("self", null=True, backref="children", index=False)
    grandparent = pw.ForeignKeyField("self", null=True, backref="grandchildren", index=False)
    bound_via = pw.CharField(max_length=16, null=True)
    bound_at = pw.DateTimeField(null=True)
    active = pw.BooleanField(default=True)
    created_at = pw.DateTimeField(default=utcnow)

    @property
    def actor(self) -> str:
        return f"creator:{self.id}"


def _new_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))


def become_creator(user: User, name: str = "") -> Creator:
    """The creator profile of a user, created on first call (safe under concurrent calls)."""
    found = Creator.get_or_none(Creator.user == user.id)
    if found is not None:
        return found
    for _ in range(5):
        try:
            with db.atomic():
                creator = Creator.create(user=user.id, code=_new_code(),
                                         name=(name or user.nickname or "")[:64])
                events.record("creator.joined", f"creator:{creator.id}", f"user:{user.id}",
                              code=creator.code)
                return creator
        except pw.IntegrityError:
            found = Creator.get_or_none(Creator.user == user.id)
            if found is not None:
                return found  # a concurrent first call won
    raise Conflict("could not allocate an invite code; try again", code="code_exhausted")


def creator_of(user: User | int) -> Creator:
    """Raises NotFound (code not_a_creator) when the user has not joined the plan."""
    user_id = user if isinstance(user, int) else user.id
    creator = Creator.get_or_none(Creator.user == user_id)
    if creator is None:
        raise NotFound("join the creator plan first", code="not_a_creator")
    return creator


def by_code(code: str) -> Creator:
    if not isinstance(code, str) or not CODE_PATTERN.match(code):
        raise InvalidInput("an invite code is 4-32 letters, digits, '-' or '_'",
                           code="invalid_invite_code")
    creator = Creator.get_or_none(Creator.code == code)
    if creator is None or not creator.active:
        raise NotFound(f"no creator has the invite code {code!r}", code="unknown_invite_code")
    return creator


def ancestors(creator_id: int) -> list[int]:
    """Every upline of a creator, nearest first (recursive; only for binding checks)."""
    rows = execute(
        "WITH RECURSIVE up(id, depth) AS ("
        " SELECT parent_id, 1 FROM creator WHERE id = %s AND parent_id IS NOT NULL"
        " UNION ALL SELECT c.parent_id, up.depth + 1 FROM creator c JOIN up ON c.id = up.id"
        " WHERE c.parent_id IS NOT NULL AND up.depth < 10000)"
        " SELECT id FROM up ORDER BY depth", (creator_id,)).fetchall()
    return [r[0] for r in rows]


def _lock_tree() -> None:
    """Serialise binding changes (rare writes). Without it two creators binding to each other
    at once on PostgreSQL each pass the cycle check before the other commits, and their row
    locks deadlock against the foreign-key checks. SQLite transactions are IMMEDIATE already."""
    if is_postgres():
        execute("SELECT pg_advisory_xact_lock(%s)", (NETWORK_LOCK,))


def _attach(creator: Creator, parent: Creator | None) -> None:
    if parent is not None:
        parent = Creator.get_by_id(parent.id)  # its own upline as of now, under the tree lock
        if parent.id == creator.id:
            raise InvalidInput("you cannot use your own invite code", code="self_binding")
        if creator.id in ancestors(parent.id):
            raise InvalidInput("that creator is already in your team", code="invite_cycle")
    grandparent = parent.parent_id if parent is not None else None
    Creator.update(parent=parent.id if parent else None, grandparent=grandparent,
                   bound_at=utcnow() if parent else None).where(Creator.id == creator.id).execute()
    # The moved creator's direct team now has a new second-level upline.
    Creator.update(grandparent=parent.id if parent else None).where(
        Creator.parent == creator.id).execute()


def bind(creator: Creator, code: str, via: BindVia | str, *, actor: str | None = None) -> Creator:
    """Bind a creator to the owner of an invite code. The first valid binding wins.

    Raises InvalidInput (bad code, self_binding, invite_cycle), NotFound (unknown code),
    Conflict (already_bound: only an operator can move a bound creator).
    """
    via = BindVia(via)
    parent = by_code(code)
    with db.atomic():
        _lock_tree()
        current = lock_rows(Creator.select().where(Creator.id == creator.id)).get()
        if current.parent_id is not None:
            if current.parent_id == parent.id:
                return current  # the same invite twice: nothing to do
            raise Conflict("you already joined a team; only an operator can change it",
                           code="already_bound")
        _attach(current, parent)
        Creator.update(bound_via=via.value).where(Creator.id == current.id).execute()
        events.record("creator.bound", f"creator:{current.id}", actor or current.actor,
                      parent=parent.id, via=via.value)
    return Creator.get_by_id(creator.id)


def rebind(creator: Creator, code: str | None, *, actor: str, reason: str = "") -> Creator:
    """Operator only: move a creator under another code's owner (or detach with None)."""
    parent = by_code(code) if code else None
    with db.atomic():
        _lock_tree()
        current = lock_rows(Creator.select().where(Creator.id == creator.id)).get()
        old = current.parent_id
        _attach(current, parent)
        Creator.update(bound_via=BindVia.OPERATOR.value if parent else None).where(
            Creator.id == current.id).execute()
        events.record("creator.rebound", f"creator:{current.id}", actor,
                      old_parent=old, new_parent=parent.id if parent else None, reason=reason)
    return Creator.get_by_id(creator.id)


@dataclass
class Member:
    id: int
    code: str
    name: str
    rank: int
    gmv_fen: int
    orders: int
    children: list[Member] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"id": self.id, "code": self.code, "name": self.name, "rank": self.rank,
                "gmv_fen": self.gmv_fen, "orders": self.orders, "team_size": len(self.children),
                "children": [c.as_dict() for c in self.children]}


@dataclass
class Team:
    direct: list[Member]
    second: int
    direct_gmv_fen: int
    second_gmv_fen: int

    def as_dict(self) -> dict:
        return {"direct_size": len(self.direct), "second_size": self.second,
                "direct_gmv_fen": self.direct_gmv_fen, "second_gmv_fen": self.second_gmv_fen,
                "members": [m.as_dict() for m in self.direct]}


SOLD = ("paid", "delivered")  # order states that count as sales (refunded ones do not)


def team(creator: Creator) -> Team:
    """The creator's direct and second-level team with each member's GMV: one query."""
    rows = execute(
        "SELECT c.id, c.code, c.name, c.rank, c.parent_id, COALESCE(g.gmv, 0), COALESCE(g.n, 0) "
        "FROM creator c LEFT JOIN (SELECT o.seller_id, SUM(o.amount_fen) AS gmv, COUNT(*) AS n "
        '  FROM "order" o JOIN creator m ON m.id = o.seller_id '
        "  WHERE (m.parent_id = %s OR m.grandparent_id = %s) AND o.status IN (%s, %s) "
        "  GROUP BY o.seller_id) g ON g.seller_id = c.id "
        "WHERE c.parent_id = %s OR c.grandparent_id = %s ORDER BY c.id",
        (creator.id, creator.id, *SOLD, creator.id, creator.id)).fetchall()
    direct: dict[int, Member] = {}
    second: list[tuple[int, Member]] = []
    for cid, code, name, rank, parent_id, gmv, n in rows:
        member = Member(cid, code, name, rank, int(gmv), int(n))
        if parent_id == creator.id:
            direct[cid] = member
        else:
            second.append((parent_id, member))
    for parent_id, member in second:
        if parent_id in direct:
            direct[parent_id].children.append(member)
    return Team(direct=list(direct.values()), second=len(second),
                direct_gmv_fen=sum(m.gmv_fen for m in direct.values()),
                second_gmv_fen=sum(m.gmv_fen for _, m in second))


class CreatorPrice(BaseModel):
    """A creator's markup on a SKU: buyers through the creator's link pay retail + markup, and
    the markup is the creator's profit (paid in full within the order's payout cap)."""

    creator = pw.ForeignKeyField(Creator, on_delete="CASCADE", index=False)
    sku_id = pw.BigIntegerField()
    markup_fen = pw.IntegerField(constraints=[pw.Check("markup_fen >= 0")])
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("creator", "sku_id"), True),)


def set_markup(creator: Creator, sku_code: str, markup_fen: int, *, default_cap_bp: int) -> int:
    """Set the creator's markup on a SKU (0 removes it). The cap is the SKU's max_markup_bp
    (or the DEFAULT_MAX_MARKUP_BP setting) of its retail price; locked supply is refused."""
    from models.catalog import get_sku

    sku = get_sku(sku_code)
    if not isinstance(markup_fen, int) or isinstance(markup_fen, bool) or markup_fen < 0:
        raise InvalidInput("markup_fen must be a whole number of fen, 0 or more",
                           code="invalid_markup")
    cap = markup_cap(sku, default_cap_bp)
    if markup_fen > cap:
        raise InvalidInput(f"the markup on {sku.code} may be at most {cap} fen",
                           code="markup_too_high")
    if sku.min_rank > creator.rank:
        raise InvalidInput(f"{sku.code} unlocks at star level {sku.min_rank}",
                           code="supply_locked")
    with db.atomic():
        CreatorPrice.insert(creator=creator.id, sku_id=sku.id, markup_fen=markup_fen,
                            updated_at=utcnow()).on_conflict(
            conflict_target=[CreatorPrice.creator, CreatorPrice.sku_id],
            update={CreatorPrice.markup_fen: markup_fen, CreatorPrice.updated_at: utcnow()},
        ).execute()
        events.record("creator.markup_set", f"creator:{creator.id}", creator.actor,
                      sku=sku.code, markup_fen=markup_fen)
    return markup_fen


def markup_on(creator: Creator, sku: Sku) -> int:
    """The creator's markup on the SKU, in fen (0 when none is set)."""
    row = CreatorPrice.get_or_none((CreatorPrice.creator == creator.id) & (CreatorPrice.sku_id == sku.id))
    return row.markup_fen if row is not None else 0


def price_through(creator: Creator | None, sku: Sku) -> int:
    """What one unit of the SKU costs a buyer through the creator's link (`pricing.selling_price`
    with the creator's markup); retail without a creator."""
    return selling_price(sku, markup_on(creator, sku) if creator is not None else 0)


@dataclass(frozen=True)
class Attribution:
    seller_id: int | None
    markup_per_unit_fen: int
    live_id: int | None


def actor_of(creator: Creator | None, actor: str | None = None) -> str:
    """Who an action on a creator's thing is recorded for: `actor` when given, else the creator,
    else an operator (creator=None)."""
    return actor or (creator.actor if creator is not None else "operator")


def lock_owned(query: pw.ModelSelect, owner: pw.Field, creator: Creator | None) -> pw.Model | None:
    """The first row of `query`, locked (inside the caller's transaction), when it is `creator`'s
    (by the `owner` field), or whoever's for creator=None (operators); None otherwise, so another
    creator's row reads as a missing one."""
    if creator is not None:
        query = query.where(owner == creator.id)
    return lock_rows(query).first()


NO_ATTRIBUTION = Attribution(None, 0, None)


def attribute(ref: str | None, sku_id: int, live_id: int | None) -> Attribution:
    """Who sells an order placed through `ref`, at what markup, in which live session.

    An unknown or inactive code is kept on the order as typed but earns nobody anything (a
    stale share link must not block a purchase); a live id that is not the seller's is ignored.
    """
    if not ref:
        return NO_ATTRIBUTION
    row = execute(
        "SELECT c.id, COALESCE(cp.markup_fen, 0), "
        "(SELECT ls.id FROM live_session ls WHERE ls.id = %s AND ls.creator_id = c.id) "
        "FROM creator c LEFT JOIN creator_price cp ON cp.creator_id = c.id AND cp.sku_id = %s "
        "WHERE c.code = %s AND c.active", (live_id, sku_id, ref)).fetchone()
    if row is None:
        return NO_ATTRIBUTION
    return Attribution(row[0], int(row[1]), row[2])
