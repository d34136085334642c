"""Team assist (issue 13, seed 001: "invite 3 friends into the live room to unlock 69 instead of
99"): a shopper starts an assist for a pinned product of a session, shares its link, and each
distinct friend who enters the live room through it counts once; at `helpers_needed` helpers the
assist is unlocked and the shopper may buy one unit at the offer's price for a window.

The offer (`AssistOffer`, one per pin) is validated by `parse_offer` before the session is
written (models/live.schedule) and saved by `save_offer` in the same transaction.

Rules, all checked before anything is written (models/assist_help.py for the help itself):
- start: the session is scheduled or live, the SKU is pinned with an offer. One open assist per
  shopper and pin (a partial unique index `WHERE closed_at IS NULL`); starting again returns it
  (idempotent), unless its unlocked window passed unused: then it is closed and a new one starts.
- help: only while the session is live (helping means entering the live room); not the starter
  (a person's linked chat identities are one user, models/identities.py) nor another account with
  the starter's WeChat unionid; once per helper and assist (409 already_helped); at most
  `max_helps_per_session` assists per helper and session (an exact counter row); with
  `new_users_only`, only helpers who have never paid an order. Helpers are recorded with time and
  IP (`assist_help`) for the risk engine.
- buying: the live order placement (models/live_prices.py) asks `unlocked_for_order` inside its
  transaction and claims the assist with `consume` (a conditional update: one order per assist);
  an expired or refunded order frees it again through `release_for_orders` while the window lasts.

The tunables (window, helps per session) arrive as an `AssistPolicy` built from the settings
(LIVE_ASSIST_WINDOW_S, LIVE_ASSIST_MAX_HELPS_PER_SESSION) by the caller.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

import peewee as pw

from models.catalog import Product, Sku
from models.db import BaseModel, db, lock_rows, utcnow
from models.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from models.live import LivePin, LiveSession, LiveState
from models.network import Creator
from models.users import User

MAX_HELPERS = 20
SHARE_PATH = "pages/live/assist?token={token}"  # the mini-program page a share link opens
TOKEN_BYTES = 16  # 128 bits: unguessable


@dataclass(frozen=True)
class AssistPolicy:
    window_s: int = 1800  # LIVE_ASSIST_WINDOW_S, when the offer names no window
    max_helps_per_session: int = 3  # LIVE_ASSIST_MAX_HELPS_PER_SESSION


@dataclass(frozen=True)
class AssistOffer:
    helpers_needed: int
    price_fen: int
    window_s: int | None  # None: the LIVE_ASSIST_WINDOW_S setting when the assist unlocks
    new_users_only: bool


class PinOffer(BaseModel):
    """The assist offer of one pinned product."""

    pin = pw.ForeignKeyField(LivePin, unique=True, on_delete="CASCADE")
    helpers_needed = pw.IntegerField()
    price_fen = pw.IntegerField()
    window_s = pw.IntegerField(null=True)
    new_users_only = pw.BooleanField(default=False)

    class Meta:
        table_name = "assist_offer"


class Assist(BaseModel):
    """One shopper's assist for one pin. The offer's terms are copied at start, so an edited
    offer never moves the goal of an assist under way."""

    token = pw.CharField(max_length=32, unique=True)
    user = pw.ForeignKeyField(User, on_delete="RESTRICT", index=False)  # (user, pin) below
    session = pw.ForeignKeyField(LiveSession, on_delete="CASCADE", index=False)  # (session, user)
    pin = pw.ForeignKeyField(LivePin, on_delete="CASCADE")
    sku_id = pw.BigIntegerField()
    helpers_needed = pw.IntegerField()
    price_fen = pw.IntegerField()
    window_s = pw.IntegerField(null=True)
    new_users_only = pw.BooleanField(default=False)
    helpers = pw.IntegerField(default=0)
    unlocked_at = pw.DateTimeField(null=True)
    unlocked_until = pw.DateTimeField(null=True)
    order_id = pw.BigIntegerField(null=True)  # the order that bought at the assist price
    consumed_at = pw.DateTimeField(null=True)
    closed_at = pw.DateTimeField(null=True)  # replaced by a new assist after its window passed
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "assist"
        indexes = ((("session", "user"), False), (("order_id",), False))


# one open assist per shopper and pin
Assist.add_index(Assist.index(Assist.user, Assist.pin, unique=True, safe=True,
                              name="assist_open_user_pin").where(Assist.closed_at.is_null()))


class AssistHelp(BaseModel):
    """One helper counted for one assist: who, when, from which IP (for the risk engine)."""

    assist = pw.ForeignKeyField(Assist, on_delete="CASCADE", index=False)  # (assist, helper) below
    helper = pw.ForeignKeyField(User, on_delete="RESTRICT", index=False)  # (helper, session_id)
    session_id = pw.BigIntegerField()
    ip = pw.CharField(max_length=64, default="")
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "assist_help"
        indexes = ((("assist", "helper"), True), (("helper", "session_id"), False))


class AssistQuota(BaseModel):
    """How many assists a helper has helped in a session: a conditional update keeps it exact."""

    session_id = pw.BigIntegerField()
    helper_id = pw.BigIntegerField()
    used = pw.IntegerField(default=0)

    class Meta:
        table_name = "assist_quota"
        primary_key = pw.CompositeKey("session_id", "helper_id")


TABLES: list[type[pw.Model]] = [PinOffer, Assist, AssistHelp, AssistQuota]


# ---- the offer ----------------------------------------------------------------------------------

_OFFER_KEYS = {"helpers_needed", "price_fen", "window_s", "new_users_only"}


def _int(spec: dict, key: str, low: int, high: int, what: str) -> int:
    value = spec.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidInput(f"assist {key}: {what}", code="invalid_assist")
    return value


def parse_offer(spec: dict | None, retail_fen: int) -> AssistOffer | None:
    """The assist offer of a pin from its request form, or None without one. Raises InvalidInput
    (code invalid_assist) for: unknown keys, helpers_needed outside 1..20, a price below 0 or not
    below retail, a window outside 60 s..24 h, a non-boolean new_users_only."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise InvalidInput("an assist offer is an object", code="invalid_assist")
    unknown = sorted(set(spec) - _OFFER_KEYS)
    if unknown:
        raise InvalidInput(f"assist: unknown field(s) {', '.join(map(str, unknown))}", code="invalid_assist")
    helpers = _int(spec, "helpers_needed", 1, MAX_HELPERS, f"a whole number of helpers from 1 to {MAX_HELPERS}")
    if retail_fen <= 0:
        raise InvalidInput("assist: a product sold at 0 has no discount to unlock", code="invalid_assist")
    price = _int(spec, "price_fen", 0, retail_fen - 1, f"whole fen from 0 to below the retail {retail_fen}")
    window = None
    if spec.get("window_s") is not None:
        window = _int(spec, "window_s", 60, 86_400, "seconds from 60 to 86400")
    new_only = spec.get("new_users_only", False)
    if not isinstance(new_only, bool):
        raise InvalidInput("assist new_users_only: true or false", code="invalid_assist")
    return AssistOffer(helpers_needed=helpers, price_fen=price, window_s=window, new_users_only=new_only)


def save_offer(pin: LivePin, offer: AssistOffer | None) -> None:
    """Set (or, with None, remove) a pin's offer; inside the caller's transaction."""
    PinOffer.delete().where(PinOffer.pin == pin.id).execute()
    if offer is not None:
        PinOffer.create(pin=pin.id, helpers_needed=offer.helpers_needed, price_fen=offer.price_fen,
                              window_s=offer.window_s, new_users_only=offer.new_users_only)


def offers(session_id: int) -> dict[int, dict]:
    """The session's assist offers keyed by pin id (for the public session page)."""
    rows = PinOffer.select().join(LivePin).where(LivePin.session == session_id)
    return {r.pin_id: {"helpers_needed": r.helpers_needed, "price_fen": r.price_fen,
                       "window_s": r.window_s, "new_users_only": r.new_users_only} for r in rows}


# ---- starting ----------------------------------------------------------------------------------


def start(user_id: int, session_id: int, sku_code: str, *, now: dt.datetime | None = None) -> tuple[Assist, bool]:
    """Start (or get back) the shopper's assist for a pinned product: (assist, created).
    404 live_not_found / not_pinned / no_assist_offer; 409 session_closed (ended, cancelled)."""
    now = now or utcnow()
    session = LiveSession.get_or_none(LiveSession.id == session_id)
    if session is None:
        raise NotFound(f"live session {session_id} not found", code="live_not_found")
    if session.state not in (LiveState.SCHEDULED, LiveState.LIVE):
        raise Conflict("this live session is over; assists are closed", code="session_closed")
    pin = (LivePin.select(LivePin).join(Sku)
           .where((LivePin.session == session_id) & (Sku.code == sku_code)).first())
    if pin is None:
        raise NotFound(f"{sku_code} is not a product of this session", code="not_pinned")
    offer = PinOffer.get_or_none(PinOffer.pin == pin.id)
    if offer is None:
        raise NotFound(f"{sku_code} has no assist offer in this session", code="no_assist_offer")
    with db.atomic():
        existing = _open(user_id, pin.id, lock=True)
        if existing is not None:
            if not _lapsed(existing, now):
                return existing, False
            Assist.update(closed_at=now).where(Assist.id == existing.id).execute()
        try:
            with db.atomic():
                made = Assist.create(
                    token=secrets.token_urlsafe(TOKEN_BYTES), user=user_id, session=session_id, pin=pin.id,
                    sku_id=pin.sku_id, helpers_needed=offer.helpers_needed, price_fen=offer.price_fen,
                    window_s=offer.window_s, new_users_only=offer.new_users_only, created_at=now)
            return made, True
        except pw.IntegrityError:  # a concurrent start of the same shopper won
            pass
    found = _open(user_id, pin.id)
    if found is None:  # not a concurrent start: the user row is gone (a foreign-key refusal)
        raise Unauthenticated("unknown user; log in again")
    return found, False


def _open(user_id: int, pin_id: int, *, lock: bool = False) -> Assist | None:
    query = Assist.select().where((Assist.user == user_id) & (Assist.pin == pin_id) & Assist.closed_at.is_null())
    return (lock_rows(query) if lock else query).first()


def _lapsed(assist: Assist, now: dt.datetime) -> bool:
    """Unlocked, never bought, and its window has passed."""
    return assist.unlocked_until is not None and assist.order_id is None and assist.unlocked_until <= now


def by_token(token: str) -> Assist:
    if not isinstance(token, str) or not 8 <= len(token) <= 32:
        raise NotFound("no such assist", code="assist_not_found")
    found = Assist.get_or_none(Assist.token == token)
    if found is None:
        raise NotFound("no such assist", code="assist_not_found")
    return found


# ---- reading ---------------------------------------------------------------------------------


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def _usable(assist: Assist, now: dt.datetime) -> bool:
    return assist.unlocked_until is not None and assist.order_id is None and assist.unlocked_until > now


def public_progress(token: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """What anyone holding the link may see: the product, the goal and progress; no person."""
    now = now or utcnow()
    assist = by_token(token)
    row = (Sku.select(Sku, Product).join(Product).where(Sku.id == assist.sku_id).get())
    session = LiveSession.get_by_id(assist.session_id)
    return {"session_id": assist.session_id, "session_state": session.state, "session_title": session.title,
            "sku": row.code, "product": row.product.title, "retail_fen": row.retail_price_fen,
            "price_fen": assist.price_fen, "helpers": assist.helpers, "helpers_needed": assist.helpers_needed,
            "new_users_only": assist.new_users_only, "unlocked": assist.unlocked_at is not None,
            "unlocked_until": _iso(assist.unlocked_until), "usable": _usable(assist, now),
            "accepting_help": session.state == LiveState.LIVE and assist.unlocked_at is None
            and assist.closed_at is None}


def share_facts(token: str) -> dict[str, Any]:
    """What a share poster shows: the product, the goal and price, the session's creator."""
    assist = by_token(token)
    row = (Sku.select(Sku.code, Product.title, Creator.name, Creator.code.alias("creator_code"))
           .join(Product).switch(Sku).join(LivePin, on=(LivePin.sku == Sku.id)).join(LiveSession)
           .join(Creator).where(LivePin.id == assist.pin_id).dicts().get())
    return {"sku": row["code"], "product": row["title"], "creator_name": row["name"] or "",
            "creator_code": row["creator_code"], "helpers_needed": assist.helpers_needed,
            "price_fen": assist.price_fen}


def state_for(user_id: int, session_id: int, *, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The shopper's open assists in a session (for the session page): progress, the price,
    until when it is unlocked, whether it can still be used, and the order that used it."""
    now = now or utcnow()
    rows = (Assist.select(Assist, Sku.code).join(Sku, on=(Sku.id == Assist.sku_id), attr="sku_row")
            .where((Assist.session == session_id) & (Assist.user == user_id) & Assist.closed_at.is_null())
            .order_by(Assist.id))
    return [mine(a, a.sku_row.code, now=now) for a in rows]


def mine(assist: Assist, sku_code: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """One assist as its starter sees it."""
    now = now or utcnow()
    return {"token": assist.token, "session_id": assist.session_id, "pin_id": assist.pin_id, "sku": sku_code,
            "helpers": assist.helpers, "helpers_needed": assist.helpers_needed, "price_fen": assist.price_fen,
            "unlocked": assist.unlocked_at is not None, "unlocked_until": _iso(assist.unlocked_until),
            "usable": _usable(assist, now), "order_id": assist.order_id,
            "share_path": SHARE_PATH.format(token=assist.token)}


# ---- buying (called by the live order placement, inside its transaction) ----------------------


def unlocked_for_order(user_id: int, session_id: int, sku_id: int, now: dt.datetime) -> tuple[int, int] | None:
    """(assist id, unit price) when the buyer holds an unlocked, unused assist for this SKU in this
    session whose window lasts at `now`; else None."""
    row = (Assist.select(Assist.id, Assist.price_fen)
           .where((Assist.session == session_id) & (Assist.user == user_id) & (Assist.sku_id == sku_id)
                  & Assist.closed_at.is_null() & Assist.order_id.is_null() & (Assist.unlocked_until > now))
           .order_by(Assist.id).tuples().first())
    return (row[0], row[1]) if row else None


def consume(assist_id: int, order_id: int, *, now: dt.datetime | None = None) -> bool:
    """Claim the assist for an order: True for exactly one order while the window lasts."""
    now = now or utcnow()
    return Assist.update(order_id=order_id, consumed_at=now).where(
        (Assist.id == assist_id) & Assist.order_id.is_null() & Assist.closed_at.is_null()
        & (Assist.unlocked_until > now)).execute() == 1


def release_for_orders(order_ids: list[int] | tuple[int, ...], *, now: dt.datetime | None = None) -> int:
    """Free the assists used by these (expired or refunded) orders while their window lasts;
    after it, the assist stays with the order that used it. Returns how many were freed."""
    now = now or utcnow()
    freed, ids = 0, list(order_ids)
    for start_at in range(0, len(ids), 500):
        chunk = ids[start_at:start_at + 500]
        freed += Assist.update(order_id=None, consumed_at=None).where(
            Assist.order_id.in_(chunk) & (Assist.unlocked_until > now)).execute()
    return freed


def reclaim(assist_id: int, order_id: int, *, now: dt.datetime | None = None) -> bool:
    """A late payment for an expired order that had used this assist: take the assist back for
    it if nobody else has (the price was fixed when the order was placed inside the window, so the
    window is not checked again). False: another order used it meanwhile (refund the payment)."""
    now = now or utcnow()
    return Assist.update(order_id=order_id, consumed_at=now).where(
        (Assist.id == assist_id) & (Assist.order_id.is_null() | (Assist.order_id == order_id))).execute() == 1
