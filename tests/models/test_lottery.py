"""The reservation lottery (models/lottery.py, models/lottery_draw.py): the documented draw
against an independent reading of its spec, validation before anything is written, the sealed
seed and its commitment, the draw run once, and prizes as zero-price orders through the normal
order and payment services."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import audit, events, ledger, live, lottery, lottery_draw, orders, payments, reservations
from models.catalog import Kind, Sku
from models.db import db, utcnow
from models.errors import InvalidInput, InvalidState
from models.live import LiveSession
from models.live_planning import SessionSpec, schedule
from models.lottery import Lottery, LotteryState, LotteryWinner
from models.orders import Order, OrderRequest
from models.payments import Payment
from tests.factories import LOTTERY_START, POLICY, buyer, creator, lottery_session, reserve_many

AFTER_START = LOTTERY_START + dt.timedelta(seconds=10)


def reference_draw(seed: bytes, session_id: int, ids: list[int], prizes: int) -> list[int]:
    """The rule as the docstring of models/lottery_draw.py states it, written naively."""
    text = "\n".join(str(r) for r in sorted(ids))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    scored = sorted((hmac.new(seed, f"{session_id}:{digest}:{r}".encode(), hashlib.sha256).digest(), r) for r in ids)
    return [r for _, r in scored[:prizes]]


# ---- the pure draw ---------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), session_id=st.integers(1, 10**9),
       ids=st.lists(st.integers(1, 10**12), unique=True, max_size=60), prizes=st.integers(0, 12))
def test_draw_matches_the_documented_rule(seed, session_id, ids, prizes):
    # given any seed, session and reservation list / when drawn with the streaming heap
    # then the winners are exactly the naive reading of the spec
    assert lottery_draw.draw(seed, session_id, sorted(ids), prizes) == reference_draw(seed, session_id, ids, prizes)


def test_list_hash_is_the_ids_joined_by_line_feeds():
    # given ascending ids / then the hash is SHA-256 of "1\n2\n30", and the empty list hashes ""
    assert lottery_draw.list_hash([1, 2, 30]) == (hashlib.sha256(b"1\n2\n30").hexdigest(), 3)
    assert lottery_draw.list_hash([]) == (hashlib.sha256(b"").hexdigest(), 0)


@pytest.mark.parametrize("ids", [[2, 1], [1, 1], [1, True]])
def test_a_list_out_of_order_is_refused(ids):
    with pytest.raises(ValueError, match="ascending"):
        lottery_draw.list_hash(ids)


def test_the_draw_depends_on_seed_session_and_list():
    # given one list / when the seed, the session or the list changes / then the outcome moves
    seed, ids = bytes(range(32)), list(range(1, 101))
    base = lottery_draw.draw(seed, 7, ids, 10)
    assert len(base) == 10 and len(set(base)) == 10
    assert lottery_draw.draw(bytes(32), 7, ids, 10) != base
    assert lottery_draw.draw(seed, 8, ids, 10) != base
    assert lottery_draw.draw(seed, 7, ids + [101], 10) != base


# ---- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, code", [
    ({"threshold": 100, "prizes": 101, "prize_sku": "P"}, "lottery_prizes_over_threshold"),
    ({"threshold": 0, "prizes": 1, "prize_sku": "P"}, "invalid_lottery_threshold"),
    ({"threshold": True, "prizes": 1, "prize_sku": "P"}, "invalid_lottery_threshold"),
    ({"threshold": 10, "prizes": 0, "prize_sku": "P"}, "invalid_lottery_prizes"),
    ({"threshold": 10, "prizes": "3", "prize_sku": "P"}, "invalid_lottery_prizes"),
    ({"threshold": 10, "prizes": 2, "prize_sku": "NOPE"}, "invalid_lottery_prize"),
    ({"threshold": 10, "prizes": 2}, "invalid_lottery_prize"),
    ({"threshold": 10, "prizes": 2, "prize_sku": "P", "odds": 1}, "invalid_lottery"),
    ({"threshold": 10, "prizes": 6, "prize_sku": "P"}, "invalid_lottery_prize"),  # 5 keys only
])
def test_bad_lotteries_are_refused_before_scheduling_writes(shop, spec, code):
    # given a prize SKU with 5 keys
    shop.card_sku(keys=5, code="P")
    host = creator()
    # when a session is scheduled with a bad lottery
    with db.connection_context():
        with pytest.raises(InvalidInput) as err:
            schedule(host, SessionSpec("抽奖", utcnow() + LOTTERY_START, lottery=spec), actor="test")
        # then the error says what is wrong and nothing is written
        assert err.value.code == code
        assert LiveSession.select().count() == 0 and Lottery.select().count() == 0


def test_a_topup_or_switched_off_sku_is_no_prize(shop):
    # given a top-up SKU and a card SKU switched off
    topup = shop.counter_sku(Kind.TOPUP, stock=50)
    off = shop.card_sku(keys=5)
    with db.connection_context():
        Sku.update(active=False).where(Sku.id == off.id).execute()
        # then neither can be a prize
        for code in (topup.code, off.code):
            with pytest.raises(InvalidInput) as err:
                lottery.parse_lottery({"threshold": 3, "prizes": 1, "prize_sku": code})
            assert err.value.code == "invalid_lottery_prize"


# ---- the commitment --------------------------------------------------------------------------

def test_the_seed_is_sealed_and_only_its_hash_is_public(shop):
    # given a scheduled session with a lottery
    session, prize = lottery_session(shop)
    with db.connection_context():
        lot = Lottery.get(Lottery.session == session.id)
        seed = lottery._open(lot)
        # then the stored hash commits to the sealed seed, which is not stored in the clear
        assert lottery_draw.seed_hash(seed) == lot.seed_hash and lot.seed is None
        assert seed.hex() not in lot.sealed_seed
        public = lottery.public_state(session.id)
    assert public["seed"] is None and public["seed_hash"] == lot.seed_hash and public["state"] == "pending"
    assert public["prize"] == {"sku": prize.code, "name": prize.name} and public["winners"] == []


def test_reseal_after_a_key_rotation_keeps_the_seed(shop, settings):
    from models import vault
    from qianxing.settings import parse_voucher_keys

    # given a sealed seed
    session, _ = lottery_session(shop)
    old = parse_voucher_keys(settings.VOUCHER_KEY or "")
    with db.connection_context():
        before = lottery._open(Lottery.get(Lottery.session == session.id))
        try:
            # when the vault's key rotates, the seeds are resealed and the old key is dropped
            vault.configure({"k9": b"9" * 32, **old}, settings.VOUCHER_HASH_KEY or "")
            assert lottery.reseal_seeds() == 1 and lottery.reseal_seeds() == 0
            vault.configure({"k9": b"9" * 32}, settings.VOUCHER_HASH_KEY or "")
            # then the seed still opens, the same
            lot = Lottery.get(Lottery.session == session.id)
            assert lot.sealed_seed.split(":")[1] == "k9" and lottery._open(lot) == before
        finally:
            vault.configure(old, settings.VOUCHER_HASH_KEY or "")


# ---- the draw, once --------------------------------------------------------------------------

def test_the_draw_runs_once_audited_with_the_documented_winners(shop):
    # given 6 reservations for a lottery of 2 prizes at a threshold of 3
    session, _ = lottery_session(shop, threshold=3, prizes=2)
    ids = reserve_many(session.id, 6)
    with db.connection_context():
        seed = lottery._open(Lottery.get(Lottery.session == session.id))
        # when it is drawn after T-0, twice
        now = utcnow() + AFTER_START
        assert lottery.run_draw(session.id, now=now) == (LotteryState.DRAWN, True)
        assert lottery.run_draw(session.id, now=now) == (LotteryState.DRAWN, False)
        # then the winners are the documented draw over the public list, written once
        winners = [w.reservation_id for w in LotteryWinner.select().order_by(LotteryWinner.rank)]
        assert winners == reference_draw(seed, session.id, ids, 2)
        public = lottery.public_state(session.id)
        assert public["seed"] == seed.hex() and public["winners"] == winners and public["reservations"] == 6
        assert public["list_hash"] == hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()
        entries = list(audit.AuditEntry.select().where(audit.AuditEntry.action == "live.lottery_draw"))
        assert [e.request_key for e in entries] == [f"lottery-draw:{session.id}"]
        assert entries[0].after["winners"] == winners and entries[0].operator_name == lottery.SYSTEM
        assert events.Event.select().where(events.Event.topic == "live.lottery_closed").count() == 1
        assert Lottery.get(Lottery.session == session.id).sealed_seed is None


def test_below_the_threshold_there_is_no_draw(shop):
    # given 2 reservations for a threshold of 3
    session, _ = lottery_session(shop, threshold=3, prizes=1)
    reserve_many(session.id, 2)
    with db.connection_context():
        # when the lottery closes / then no winner, and the page says below_threshold
        assert lottery.run_draw(session.id, now=utcnow() + AFTER_START) == (LotteryState.BELOW_THRESHOLD, True)
        assert LotteryWinner.select().count() == 0
        public = lottery.public_state(session.id)
    assert public["state"] == "below_threshold" and public["reservations"] == 2 and public["seed"]


def test_a_cancelled_session_closes_its_lottery_without_a_draw(shop):
    # given a lottery with enough reservations, then the session is cancelled
    session, _ = lottery_session(shop, threshold=1, prizes=1)
    reserve_many(session.id, 3)
    with db.connection_context():
        live.cancel(None, session.id, actor="operator:test")
        # when due lotteries are looked for (before T-0 even) / then it closes as cancelled
        assert lottery.due(utcnow(), dt.timedelta(seconds=5)) == [session.id]
        assert lottery.run_draw(session.id) == (LotteryState.CANCELLED, True)
        assert LotteryWinner.select().count() == 0 and lottery.due(utcnow() + AFTER_START, dt.timedelta()) == []


def test_a_lottery_is_due_after_its_start_and_the_delay_or_once_live(shop):
    # given a lottery starting in an hour
    session, _ = lottery_session(shop)
    delay = dt.timedelta(seconds=5)
    with db.connection_context():
        start = LiveSession.get_by_id(session.id).scheduled_at
        # then it is not due before T-0 + delay, and due after
        assert lottery.due(start + dt.timedelta(seconds=4), delay) == []
        assert lottery.due(start + dt.timedelta(seconds=5), delay) == [session.id]
        # and when the creator goes live early, reservations are closed: due at once
        live.go_live(None, session.id, actor="operator:test")
        assert lottery.due(utcnow(), delay) == [session.id]


# ---- prizes through the order pipeline --------------------------------------------------------

def test_a_prize_is_a_zero_price_order_paid_free_once(shop):
    # given a drawn lottery
    session, prize = lottery_session(shop, threshold=1, prizes=1)
    reserve_many(session.id, 1)
    with db.connection_context():
        lottery.run_draw(session.id, now=utcnow() + AFTER_START)
        winner = LotteryWinner.get()
        # when the prize is granted twice
        first = lottery.grant_prize(winner, POLICY)
        again = lottery.grant_prize(LotteryWinner.get_by_id(winner.id), POLICY)
        # then one zero-price order for the prize SKU, paid by the free method, no ledger entry
        assert again.id == first.id and Order.select().count() == 1
        order = Order.get_by_id(first.id)
        assert (order.sku_id, order.amount_fen, order.markup_fen, order.status) == (prize.id, 0, 0, "paid")
        assert order.user_id == winner.user_id
        assert order.idempotency_key == f"lottery:{session.id}:{winner.reservation_id}"
        assert Payment.get(Payment.order == order.id).provider == payments.FREE_PROVIDER
        assert ledger.LedgerTransaction.select().count() == 0
        assert LotteryWinner.get_by_id(winner.id).order_id == order.id


def test_a_prize_out_of_stock_waits_with_its_reason(shop):
    # given a drawn lottery whose prize keys were all sold meanwhile
    session, prize = lottery_session(shop, threshold=1, prizes=1, keys=1)
    reserve_many(session.id, 1)
    with db.connection_context():
        orders.place_order(buyer("other"), OrderRequest(prize.code, 1), POLICY, client_ip="10.0.0.9")
        lottery.run_draw(session.id, now=utcnow() + AFTER_START)
        winner = LotteryWinner.get()
        # when granting / then nothing is written but the reason, for the next try
        assert lottery.grant_prize(winner, POLICY) is None
        assert Order.select().count() == 1
        assert LotteryWinner.get_by_id(winner.id).last_error.startswith("out_of_stock")
        assert lottery.open_winners() == [LotteryWinner.get_by_id(winner.id)]


def test_a_fixed_price_ignores_the_markup_and_pay_free_refuses_a_priced_order(shop):
    # given a card SKU and a creator with a markup on it
    sku = shop.card_sku(keys=3, price=1990)
    seller = creator()
    with db.connection_context():
        from models.network import CreatorPrice

        CreatorPrice.create(creator=seller.id, sku_id=sku.id, markup_fen=100)
        # when placed through the creator's ref at a fixed price of 0 / then nothing is charged
        free, _ = orders.place_order(buyer(), OrderRequest(sku.code, 1, ref=seller.code), POLICY,
                                     client_ip="10.0.0.1", price_fen=0)
        assert (free.amount_fen, free.markup_fen, free.seller_id) == (0, 0, seller.id)
        with pytest.raises(InvalidInput):
            orders.place_order(buyer(), OrderRequest(sku.code, 1), POLICY, client_ip="10.0.0.1", price_fen=-1)
        # and a priced order cannot be confirmed free
        priced, _ = orders.place_order(buyer(), OrderRequest(sku.code, 1), POLICY, client_ip="10.0.0.1")
        with pytest.raises(InvalidState):
            payments.pay_free(priced.id, actor="test")
        assert Order.get_by_id(priced.id).status == "pending"


def test_refunding_a_prize_moves_no_money(shop, rt):
    # given a granted prize
    session, _ = lottery_session(shop, threshold=1, prizes=1)
    reserve_many(session.id, 1)
    with db.connection_context():
        lottery.run_draw(session.id, now=utcnow() + AFTER_START)
        order = lottery.grant_prize(LotteryWinner.get(), POLICY)
        # when an operator refunds it / then it is refunded without the gateway and the ledger
        refund = payments.refund_order(order.id, rt.gateway, actor="operator:test", reason="test")
        assert refund.state == "succeeded" and refund.provider_ref.startswith("free-")
        assert Order.get_by_id(order.id).status == "refunded"
        assert ledger.LedgerTransaction.select().count() == 0
        assert reservations.count(session.id) == 1


def test_the_list_streams_in_keyset_chunks(shop):
    # given 5 reservations / when streamed 2 at a time, twice / then the same ascending list
    session, _ = lottery_session(shop)
    ids = reserve_many(session.id, 5)
    with db.connection_context():
        stream = lottery.ReservationIds(session.id, chunk=2)
        assert list(stream) == ids and list(stream) == ids
