"""Risk review cases on both backends: one open case per creator that items join, the evidence
of a case, and the decisions: clear (holds lifted, release pays), confirm (reversal and a
clawback into debt that later releases net, withdrawals under review refused), allowlist
(an end date required; the scorer then skips the creator), each decided once."""

from __future__ import annotations

import datetime as dt

import pytest

from models import ledger, reversals, risk_cases, risk_scoring, withdrawals
from models.chat import OutboundMessage
from models.db import db, utcnow
from models.errors import Conflict, InvalidInput, NotFound
from models.events import Event
from models.orders import Order
from models.risk_cases import CaseItem
from models.risk_tables import RiskAllow, RiskCase, RiskCaseHit, RiskHit, RiskOrderScore, RiskPenalty, RiskSignal
from models.withdrawals import Method, WithdrawPolicy
from tests.books import assert_books_clean, bucket, lines_of, release, settle, state_of
from tests.factories import buyer, chain, earn, held_case, linked, make_sku, paid_order, risk_hit

OPERATOR = "operator:7"
NO_REVIEW = WithdrawPolicy(min_fen=100, fee_bp=0, delay_hours=0, review_above_fen=10**9)


def _case(case_id: int) -> RiskCase:
    with db.connection_context():
        return RiskCase.get_by_id(case_id)


def _held(order_id: int) -> bool:
    with db.connection_context():
        return Order.get_by_id(order_id).risk_hold


def _topics(prefix: str) -> list[str]:
    with db.connection_context():
        return [e.topic for e in Event.select().where(Event.topic.startswith(prefix)).order_by(Event.id)]


# -- attach --------------------------------------------------------------------------------------

def test_attach_opens_one_case_per_creator_and_later_items_join_it(rt):
    # given two creators with hits on their orders
    a, b = chain(1, 1)
    hits_a = [risk_hit("circular_buying", "order", 900 + i, creator_id=a.id) for i in range(2)]
    hit_b = risk_hit("burst_orders", "order", 950, creator_id=b.id)
    # when the scorer attaches three items in one batch
    with db.connection_context():
        opened = risk_cases.attach([CaseItem(a.id, "hold", 50, [hits_a[0]], 300),
                                    CaseItem(a.id, "hold", 50, [hits_a[1]], 200),
                                    CaseItem(b.id, "hold", 50, [hit_b], 100)])
    # then each creator has one open case with the items summed
    assert opened == 2
    with db.connection_context():
        (case_a,) = risk_cases.find_cases(creator_id=a.id)
        (case_b,) = risk_cases.find_cases(creator_id=b.id)
    assert (case_a.subject_kind, case_a.subject_id, case_a.score, case_a.held_fen, case_a.outcome) == \
        ("creator", a.id, 100, 500, "hold")
    assert (case_b.score, case_b.held_fen) == (50, 100)
    assert _topics("risk.case_opened") == ["risk.case_opened"] * 2
    # when a later batch brings a review item for A, and the first batch's item again (a re-run)
    later = risk_hit("new_account_big", "order", 903, creator_id=a.id)
    with db.connection_context():
        again = risk_cases.attach([CaseItem(a.id, "review", 80, [later], 1000),
                                   CaseItem(a.id, "hold", 50, [hits_a[0]], 300)])
    # then it joins the open case: no new case, the review outcome wins, the repeat adds nothing
    assert again == 0
    case_a = _case(case_a.id)
    assert (case_a.score, case_a.held_fen, case_a.outcome) == (180, 1500, "review")
    with db.connection_context():
        assert RiskCaseHit.select().where(RiskCaseHit.case_id == case_a.id).count() == 3
        assert risk_cases.codes_of([case_a.id]) == {case_a.id: ["circular_buying", "new_account_big"]}
        assert [c.id for c in risk_cases.find_cases(state=None)] == sorted([case_a.id, case_b.id], reverse=True)


def test_a_decided_case_is_not_joined_a_new_one_opens(rt):
    # given a creator whose case was cleared
    (a,) = chain(1)
    with db.connection_context():
        risk_cases.attach([CaseItem(a.id, "hold", 50, [risk_hit("burst_orders", "order", 1, creator_id=a.id)])])
        first = risk_cases.find_cases(creator_id=a.id)[0]
        risk_cases.clear(first.id, actor=OPERATOR, note="家人共用网络")
        # when a new item comes for the creator
        opened = risk_cases.attach([CaseItem(a.id, "hold", 50,
                                             [risk_hit("burst_orders", "order", 2, creator_id=a.id)])])
        # then a second case is opened; the first stays cleared
        assert opened == 1
        cases = risk_cases.find_cases(state=None, creator_id=a.id)
    assert [c.state for c in cases] == ["open", "cleared"]


def test_attach_rejects_an_allow_outcome_and_writes_nothing(rt):
    (a,) = chain(1)
    with db.connection_context(), pytest.raises(ValueError):
        risk_cases.attach([CaseItem(a.id, "hold", 50), CaseItem(a.id, "allow", 0)])
    with db.connection_context():
        assert RiskCase.select().count() == 0


# -- reading -------------------------------------------------------------------------------------

def test_evidence_shows_hits_orders_identities_neighbours_and_a_small_graph(rt, shop):
    # given two orders of a seller placed by two buyers on one device, a third user on that device
    up, seller = chain(2, 1)
    sku = make_sku(shop)
    orders = [paid_order(seller, sku) for _ in range(2)]
    buyers = [buyer(f"ev-buyer-{i}") for i in range(3)]
    with db.connection_context():
        for order_id, user in zip(orders, buyers, strict=False):
            Order.update(user=user.id).where(Order.id == order_id).execute()
            RiskSignal.create(event="order", order_id=order_id, user_id=user.id, ip_hash="a" * 32,
                              ip_net="10.1.2", device_hash="d" * 32, payer_hash="p" * 32)
        RiskSignal.create(event="claim", user_id=buyers[2].id, device_hash="d" * 32, ref="coupon:1")
    settle(rt)
    withdrawal = _wallet(seller, 5_000, review=True)
    case_id = held_case(seller, orders, withdrawal_ids=(withdrawal.id,))
    # when the case's evidence is read
    with db.connection_context():
        ev = risk_cases.evidence(case_id)
    # then it has the hits with their rule versions, the orders with money, the withdrawal
    assert sorted(h["code"] for h in ev.hits) == ["circular_buying", "circular_buying", "withdrawal_first"]
    assert all(h["version"] == 1 for h in ev.hits)
    assert [o["id"] for o in ev.orders] == orders
    assert all(o["risk_hold"] and o["settlement"] == "pending" and o["creator_fen"] > 0 for o in ev.orders)
    assert ev.held_fen == sum(o["commission_fen"] for o in ev.orders) > 0
    assert [w["id"] for w in ev.withdrawals] == [withdrawal.id]
    # and the identities by short hash only, the device's neighbours including the third user
    kinds = {i["kind"]: i for i in ev.identities}
    assert set(kinds) == {"ip", "device", "payer"}
    assert kinds["ip"]["label"] == "10.1.2.x · aaaaaaaa"
    assert kinds["device"]["users"] == sorted(u.id for u in buyers)
    assert "a" * 32 not in repr(ev.identities) and "d" * 32 not in repr(ev.graph)
    # and a graph ECharts can draw: the creator, orders, buyers, identities, linked up
    ids = {n["id"] for n in ev.graph["nodes"]}
    assert {f"creator:{seller.id}", f"order:{orders[0]}", f"user:{buyers[2].id}", "device:dddddddd"} <= ids
    assert len(ids) <= 60
    assert {c["name"] for c in ev.graph["categories"]} >= {n["category"] for n in ev.graph["nodes"]}
    assert all(lk["source"] in ids and lk["target"] in ids for lk in ev.graph["links"])
    assert up.id not in {o["seller"] for o in ev.orders}


def test_unknown_case_is_not_found(rt):
    with db.connection_context():
        for call in (lambda: risk_cases.get_case(404), lambda: risk_cases.evidence(404),
                     lambda: risk_cases.clear(404, actor=OPERATOR, note="x"),
                     lambda: risk_cases.assign(404, "amy", actor=OPERATOR)):
            with pytest.raises(NotFound) as err:
                call()
            assert err.value.code == "case_not_found"


def test_assign_and_unassign(rt):
    (a,) = chain(1)
    with db.connection_context():
        risk_cases.attach([CaseItem(a.id, "hold", 50, [risk_hit("burst_orders", "order", 1, creator_id=a.id)])])
        case_id = risk_cases.find_cases(creator_id=a.id)[0].id
        assert risk_cases.assign(case_id, "amy", actor=OPERATOR).assignee == "amy"
        assert [c.id for c in risk_cases.find_cases(assignee="amy")] == [case_id]
        assert risk_cases.assign(case_id, None, actor=OPERATOR).assignee is None
    assert _topics("risk.case_assigned") == ["risk.case_assigned"] * 2


# -- clear ---------------------------------------------------------------------------------------

def test_clear_lifts_the_holds_and_release_then_makes_the_commission_available(rt, shop):
    # given a held case on three settled orders, one of which an operator had held by hand
    (seller,) = chain(1)
    sku = make_sku(shop)
    orders = [paid_order(seller, sku) for _ in range(3)]
    settle(rt)
    with db.connection_context():
        reversals.hold(orders[2], held=True, actor="operator:9", reason="客户投诉")
    case_id = held_case(seller, orders)
    # when release runs, nothing of the case's orders becomes available
    release(rt)
    assert bucket(seller, "available") == 0 and state_of(orders[0]) == "pending"
    # when an operator clears the case
    with db.connection_context():
        cleared = risk_cases.clear(case_id, actor=OPERATOR, note="  同一家庭，正常购买  ")
    # then the risk holds are lifted, the operator's own hold stays, the decision is recorded
    assert (cleared.state, cleared.decided_by, cleared.decision_note) == ("cleared", OPERATOR, "同一家庭，正常购买")
    assert (_held(orders[0]), _held(orders[1]), _held(orders[2])) == (False, False, True)
    assert _topics("risk.case_cleared") == ["risk.case_cleared"]
    # and the next release pays the two orders' commission
    assert release(rt) == 2
    assert bucket(seller, "available") > 0 and state_of(orders[2]) == "pending"
    assert_books_clean()


def test_a_case_is_decided_once_and_a_note_is_required(rt, shop):
    (seller,) = chain(1)
    order = paid_order(seller, make_sku(shop))
    settle(rt)
    case_id = held_case(seller, [order])
    with db.connection_context():
        # a decision without a note (or one too long) is refused, nothing written
        for note in ("", "   ", "x" * 501):
            with pytest.raises(InvalidInput):
                risk_cases.clear(case_id, actor=OPERATOR, note=note)
        assert _case(case_id).state == "open" and _held(order)
        risk_cases.clear(case_id, actor=OPERATOR, note="ok")
        before = Event.select().count()
        # when it is decided again, any way
        for decide in (lambda: risk_cases.clear(case_id, actor=OPERATOR, note="again"),
                       lambda: risk_cases.confirm(case_id, actor=OPERATOR, note="again"),
                       lambda: risk_cases.allowlist(case_id, actor=OPERATOR, note="again",
                                                    until=utcnow() + dt.timedelta(days=3)),
                       lambda: risk_cases.assign(case_id, "amy", actor=OPERATOR)):
            with pytest.raises(Conflict) as err:
                decide()
            assert err.value.code == "case_decided"
        # then nothing more was written: the order was never reversed
        assert Event.select().count() == before
        assert RiskAllow.select().count() == 0
    assert state_of(order) == "pending" and _case(case_id).state == "cleared"


# -- confirm -------------------------------------------------------------------------------------

def _wallet(creator, amount: int, *, review: bool = False) -> withdrawals.Withdrawal:  # noqa: ANN001
    earn(creator, amount)
    policy = WithdrawPolicy(min_fen=100, fee_bp=0, delay_hours=0, review_above_fen=0 if review else 10**9)
    with db.connection_context():
        return withdrawals.request_withdrawal(creator, amount, Method.WALLET, policy=policy)


def test_confirm_claws_back_commission_already_withdrawn_into_a_debt_that_later_releases_net(rt, shop):
    # given a seller (under a parent) whose order's commission was released and withdrawn
    parent, seller = chain(2, 1)
    sku = make_sku(shop)
    order = paid_order(seller, sku)
    settle(rt)
    release(rt)
    earned = bucket(seller, "available")
    assert earned > 0
    with db.connection_context():
        withdrawals.request_withdrawal(seller, earned, Method.WALLET, policy=NO_REVIEW)
    assert bucket(seller, "available") == 0
    # and a case found on that order afterwards (refund abuse names it)
    hit = risk_hit("refund_abuse", "creator", seller.id, creator_id=seller.id, period="2026-12-07",
                   evidence={"orders": [order]})
    with db.connection_context():
        risk_cases.attach([CaseItem(seller.id, "hold", 50, [hit])])
        case_id = risk_cases.find_cases(creator_id=seller.id)[0].id
        # when an operator confirms it
        done = risk_cases.confirm(case_id, actor=OPERATOR, note="自买自卖，已核实")
    # then the commission is clawed back from available: the seller and the parent owe it
    assert done.state == "confirmed" and state_of(order) == "clawed_back"
    assert bucket(seller, "available") == -earned
    with db.connection_context():
        assert withdrawals.balances(seller.id)["debt_fen"] == earned
        # and a withdrawal is refused while in debt
        with pytest.raises(Conflict) as err:
            withdrawals.request_withdrawal(seller, 100, Method.CREDIT, policy=NO_REVIEW)
        assert err.value.code == "in_debt"
        (clawback,) = RiskPenalty.select().where(RiskPenalty.kind == "clawback")
        assert clawback.case_id == case_id and f'"fen": {earned}' in clawback.detail
    assert bucket(parent, "available") == 0  # released, never withdrawn, clawed back
    # when a later honest sale is released
    later = paid_order(seller, sku, amount=30_000, cost=10_000)
    settle(rt, order_ids=[later])
    release(rt)
    # then it nets the debt
    assert bucket(seller, "available") == -earned + sum(v for (c, _), v in lines_of(later).items() if c == seller.id)
    assert_books_clean()


def test_confirm_refuses_the_cases_withdrawals_under_review_and_the_money_nets_the_clawback(rt, shop):
    # given a seller with pending commission on a held order and 500 yuan withdrawn under review
    (seller,) = chain(1)
    order = paid_order(seller, make_sku(shop))
    settle(rt)
    pending = bucket(seller, "pending")
    withdrawal = _wallet(seller, 50_000, review=True)
    case_id = held_case(seller, [order], withdrawal_ids=(withdrawal.id,))
    assert _case(case_id).outcome == "review"
    # when the case is confirmed
    with db.connection_context():
        risk_cases.confirm(case_id, actor=OPERATOR, note="首次提现即异常")
        w = withdrawals.get_withdrawal(withdrawal.id)
    # then the pending commission is reversed and the withdrawal rejected back to available
    assert state_of(order) == "reversed" and bucket(seller, "pending") == 0 and pending > 0
    assert (w.state, w.reviewed_by) == ("rejected", OPERATOR)
    assert bucket(seller, "available") == 50_000 and bucket(seller, "withdrawing") == 0
    with db.connection_context():
        assert ledger.unbalanced_transactions() == []  # (the test's `earn` is no settled sale: no verify)


def test_confirm_tells_the_creator_in_chat_politely(rt, shop):
    # given a seller reachable on Telegram with a confirmed case
    (seller,) = chain(1)
    with db.connection_context():
        user = seller.user
    linked(user, telegram="777001")
    order = paid_order(seller, make_sku(shop))
    settle(rt)
    case_id = held_case(seller, [order])
    with db.connection_context():
        risk_cases.confirm(case_id, actor=OPERATOR, note="刷单")
        rows = list(OutboundMessage.select().where(OutboundMessage.key.startswith("risk:")))
    # then one message for the case is in the outbox for the creator's chat, in Chinese, no codes
    assert [(r.key, r.platform, r.chat_id, r.state) for r in rows] == [
        (f"risk:case:{case_id}:confirmed", "telegram", "777001", "pending")]
    text = rows[0].payload["text"]
    assert "佣金" in text and "客服" in text and "circular" not in text and "case" not in text


# -- allowlist -----------------------------------------------------------------------------------

def test_allowlist_needs_a_future_end_date_within_a_year_and_known_rules(rt, shop):
    (seller,) = chain(1)
    order = paid_order(seller, make_sku(shop))
    settle(rt)
    case_id = held_case(seller, [order])
    now = utcnow()
    with db.connection_context():
        for until, codes, code in ((None, None, "until_required"),
                                   (now - dt.timedelta(minutes=1), None, "until_required"),
                                   ("2027-01-01", None, "until_required"),
                                   (now + dt.timedelta(days=400), None, "until_too_far"),
                                   (now + dt.timedelta(days=30), ["no_such_rule"], "unknown_rule"),
                                   (now + dt.timedelta(days=30), [], "codes_required")):
            with pytest.raises(InvalidInput) as err:
                risk_cases.allowlist(case_id, actor=OPERATOR, note="大客户", until=until, codes=codes)
            assert err.value.code == code
        # then nothing was written
        assert RiskAllow.select().count() == 0
    assert _case(case_id).state == "open" and _held(order)


def test_allowlist_clears_the_case_and_the_scorer_skips_the_creator_until_the_date(rt, shop):
    # given a case whose hits are circular_buying
    (seller,) = chain(1)
    sku = make_sku(shop)
    order = paid_order(seller, sku)
    settle(rt)
    case_id = held_case(seller, [order])
    until = utcnow() + dt.timedelta(days=30)
    # when the operator allowlists it
    with db.connection_context():
        done = risk_cases.allowlist(case_id, actor=OPERATOR, note="团队内部福利采购", until=until)
        (allow,) = risk_cases.allows(creator_id=seller.id)
    # then the creator may skip the rule that fired until the date, and the hold is lifted
    assert done.state == "allowlisted" and not _held(order)
    assert (allow.subject_kind, allow.subject_id, allow.rule_code) == ("creator", seller.id, "circular_buying")
    assert abs(allow.until - until) < dt.timedelta(seconds=1)
    # when the seller's new sales would be a burst of one buyer's device (fires circular_buying)
    fresh = _burst_of_team_orders(rt, seller, sku)
    with db.connection_context():
        risk_scoring.score_pending(risk_scoring.Thresholds(), order_ids=fresh)
        codes = {h.code for h in RiskHit.select().where((RiskHit.subject_kind == "order")
                                                        & RiskHit.subject_id.in_(fresh))}
        assert RiskOrderScore.select().where(RiskOrderScore.order_id.in_(fresh)).count() == len(fresh)
    # then the allowlisted rule does not fire on them, while it fires on the same pattern elsewhere
    assert "circular_buying" not in codes
    (other,) = chain(1, prefix="other")
    control = _burst_of_team_orders(rt, other, sku)
    with db.connection_context():
        risk_scoring.score_pending(risk_scoring.Thresholds(), order_ids=control)
        assert RiskHit.select().where((RiskHit.code == "circular_buying") & RiskHit.subject_id.in_(control)).count()
    # when the entry is revoked, it is no longer in force
    with db.connection_context():
        risk_cases.revoke_allow(allow.id, actor=OPERATOR)
        risk_cases.revoke_allow(allow.id, actor=OPERATOR)  # a second revoke changes nothing
        assert risk_cases.allows(creator_id=seller.id) == []
        with pytest.raises(NotFound) as err:
            risk_cases.revoke_allow(9999, actor=OPERATOR)
        assert err.value.code == "allow_not_found"
    assert _topics("risk.allow_revoked") == ["risk.allow_revoked"]


def _burst_of_team_orders(rt, seller, sku) -> list[int]:  # noqa: ANN001
    """Three settled orders of `seller` bought by the seller's own team on one device."""
    from tests.factories import creator

    team = [creator(f"team-{seller.id}-{i}", parent=seller) for i in range(3)]
    made = []
    with db.connection_context():
        for member in team:
            order_id = paid_order(seller, sku)
            Order.update(user=member.user_id).where(Order.id == order_id).execute()
            RiskSignal.create(event="order", order_id=order_id, user_id=member.user_id, ip_hash="b" * 32,
                              ip_net="10.9.9", device_hash="e" * 32, at=utcnow())
            made.append(order_id)
    settle(rt, order_ids=made)
    return made


def test_ledger_unchanged_by_a_clear(rt, shop):
    (seller,) = chain(1)
    order = paid_order(seller, make_sku(shop))
    settle(rt)
    case_id = held_case(seller, [order])
    with db.connection_context():
        before = ledger.LedgerTransaction.select().count()
        risk_cases.clear(case_id, actor=OPERATOR, note="ok")
        assert ledger.LedgerTransaction.select().count() == before
