"""Risk penalties on both backends: a confirmed case's downgrade (by levels or to a floor, the
lower wins, never below 0, never loosening an earlier cap), withdrawal suspension (refused by
request_withdrawal until it ends or is lifted), lifting, and the creator's chat notices."""

from __future__ import annotations

import datetime as dt

import pytest

from models import risk_cases, risk_penalties, withdrawals
from models.chat import OutboundMessage
from models.db import db, utcnow
from models.errors import Conflict, InvalidInput, NotFound
from models.events import Event
from models.network import Creator
from models.risk_cases import PenaltySpec
from models.risk_tables import RiskPenalty
from models.withdrawals import Method, WithdrawPolicy
from tests.books import settle, state_of
from tests.factories import chain, earn, fresh, held_case, linked, make_sku, paid_order

OPERATOR = "operator:3"
POLICY = WithdrawPolicy(min_fen=100, fee_bp=0, delay_hours=0, review_above_fen=10**9)


def _confirmed(rt, shop, seller: Creator, penalty: PenaltySpec | None) -> int:  # noqa: ANN001
    order = paid_order(seller, make_sku(shop))
    settle(rt, order_ids=[order])
    case_id = held_case(seller, [order])
    with db.connection_context():
        risk_cases.confirm(case_id, actor=OPERATOR, note="刷单已核实", penalty=penalty)
    return case_id


def _penalties(creator: Creator) -> dict[str, RiskPenalty]:
    with db.connection_context():
        return {p.kind: p for p in risk_penalties.history(creator.id)}


def _messages() -> dict[str, str]:
    with db.connection_context():
        rows = OutboundMessage.select().where(OutboundMessage.key.startswith("risk:"))
        return {m.key: m.payload["text"] for m in rows}


def test_confirm_with_a_downgrade_and_a_suspension_tells_the_creator_each(rt, shop):
    # given a 四星 creator reachable on Telegram
    (seller,) = chain(4)
    with db.connection_context():
        linked(seller.user, telegram="880001")
    # when a case is confirmed with a two-level downgrade and a 7-day suspension
    case_id = _confirmed(rt, shop, seller, PenaltySpec(downgrade_levels=2, suspend_days=7))
    # then the creator is 二星, capped there, withdrawals are suspended for 7 days
    after = fresh(seller)
    assert (after.rank, after.rank_cap) == (2, 2)
    made = _penalties(seller)
    assert set(made) == {"clawback", "downgrade", "suspend_withdrawals"}
    assert all(p.case_id == case_id and p.created_by == OPERATOR for p in made.values())
    assert risk_penalties.detail(made["downgrade"]) == {"from": 4, "to": 2, "cap": 2, "levels": 2, "floor": None}
    assert abs(made["suspend_withdrawals"].until - (utcnow() + dt.timedelta(days=7))) < dt.timedelta(minutes=1)
    with db.connection_context():
        assert {p.kind for p in risk_penalties.active(seller.id)} == {"downgrade", "suspend_withdrawals"}
        assert Event.select().where(Event.topic == "risk.penalty_applied").count() == 2
    # and told in chat, once per notice: the case, the downgrade, the suspension
    sent = _messages()
    assert set(sent) == {f"risk:case:{case_id}:confirmed", f"risk:penalty:{made['downgrade'].id}",
                         f"risk:penalty:{made['suspend_withdrawals'].id}"}
    assert "二星" in sent[f"risk:penalty:{made['downgrade'].id}"]
    assert "北京时间" in sent[f"risk:penalty:{made['suspend_withdrawals'].id}"]


@pytest.mark.parametrize(("rank", "spec", "expected"), [
    (5, PenaltySpec(downgrade_levels=1, downgrade_floor=2), 2),  # the lower of the two wins
    (5, PenaltySpec(downgrade_levels=3, downgrade_floor=4), 2),
    (1, PenaltySpec(downgrade_levels=3), 0),  # never below 0
    (3, PenaltySpec(downgrade_floor=5), 3),  # a floor above the rank freezes it there
])
def test_downgrade_by_levels_or_to_a_floor(rt, shop, rank, spec, expected):
    (seller,) = chain(rank)
    _confirmed(rt, shop, seller, spec)
    after = fresh(seller)
    assert after.rank == min(rank, expected) and after.rank_cap == expected


def test_a_later_downgrade_never_loosens_an_earlier_cap_and_lifting_one_keeps_the_other(rt, shop):
    # given a 五星 creator downgraded to 一星, then (a second case) to a floor of 三星
    (seller,) = chain(5)
    _confirmed(rt, shop, seller, PenaltySpec(downgrade_floor=1))
    _confirmed(rt, shop, seller, PenaltySpec(downgrade_floor=3))
    # then the cap stays at 一星
    assert (fresh(seller).rank, fresh(seller).rank_cap) == (1, 1)
    with db.connection_context():
        first, second = sorted(risk_penalties.active(seller.id), key=lambda p: p.id)
        # when the first downgrade is lifted, the second one's cap holds
        risk_penalties.lift(first.id, actor=OPERATOR, reason="申诉成功")
        assert fresh(seller).rank_cap == 1  # the second's cap was min(3, 1) when applied
        # when the second is lifted too, no cap is left
        risk_penalties.lift(second.id, actor=OPERATOR, reason="申诉成功")
    assert fresh(seller).rank_cap is None and fresh(seller).rank == 1


def test_an_invalid_penalty_is_refused_and_nothing_is_written(rt, shop):
    (seller,) = chain(3)
    order = paid_order(seller, make_sku(shop))
    settle(rt)
    case_id = held_case(seller, [order])
    with db.connection_context():
        for spec in (PenaltySpec(downgrade_levels=0), PenaltySpec(downgrade_levels=-1),
                     PenaltySpec(downgrade_floor=99), PenaltySpec(suspend_days=0), PenaltySpec(suspend_days=400),
                     PenaltySpec(downgrade_levels=True), PenaltySpec(suspend_days="7")):  # type: ignore[arg-type]
            with pytest.raises(InvalidInput) as err:
                risk_cases.confirm(case_id, actor=OPERATOR, note="x", penalty=spec)
            assert err.value.code == "invalid_penalty"
        assert RiskPenalty.select().count() == 0
        assert risk_cases.get_case(case_id).state == "open"
    assert state_of(order) == "pending" and fresh(seller).rank == 3


def test_a_suspension_refuses_withdrawals_until_lifted(rt, shop):
    # given a creator with money available and a suspension of 30 days
    (seller,) = chain(2)
    with db.connection_context():
        linked(seller.user, telegram="880002")
    _confirmed(rt, shop, seller, PenaltySpec(suspend_days=30))
    earn(seller, 50_000)
    suspension = _penalties(seller)["suspend_withdrawals"]
    with db.connection_context():
        assert risk_penalties.withdrawals_suspended(seller.id).id == suspension.id
        # when the creator asks to withdraw, it is refused, politely, with the end date
        with pytest.raises(Conflict) as err:
            withdrawals.request_withdrawal(seller, 20_000, Method.WALLET, policy=POLICY)
        assert err.value.code == "withdrawals_suspended" and "北京时间" in err.value.message
        assert withdrawals.Withdrawal.select().count() == 0
        # when an operator lifts it (a reason is required)
        with pytest.raises(InvalidInput) as bad:
            risk_penalties.lift(suspension.id, actor=OPERATOR, reason=" ")
        assert bad.value.code == "reason_required"
        lifted = risk_penalties.lift(suspension.id, actor=OPERATOR, reason="已补充材料")
        # then it ends now, and the withdrawal goes through
        assert lifted.lifted_by == OPERATOR and lifted.until <= utcnow()
        assert risk_penalties.withdrawals_suspended(seller.id) is None
        assert withdrawals.request_withdrawal(seller, 20_000, Method.WALLET, policy=POLICY).state == "approved"
        # and lifting again is a conflict
        with pytest.raises(Conflict) as again:
            risk_penalties.lift(suspension.id, actor=OPERATOR, reason="again")
        assert again.value.code == "penalty_lifted"
    assert "已解除" in _messages()[f"risk:penalty:{suspension.id}:lifted"]


def test_a_suspension_that_ran_out_no_longer_blocks(rt, shop):
    (seller,) = chain(2)
    _confirmed(rt, shop, seller, PenaltySpec(suspend_days=1))
    suspension = _penalties(seller)["suspend_withdrawals"]
    with db.connection_context():
        assert risk_penalties.withdrawals_suspended(seller.id, utcnow() + dt.timedelta(days=2)) is None
        RiskPenalty.update(until=utcnow() - dt.timedelta(seconds=1)).where(RiskPenalty.id == suspension.id).execute()
        assert risk_penalties.active(seller.id) == []
        with pytest.raises(Conflict) as err:
            risk_penalties.lift(suspension.id, actor=OPERATOR, reason="x")
        assert err.value.code == "penalty_lifted"


def test_lifting_a_downgrade_removes_the_cap_and_a_clawback_is_not_liftable(rt, shop):
    (seller,) = chain(4)
    _confirmed(rt, shop, seller, PenaltySpec(downgrade_levels=1))
    made = _penalties(seller)
    with db.connection_context():
        with pytest.raises(Conflict) as err:
            risk_penalties.lift(made["clawback"].id, actor=OPERATOR, reason="x")
        assert err.value.code == "penalty_not_liftable"
        with pytest.raises(NotFound) as missing:
            risk_penalties.lift(9999, actor=OPERATOR, reason="x")
        assert missing.value.code == "penalty_not_found"
        risk_penalties.lift(made["downgrade"].id, actor=OPERATOR, reason="误判")
        assert Event.select().where(Event.topic == "risk.penalty_lifted").count() == 1
    after = fresh(seller)
    assert (after.rank, after.rank_cap) == (3, None)  # promoted again by the next evaluation as earned
