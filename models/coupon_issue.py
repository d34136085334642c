"""Making coupons and handing them out (issue 14): an operator's coupon validated whole
(`create_coupon`), a shopper's claim by code (`claim`), bulk issuance by campaigns and operators
(`issue`), the campaign's coupon, the wallet, and the sweep of grants past their end.

Every way of handing a coupon out writes one `coupon_grant` row under the unique key
(coupon, user, source_key), inserted with ON CONFLICT DO NOTHING: a claim takes the first free
key of claim:1..per_user_limit, a campaign or an operator list one key per run, so racing claims
and a job run twice can never give more than the limit. Re-exported by models/coupons.py.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass

import peewee as pw

from models import coupon_rules, events
from models.catalog import Product, Sku
from models.coupon_tables import Coupon, CouponGrant, CouponKind, CouponScope, GrantState, Scope
from models.db import db, execute, placeholders, utcnow
from models.errors import Conflict, InvalidInput, NotFound
from models.network import Creator

CODE_MIN, CODE_MAX = 10, 40
CAMPAIGNS = ("group_welcome", "lottery_loser", "wakeup")
SOURCES = ("code", "operator", *CAMPAIGNS)
ISSUE_CHUNK = 500
WALLET_MAX = 100
_CODE = re.compile(r"[A-Z0-9]+")


@dataclass(frozen=True)
class CouponSpec:
    """Everything an operator sets on a coupon; `create_coupon` checks it whole."""

    name: str
    kind: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    threshold_fen: int = 0
    amount_off_fen: int = 0
    percent_bp: int = 0
    cap_fen: int | None = None
    fixed_price_fen: int | None = None
    scope: str = Scope.SHELF.value
    include_products: tuple[int, ...] = ()
    include_skus: tuple[int, ...] = ()
    exclude_products: tuple[int, ...] = ()
    exclude_skus: tuple[int, ...] = ()
    code: str | None = None  # claimable by this code (normalized); None: issued only
    owner_creator_id: int | None = None  # a creator's coupon (paid from that creator's margin)
    campaign: str | None = None  # group_welcome | lottery_loser | wakeup
    grant_valid_days: int | None = None
    max_uses: int | None = None
    budget_fen: int | None = None
    per_user_limit: int = 1
    new_buyers_only: bool = False
    stackable: bool = False


def normalize_code(text: str) -> str:
    """A claim code as stored: NFKC (full-width letters and digits become ASCII), upper case,
    without spaces, dashes and underscores."""
    folded = unicodedata.normalize("NFKC", text or "").strip().upper()
    return re.sub(r"[\s\-_—–]+", "", folded)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_spec(spec: CouponSpec) -> None:
    """Refuse a spec that is not whole: InvalidInput with the code of the first bad field."""
    def bad(code: str, message: str) -> None:
        raise InvalidInput(message, code=code)

    if not isinstance(spec.name, str) or not 1 <= len(spec.name.strip()) <= 60:
        bad("invalid_name", "a coupon's name is 1-60 characters")
    if spec.kind not in {k.value for k in CouponKind}:
        bad("invalid_kind", "kind is amount_off, percent_off or fixed_price")
    for field in ("threshold_fen", "amount_off_fen", "percent_bp", "per_user_limit"):
        if not _whole(getattr(spec, field)) or getattr(spec, field) < 0:
            bad(f"invalid_{field.removesuffix('_fen')}", f"{field} is a whole number >= 0")
    for field in ("cap_fen", "fixed_price_fen", "max_uses", "budget_fen", "grant_valid_days"):
        value = getattr(spec, field)
        if value is not None and (not _whole(value) or value < 1):
            bad(f"invalid_{field.removesuffix('_fen')}", f"{field} is a whole number >= 1 when set")
    if spec.per_user_limit < 1 or spec.per_user_limit > 100:
        bad("invalid_per_user_limit", "per_user_limit is 1-100")
    if spec.kind == CouponKind.AMOUNT_OFF and (spec.amount_off_fen < 1 or spec.percent_bp or spec.cap_fen
                                             or spec.fixed_price_fen is not None):
        bad("invalid_amount_off", "an amount-off coupon sets amount_off_fen >= 1 (and a threshold), nothing else")
    if spec.kind == CouponKind.PERCENT_OFF and (not 1 <= spec.percent_bp <= 9999 or spec.amount_off_fen
                                              or spec.fixed_price_fen is not None):
        bad("invalid_percent", "a percent-off coupon sets percent_bp 1-9999 (and optionally cap_fen)")
    if spec.kind == CouponKind.FIXED_PRICE and (spec.fixed_price_fen is None or spec.amount_off_fen
                                              or spec.percent_bp or spec.cap_fen or spec.scope != Scope.SKU):
        bad("invalid_fixed_price", "a fixed-price coupon sets fixed_price_fen and is scoped to SKUs")
    if not isinstance(spec.starts_at, dt.datetime) or not isinstance(spec.ends_at, dt.datetime) \
            or spec.ends_at <= spec.starts_at:
        bad("invalid_window", "a coupon ends after it starts")
    if spec.scope not in {s.value for s in Scope}:
        bad("invalid_scope", "scope is shelf, product or sku")
    includes = {Scope.PRODUCT: spec.include_products, Scope.SKU: spec.include_skus}
    if spec.scope == Scope.SHELF and (spec.include_products or spec.include_skus):
        bad("invalid_scope", "a shelf-wide coupon lists exclusions only")
    if spec.scope != Scope.SHELF and (not includes[Scope(spec.scope)]
                                      or includes[Scope.SKU if spec.scope == Scope.PRODUCT else Scope.PRODUCT]):
        bad("invalid_scope", f"a {spec.scope}-scoped coupon lists the {spec.scope}s it covers, and only those")
    if spec.campaign is not None and spec.campaign not in CAMPAIGNS:
        bad("invalid_campaign", f"campaign is one of {', '.join(CAMPAIGNS)}")
    if spec.code is not None:
        code = normalize_code(spec.code)
        if not CODE_MIN <= len(code) <= CODE_MAX or not _CODE.fullmatch(code):
            bad("invalid_code", f"a claim code is {CODE_MIN}-{CODE_MAX} letters or digits")


def _check_targets(spec: CouponSpec) -> None:
    for model, ids, what in ((Product, spec.include_products + spec.exclude_products, "product"),
                             (Sku, spec.include_skus + spec.exclude_skus, "sku")):
        if any(not _whole(i) for i in ids):
            raise InvalidInput(f"{what} ids are whole numbers", code="invalid_scope")
        wanted = set(ids)
        if wanted and model.select().where(model.id.in_(list(wanted))).count() != len(wanted):
            raise InvalidInput(f"an unknown {what} is listed", code="invalid_scope")
    if spec.owner_creator_id is not None and Creator.get_or_none(Creator.id == spec.owner_creator_id) is None:
        raise InvalidInput("the owning creator does not exist", code="invalid_owner")


def create_coupon(spec: CouponSpec, *, actor: str) -> Coupon:
    """A new coupon, validated whole (InvalidInput with a code per field; Conflict
    coupon_code_taken), with its scope rows and an event, in one transaction."""
    _check_spec(spec)
    _check_targets(spec)
    targets = ([("product", i, False) for i in spec.include_products] + [("sku", i, False) for i in spec.include_skus]
               + [("product", i, True) for i in spec.exclude_products] + [("sku", i, True) for i in spec.exclude_skus])
    if len({(t, i) for t, i, _ in targets}) != len(targets):
        raise InvalidInput("a product or SKU is listed twice", code="invalid_scope")
    try:
        with db.atomic():
            coupon = Coupon.create(
                code=normalize_code(spec.code) if spec.code is not None else None, name=spec.name.strip(),
                kind=spec.kind, threshold_fen=spec.threshold_fen, amount_off_fen=spec.amount_off_fen,
                percent_bp=spec.percent_bp, cap_fen=spec.cap_fen, fixed_price_fen=spec.fixed_price_fen,
                scope=spec.scope, owner_creator_id=spec.owner_creator_id, campaign=spec.campaign,
                starts_at=spec.starts_at, ends_at=spec.ends_at, grant_valid_days=spec.grant_valid_days,
                max_uses=spec.max_uses, budget_fen=spec.budget_fen, per_user_limit=spec.per_user_limit,
                new_buyers_only=spec.new_buyers_only, stackable=spec.stackable, created_by=actor[:64])
            for target, target_id, exclude in targets:
                CouponScope.create(coupon=coupon, target=target, target_id=target_id, exclude=exclude)
            events.record("coupon.created", f"coupon:{coupon.id}", actor, kind=spec.kind, code=coupon.code)
    except pw.IntegrityError:
        raise Conflict("another coupon has this code", code="coupon_code_taken") from None
    return coupon


def grant_expiry(coupon: Coupon, now: dt.datetime) -> dt.datetime:
    """A grant made now ends with the coupon, or `grant_valid_days` after issue if sooner."""
    if coupon.grant_valid_days is None:
        return coupon.ends_at
    return min(coupon.ends_at, now + dt.timedelta(days=coupon.grant_valid_days))


def _ts(value: dt.datetime) -> object:
    return CouponGrant.expires_at.db_value(value)


_INSERT_GRANTS = ("INSERT INTO coupon_grant (coupon_id, user_id, source, source_key, state, granted_at, "
                  "expires_at) VALUES {values} ON CONFLICT DO NOTHING RETURNING id")


def claim(user_id: int, code: str, *, now: dt.datetime | None = None) -> CouponGrant:
    """Claim a coupon by its code into the user's wallet. Raises NotFound coupon_not_found
    (no such code), Conflict coupon_inactive, coupon_expired (ended or not started),
    coupon_exhausted (every use or the budget taken), coupon_limit (the user holds
    per_user_limit claims of it). A creator's coupon is claimed by anyone; it applies only
    through that creator's link. Concurrency-safe: claim:k keys are unique per user."""
    now = now or utcnow()
    normalized = normalize_code(code)
    coupon = None
    if CODE_MIN <= len(normalized) <= CODE_MAX and _CODE.fullmatch(normalized):
        coupon = Coupon.get_or_none(Coupon.code == normalized)
    if coupon is None:
        raise NotFound("no coupon has this code", code="coupon_not_found")
    if not coupon.active:
        raise Conflict("this coupon has been withdrawn", code="coupon_inactive")
    if not coupon.starts_at <= now < coupon.ends_at:
        raise Conflict("this coupon is not valid now", code="coupon_expired")
    if (coupon.max_uses is not None and coupon.uses >= coupon.max_uses) or (
            coupon.budget_fen is not None and coupon.spent_fen >= coupon.budget_fen):
        raise Conflict("this coupon has run out", code="coupon_exhausted")
    taken = {key for (key,) in execute(
        "SELECT source_key FROM coupon_grant WHERE coupon_id = %s AND user_id = %s AND source_key LIKE %s",
        (coupon.id, user_id, "claim:%")).fetchall()}
    for k in range(1, coupon.per_user_limit + 1):
        key = f"claim:{k}"
        if key in taken:
            continue
        with db.atomic():
            row = execute(_INSERT_GRANTS.format(values="(%s, %s, %s, %s, %s, %s, %s)"), (
                coupon.id, user_id, "code", key, GrantState.AVAILABLE.value, _ts(now),
                _ts(grant_expiry(coupon, now)))).fetchone()
        if row is not None:
            return CouponGrant.get_by_id(row[0])
    raise Conflict(f"you already have this coupon ({coupon.per_user_limit} per person)", code="coupon_limit")


def issue(coupon_id: int, user_ids: list[int], *, source: str, source_key: str,
          now: dt.datetime | None = None) -> int:
    """Hand the coupon to these users (a campaign or an operator's list). Idempotent on
    (coupon, user, source_key): running it again gives nobody a second grant. Unknown user ids
    are skipped. Returns how many new grants were written. Raises NotFound coupon_not_found,
    Conflict coupon_inactive / coupon_expired, InvalidInput invalid_source."""
    now = now or utcnow()
    if source not in SOURCES or not isinstance(source_key, str) or not 1 <= len(source_key) <= 64:
        raise InvalidInput("source is a known campaign or operator, source_key 1-64 characters", code="invalid_source")
    coupon = Coupon.get_or_none(Coupon.id == coupon_id)
    if coupon is None:
        raise NotFound("no such coupon", code="coupon_not_found")
    if not coupon.active:
        raise Conflict("this coupon has been withdrawn", code="coupon_inactive")
    if now >= coupon.ends_at:
        raise Conflict("this coupon has ended", code="coupon_expired")
    wanted = sorted({int(u) for u in user_ids})
    expires = _ts(grant_expiry(coupon, max(now, coupon.starts_at)))
    made = 0
    for i in range(0, len(wanted), ISSUE_CHUNK):
        chunk = wanted[i:i + ISSUE_CHUNK]
        known = [u for (u,) in execute(f'SELECT id FROM "user" WHERE id IN ({placeholders(chunk)})',
                                       chunk).fetchall()]
        if not known:
            continue
        params: list[object] = []
        for u in sorted(known):
            params += [coupon.id, u, source, source_key, GrantState.AVAILABLE.value, _ts(now), expires]
        values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(known))
        with db.atomic():
            made += len(execute(_INSERT_GRANTS.format(values=values), params).fetchall())
    return made


def campaign_coupon(campaign: str, *, now: dt.datetime | None = None) -> Coupon | None:
    """The active coupon marked for a campaign (the newest, if several), valid now."""
    now = now or utcnow()
    return (Coupon.select().where((Coupon.campaign == campaign) & Coupon.active
                                  & (Coupon.starts_at <= now) & (Coupon.ends_at > now))
            .order_by(Coupon.id.desc()).first())


@dataclass(frozen=True)
class WalletItem:
    grant_id: int
    coupon_id: int
    name: str
    kind: str
    threshold_fen: int
    amount_off_fen: int
    percent_bp: int
    cap_fen: int | None
    fixed_price_fen: int | None
    creator_id: int | None  # applies only through this creator's link
    stackable: bool
    starts_at: dt.datetime
    expires_at: dt.datetime
    state: str  # available | reserved (held by an unpaid order) | expired
    usable: bool
    reason: str | None  # why not usable: expired | not_started | inactive | exhausted | in_use | out_of_scope


def _why_not(coupon: Coupon, grant: CouponGrant, now: dt.datetime) -> str | None:
    if grant.state == GrantState.RESERVED:
        return "in_use"
    if grant.state == GrantState.EXPIRED or grant.expires_at <= now or now >= coupon.ends_at:
        return "expired"
    if not coupon.active:
        return "inactive"
    if now < coupon.starts_at:
        return "not_started"
    if (coupon.max_uses is not None and coupon.uses >= coupon.max_uses) or (
            coupon.budget_fen is not None and coupon.spent_fen >= coupon.budget_fen):
        return "exhausted"
    return None


def describe(grant: CouponGrant, now: dt.datetime | None = None, *, out_of_scope: bool = False) -> WalletItem:
    """One grant (with its coupon) as the wallet shows it."""
    c = grant.coupon
    reason = _why_not(c, grant, now or utcnow()) or ("out_of_scope" if out_of_scope else None)
    expired = grant.state == GrantState.EXPIRED or reason == "expired"
    return WalletItem(
        grant_id=grant.id, coupon_id=c.id, name=c.name, kind=c.kind, threshold_fen=c.threshold_fen,
        amount_off_fen=c.amount_off_fen, percent_bp=c.percent_bp, cap_fen=c.cap_fen,
        fixed_price_fen=c.fixed_price_fen, creator_id=c.owner_creator_id, stackable=c.stackable,
        starts_at=c.starts_at, expires_at=grant.expires_at,
        state=GrantState.EXPIRED.value if expired else grant.state, usable=reason is None, reason=reason)


def wallet(user_id: int, *, usable_for_sku: str | None = None, now: dt.datetime | None = None) -> list[WalletItem]:
    """The user's coupons not used yet (available, held by an unpaid order, or expired in the
    last days), usable ones first (soonest to expire first), each with why it cannot be used
    now. With `usable_for_sku`, scope is checked against that SKU too (NotFound unknown_sku)."""
    now = now or utcnow()
    sku = None
    if usable_for_sku is not None:
        sku = Sku.get_or_none(Sku.code == usable_for_sku)
        if sku is None:
            raise NotFound(f"unknown SKU {usable_for_sku!r}", code="unknown_sku")
    recent = now - dt.timedelta(days=7)
    grants = list(CouponGrant.select(CouponGrant, Coupon).join(Coupon)
                  .where((CouponGrant.user_id == user_id)
                         & (CouponGrant.state.in_([GrantState.AVAILABLE.value, GrantState.RESERVED.value])
                            | ((CouponGrant.state == GrantState.EXPIRED.value) & (CouponGrant.expires_at > recent))))
                  .order_by(CouponGrant.expires_at, CouponGrant.id).limit(WALLET_MAX))
    targets: dict[int, list[tuple[str, int, bool]]] = {}
    if sku is not None and grants:
        for row in CouponScope.select().where(CouponScope.coupon.in_({g.coupon_id for g in grants})):
            targets.setdefault(row.coupon_id, []).append((row.target, row.target_id, row.exclude))
    items = [describe(g, now, out_of_scope=sku is not None and not coupon_rules.applies(
        g.coupon.scope, targets.get(g.coupon_id, []), sku_id=sku.id, product_id=sku.product_id)) for g in grants]
    items.sort(key=lambda item: not item.usable)  # stable: soonest to expire first within each
    return items


def expire_grants(now: dt.datetime | None = None, batch: int = 500) -> int:
    """Flip available grants past their end to EXPIRED, `batch` rows per transaction (the
    periodic job tasks/coupons.py; the wallet and reserve also judge expiry at read time)."""
    now = now or utcnow()
    flipped = 0
    while True:
        with db.atomic():
            count = execute(
                "UPDATE coupon_grant SET state = %s WHERE id IN (SELECT id FROM coupon_grant "
                "WHERE state = %s AND expires_at <= %s ORDER BY id LIMIT %s) AND state = %s",
                (GrantState.EXPIRED.value, GrantState.AVAILABLE.value, _ts(now), batch,
                 GrantState.AVAILABLE.value)).rowcount
        flipped += count
        if count < batch:
            return flipped
