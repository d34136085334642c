"""The reservation lottery of a live session (issue 13, seed 001: "100 reservations -> 10 free
orders"): configured when the session is scheduled (threshold, number of prizes, the prize
SKU), drawn once at T-0 from the session's reservations, verifiable by anyone afterwards.

- **Commitment.** `configure` draws a 32-byte secret seed and stores it sealed with the vault's
  AES-GCM cipher (bound to the session as associated data, like the operators' TOTP secrets)
  beside its published SHA-256 (`seed_hash`). The seed is never logged; it is revealed (and
  the sealed copy dropped) when the lottery closes.
- **The draw** is the pure rule of models/lottery_draw.py (documented there), run by
  `run_draw` over the reservation list of models/reservations.py (`reserved_after`, streamed
  in keyset chunks, never held). Reservations close at T-0, so the list is stable; the draw
  job waits a few seconds more (LIVE_LOTTERY_DRAW_DELAY_S) for a reservation committed at the
  last moment, and re-counts the list inside the draw's transaction.
- **Once.** The draw's writes (winners, the state flip pending -> drawn | below_threshold |
  cancelled, the audit row, the event) are one transaction: a conditional update on the
  lottery's state, unique (lottery, reservation) and (lottery, rank) winner rows, and the audit
  row's unique request key `lottery-draw:{session}`. Running it twice changes nothing.
- **Below the threshold** there is no draw (state below_threshold; the page says so). A
  cancelled session's lottery closes without a draw.
- **Prizes** go through the normal order pipeline (`grant_prize`): a zero-price order for the
  prize SKU (orders.place_order with price_fen=0, idempotency key `lottery:{session}:{reservation}`),
  confirmed by payments.pay_free, then delivered by the usual delivery drain. A prize that
  cannot be placed yet (out of stock, SKU switched off) keeps its reason on the winner row and
  is tried again by the next run of the job.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import os
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

import peewee as pw

from models import audit, events, inventory, lottery_draw, orders, payments, reservations
from models.catalog import Kind, Product, Sku, components
from models.db import BaseModel, db, lock_rows, utcnow
from models.errors import Conflict, DomainError, InvalidInput, NotFound
from models.live import LiveSession, LiveState
from models.orders import Order, OrderPolicy, OrderRequest
from models.users import User

SYSTEM = "system:lottery"
MAX_THRESHOLD = 10_000_000
MAX_PRIZES = 1000
PAGE_MAX = 1000  # reservation ids per page of the public list
_SEALED = "v1"


class LotteryState(StrEnum):
    PENDING = "pending"
    DRAWN = "drawn"
    BELOW_THRESHOLD = "below_threshold"
    CANCELLED = "cancelled"


class Lottery(BaseModel):
    session = pw.ForeignKeyField(LiveSession, unique=True, on_delete="CASCADE")
    threshold = pw.IntegerField()  # reservations needed for a draw
    prizes = pw.IntegerField()
    prize_sku = pw.ForeignKeyField(Sku, on_delete="RESTRICT", index=False)
    seed_hash = pw.CharField(max_length=64)  # published at scheduling
    sealed_seed = pw.CharField(max_length=200, null=True)  # v1:<key id>:<nonce>:<ciphertext>, until revealed
    seed = pw.CharField(max_length=64, null=True)  # hex, revealed when the lottery closes
    state = pw.CharField(max_length=16, default=LotteryState.PENDING.value)
    list_hash = pw.CharField(max_length=64, null=True)
    reservations = pw.IntegerField(null=True)  # the list's length at the draw
    drawn_at = pw.DateTimeField(null=True)
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("state",), False),)


class LotteryWinner(BaseModel):
    lottery = pw.ForeignKeyField(Lottery, backref="winners", on_delete="CASCADE", index=False)
    reservation_id = pw.BigIntegerField()
    user_id = pw.BigIntegerField()
    rank = pw.IntegerField()  # 1 = lowest score
    order_id = pw.BigIntegerField(null=True)  # the prize's zero-price order, once placed
    notified = pw.BooleanField(default=False)
    last_error = pw.CharField(max_length=200, null=True)  # why the prize could not be placed yet
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("lottery", "reservation_id"), True), (("lottery", "rank"), True))


@dataclasses.dataclass(frozen=True)
class LotterySpec:
    threshold: int
    prizes: int
    prize_sku_id: int
    prize_sku_code: str


# ---- configuration ---------------------------------------------------------------------------


def _whole(spec: dict, key: str, low: int, high: int) -> int:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"lottery {key} must be a whole number from {low} to {high}", code=f"invalid_lottery_{key}")
    return value


def parse_lottery(spec: dict | None, *, now: dt.datetime | None = None) -> LotterySpec | None:
    """Validate a lottery as scheduling receives it: {"threshold": reservations needed,
    "prizes": how many win, "prize_sku": SKU code}. None: no lottery. Nothing is written.

    Raises InvalidInput: not an object or unknown keys (invalid_lottery), threshold outside
    1..MAX_THRESHOLD, prizes outside 1..MAX_PRIZES, more prizes than the threshold
    (lottery_prizes_over_threshold: more prizes than reservations), a prize SKU that is unknown,
    switched off, not deliverable as a free voucher (a top-up needs an account) or short of
    stock for every prize (invalid_lottery_prize)."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) - {"threshold", "prizes", "prize_sku"}:
        raise InvalidInput("a lottery is {threshold, prizes, prize_sku}", code="invalid_lottery")
    threshold = _whole(spec, "threshold", 1, MAX_THRESHOLD)
    prizes = _whole(spec, "prizes", 1, MAX_PRIZES)
    if prizes > threshold:
        raise InvalidInput(f"{prizes} prizes for {threshold} reservations: more prizes than reservations",
                           code="lottery_prizes_over_threshold")
    code = spec.get("prize_sku")
    if not isinstance(code, str) or not code or len(code) > 64:
        raise InvalidInput("the lottery's prize_sku is a SKU code", code="invalid_lottery_prize")
    sku = Sku.select(Sku).join(Product).where((Sku.code == code) & Sku.active & Product.active).first()
    if sku is None:
        raise InvalidInput(f"the prize SKU {code!r} is unknown or not on sale", code="invalid_lottery_prize")
    if any(part.kind == Kind.TOPUP for part, _ in components(sku)) or sku.kind == Kind.TOPUP:
        raise InvalidInput("a top-up cannot be a prize (it needs the winner's account)", code="invalid_lottery_prize")
    if inventory.available([sku])[sku.id] < prizes:
        raise InvalidInput(f"the prize SKU {code!r} has fewer than {prizes} units in stock",
                           code="invalid_lottery_prize")
    return LotterySpec(threshold, prizes, sku.id, sku.code)


def _aad(session_id: int) -> bytes:
    return f"lottery:{session_id}".encode()


def _seal(session_id: int, seed: bytes) -> str:
    from models.vault import cipher

    sealed = cipher().seal(seed.hex(), _aad(session_id))
    return ":".join((_SEALED, sealed.key_id, base64.b64encode(sealed.nonce).decode(),
                     base64.b64encode(sealed.ciphertext).decode()))


def _open(lot: Lottery) -> bytes:
    from models.vault import Sealed, cipher

    if lot.seed:
        return bytes.fromhex(lot.seed)
    version, key_id, nonce, ciphertext = (lot.sealed_seed or "").split(":")
    if version != _SEALED:
        raise ValueError(f"unknown sealed seed format {version!r}")
    return bytes.fromhex(cipher().open(Sealed(key_id, base64.b64decode(nonce), base64.b64decode(ciphertext)),
                                       _aad(lot.session_id)))


def configure(session: LiveSession, spec: LotterySpec | None) -> Lottery | None:
    """Write the session's lottery inside the caller's transaction (scheduling): a fresh secret
    seed, sealed, and its published hash. Configuring a pending lottery again changes its terms
    and keeps its seed (the published hash stays valid); a closed one is refused (409)."""
    if spec is None:
        return None
    found = Lottery.get_or_none(Lottery.session == session.id)
    if found is not None:
        if found.state != LotteryState.PENDING:
            raise Conflict("this session's lottery is already closed", code="lottery_closed")
        Lottery.update(threshold=spec.threshold, prizes=spec.prizes, prize_sku=spec.prize_sku_id).where(
            Lottery.id == found.id).execute()
        return Lottery.get_by_id(found.id)
    seed = os.urandom(lottery_draw.SEED_BYTES)
    return Lottery.create(session=session.id, threshold=spec.threshold, prizes=spec.prizes,
                          prize_sku=spec.prize_sku_id, seed_hash=lottery_draw.seed_hash(seed),
                          sealed_seed=_seal(session.id, seed))


def reseal_seeds() -> int:
    """Re-encrypt every sealed seed not under the vault's current key (after a key rotation,
    like operators.reseal_totp_secrets); how many were re-sealed."""
    from models.vault import cipher

    current, done = cipher().current_id, 0
    for lot in Lottery.select().where(Lottery.sealed_seed.is_null(False)):
        if lot.sealed_seed.split(":")[1] != current:
            Lottery.update(sealed_seed=_seal(lot.session_id, _open(lot))).where(Lottery.id == lot.id).execute()
            done += 1
    return done


# ---- reading ---------------------------------------------------------------------------------


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def public_state(session_id: int) -> dict[str, Any] | None:
    """The public summary of a session's lottery (None: it has none): terms, prize, seed_hash,
    state, reservations (the list's length at the draw, or now), and once closed the seed, the
    list hash and the winners (reservation ids by rank)."""
    row = (Lottery.select(Lottery, Sku).join(Sku, on=(Lottery.prize_sku == Sku.id))
           .where(Lottery.session == session_id).first())
    if row is None:
        return None
    closed = row.state != LotteryState.PENDING
    winners = [w.reservation_id for w in LotteryWinner.select(LotteryWinner.reservation_id)
               .where(LotteryWinner.lottery == row.id).order_by(LotteryWinner.rank)] \
        if row.state == LotteryState.DRAWN else []
    return {
        "session_id": session_id, "threshold": row.threshold, "prizes": row.prizes,
        "prize": {"sku": row.prize_sku.code, "name": row.prize_sku.name},
        "seed_hash": row.seed_hash, "state": row.state,
        "reservations": row.reservations if row.reservations is not None else reservations.count(session_id),
        "seed": row.seed if closed else None, "list_hash": row.list_hash, "winners": winners,
        "drawn_at": _iso(row.drawn_at),
    }


def public_reservations(session_id: int, after: int = 0, limit: int = PAGE_MAX) -> list[int]:
    """A page of the public reservation list of a session with a lottery: ascending ids after
    `after`. Raises NotFound when the session has no lottery, InvalidInput for a bad page."""
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise InvalidInput("after is a reservation id, 0 for the start", code="invalid_after")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= PAGE_MAX:
        raise InvalidInput(f"limit is 1 to {PAGE_MAX}", code="invalid_limit")
    if not Lottery.select().where(Lottery.session == session_id).exists():
        raise NotFound(f"live session {session_id} has no lottery", code="lottery_not_found")
    return [r for r, _ in reservations.reserved_after(session_id, after, limit)]


class ReservationIds:
    """The reservation ids of a session, ascending, streamed in keyset chunks on each iteration."""

    def __init__(self, session_id: int, chunk: int = reservations.CHUNK) -> None:
        self.session_id, self.chunk = session_id, chunk

    def __iter__(self) -> Iterator[int]:
        after = 0
        while True:
            page = reservations.reserved_after(self.session_id, after, self.chunk)
            for r, _ in page:
                yield r
            if len(page) < self.chunk:
                return
            after = page[-1][0]


# ---- the draw --------------------------------------------------------------------------------


def due(now: dt.datetime, delay: dt.timedelta, limit: int = 100) -> list[int]:
    """Sessions whose pending lottery should close now: cancelled, started or ended (their
    reservations are closed), or past their planned start by `delay`."""
    cutoff = now - delay
    start = pw.fn.COALESCE(LiveSession.scheduled_at, LiveSession.started_at)
    query = (Lottery.select(Lottery.session).join(LiveSession, on=(Lottery.session == LiveSession.id))
             .where((Lottery.state == LotteryState.PENDING)
                    & ((LiveSession.state != LiveState.SCHEDULED) | (start <= cutoff)))
             .order_by(Lottery.id).limit(limit))
    return [row.session_id for row in query]


def run_draw(session_id: int, *, now: dt.datetime | None = None, actor: str = SYSTEM) -> tuple[str, bool]:
    """Close the session's pending lottery once: cancelled session -> cancelled; fewer
    reservations than the threshold -> below_threshold; else the draw -> drawn, with winner rows.
    Returns (the lottery's state afterwards, whether this call closed it); still `pending` when
    the list changed while it was read (the next run tries again). Raises NotFound when the
    session has no lottery."""
    now = now or utcnow()
    lot = Lottery.get_or_none(Lottery.session == session_id)
    if lot is None:
        raise NotFound(f"live session {session_id} has no lottery", code="lottery_not_found")
    if lot.state != LotteryState.PENDING:
        return lot.state, False
    seed = _open(lot)
    session = LiveSession.get_by_id(session_id)
    if session.state == LiveState.CANCELLED:
        result, state = None, LotteryState.CANCELLED
    else:
        result = lottery_draw.compute(seed, session_id, ReservationIds(session_id), lot.prizes)
        state = LotteryState.DRAWN if result.count >= lot.threshold else LotteryState.BELOW_THRESHOLD
    with db.atomic():
        locked = lock_rows(Lottery.select().where(Lottery.id == lot.id)).get()
        if locked.state != LotteryState.PENDING:
            return locked.state, False
        if result is not None and reservations.count(session_id) != result.count:
            return LotteryState.PENDING.value, False  # a reservation came or went while the list was read
        winners = result.winners if result is not None and state == LotteryState.DRAWN else []
        users = dict(reservations.Reservation.select(reservations.Reservation.id, reservations.Reservation.user)
                     .where(reservations.Reservation.id.in_(winners)).tuples()) if winners else {}
        for start in range(0, len(winners), 200):
            LotteryWinner.insert_many([
                {"lottery": lot.id, "reservation_id": r, "user_id": users[r], "rank": start + i + 1, "created_at": now}
                for i, r in enumerate(winners[start:start + 200])]).execute()
        Lottery.update(state=state.value, seed=seed.hex(), sealed_seed=None,
                       list_hash=result.list_hash if result else None,
                       reservations=result.count if result else reservations.count(session_id),
                       drawn_at=now).where((Lottery.id == lot.id) & (Lottery.state == LotteryState.PENDING)).execute()
        summary = {"state": state.value, "threshold": lot.threshold, "prizes": lot.prizes,
                   "reservations": result.count if result else None,
                   "list_hash": result.list_hash if result else None, "winners": winners}
        audit.record(operator_id=None, operator_name=actor, role="system", action="live.lottery_draw",
                     object=f"live:{session_id}", before={"state": LotteryState.PENDING.value}, after=summary,
                     request_key=f"lottery-draw:{session_id}")
        events.record("live.lottery_closed", f"live:{session_id}", actor, **summary)
    return state.value, True


# ---- prizes ----------------------------------------------------------------------------------


def open_winners(after_id: int = 0, limit: int = 200) -> list[LotteryWinner]:
    """Winners whose prize order is not placed yet or who were not notified yet, by id after
    `after_id` (keyset; the partial index of migration 0015 holds only these rows)."""
    return list(LotteryWinner.select()
                .where((LotteryWinner.order_id.is_null() | (LotteryWinner.notified == False))  # noqa: E712
                       & (LotteryWinner.id > after_id))
                .order_by(LotteryWinner.id).limit(limit))


def prize_key(session_id: int, reservation_id: int) -> str:
    """The prize order's idempotency key (and the stem of the winner's notice keys)."""
    return f"lottery:{session_id}:{reservation_id}"


def grant_prize(winner: LotteryWinner, policy: OrderPolicy, *, actor: str = SYSTEM) -> Order | None:
    """The winner's prize through the normal pipeline: a zero-price order for the prize SKU
    (idempotency key `prize_key`), confirmed free of charge, recorded on the winner row, in one
    transaction; the caller queues its delivery. Placing it again returns the same order. None
    when it cannot be placed now (out of stock, the SKU switched off): the reason is kept on the
    winner row for the next try. The unpaid-order limits do not apply (it is paid at once)."""
    lot = Lottery.select(Lottery, Sku).join(Sku, on=(Lottery.prize_sku == Sku.id)).where(
        Lottery.id == winner.lottery_id).get()
    prize_policy = dataclasses.replace(policy, max_unpaid_per_user=2**31 - 1, max_unpaid_per_ip=2**31 - 1)
    try:
        with db.atomic():
            order, _ = orders.place_order(
                User.get_by_id(winner.user_id), OrderRequest(lot.prize_sku.code, 1), prize_policy, client_ip="",
                idempotency_key=prize_key(lot.session_id, winner.reservation_id), price_fen=0)
            order = payments.pay_free(order.id, actor=actor)
            LotteryWinner.update(order_id=order.id, last_error=None).where(LotteryWinner.id == winner.id).execute()
    except DomainError as exc:
        reason = f"{exc.code}: {exc.message}"[:200]
        if reason != winner.last_error:
            LotteryWinner.update(last_error=reason).where(LotteryWinner.id == winner.id).execute()
            events.record("live.lottery_prize_failed", f"live:{lot.session_id}", actor,
                          reservation=winner.reservation_id, reason=reason)
        return None
    return order


def mark_notified(winner_id: int) -> None:
    LotteryWinner.update(notified=True).where(LotteryWinner.id == winner_id).execute()
