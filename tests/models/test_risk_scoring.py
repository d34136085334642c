"""Risk scoring of paid orders on both backends: every default order rule fires on its pattern
and not on its honest look-alike, outcomes hold or review the order (its commission stays
pending through release) and reach the seller's case, self-purchase voids the matched
beneficiary's commission only, the allowlist skips a rule, a re-run scores nothing twice, and
a rule edit leaves past hits as they were."""

from __future__ import annotations

import datetime as dt
import json

from models import risk_rules, settlement
from models.db import db, utcnow
from models.orders import Order
from models.risk_tables import RiskCase, RiskCaseHit, RiskHit, RiskOrderScore
from tests.books import assert_books_clean, bucket, lines_of, release, settle, state_of
from tests.factories import allow, chain, creator, hits_of, make_sku, outcome_of, risk_buy, score, shopper

AGO = dt.timedelta(hours=2)


def held(order_id: int) -> bool:
    with db.connection_context():
        return Order.get_by_id(order_id).risk_hold


def open_case(creator_id: int) -> RiskCase | None:
    with db.connection_context():
        return RiskCase.get_or_none((RiskCase.creator_id == creator_id) & (RiskCase.state == "open"))


# -- self-purchase ------------------------------------------------------------------------------

def test_a_seller_buying_through_their_own_link_earns_nothing_while_the_uplines_keep_theirs(rt, shop):
    # given a chain parent -> seller, and the seller's own account buying through the seller's link
    up1, seller = chain(2, 1)
    with db.connection_context():
        me = seller.user
    sku = make_sku(shop)
    order = risk_buy(seller, sku, me, ip="10.1.1.1")
    # when it is settled and scored
    result = score(rt)
    # then the seller's lines are voided (a void line of minus their net), the upline's stand,
    # the order is neither held nor under review, and the books balance
    assert result.orders == 1 and result.voided == 1
    assert lines_of(order) == {(seller.id, "sale"): 1000, (seller.id, "void"): -1000, (up1.id, "team1"): 550}
    assert bucket(seller, "pending") == 0 and bucket(up1, "pending") == 550
    assert hits_of(order)["self_purchase"]["beneficiaries"] == [{"creator_id": seller.id, "how": ["user"]}]
    assert outcome_of(order) == (0, "allow") and not held(order)
    assert_books_clean()
    # and release makes only the upline's money available
    assert release(rt) == 1
    assert (bucket(seller, "available"), bucket(up1, "available")) == (0, 550)
    assert_books_clean()


def test_an_upline_buying_with_the_same_phone_or_device_loses_their_share_only(rt, shop):
    # given grandparent -> parent -> seller; the parent's phone and the grandparent's device
    top, up1, seller = chain(4, 2, 1)
    shopper(openid=None, phone="13800138000")  # someone else entirely
    alt = shopper(phone="13912345678")  # the parent's second account: same phone
    with db.connection_context():
        from models.risk_tables import RiskUser

        RiskUser.insert(user_id=up1.user_id, phone_hash=RiskUser.get_by_id(alt.id).phone_hash,
                        phone_seg="139").execute()
    with db.connection_context():
        top_user = top.user
    sku = make_sku(shop)
    risk_buy(None, sku, top_user, device="top-phone")  # the grandparent's device seen on their own user
    by_phone = risk_buy(seller, sku, alt, device="alt-phone")
    by_device = risk_buy(seller, sku, shopper(), device="top-phone")
    # when scored
    score(rt)
    # then the parent earns nothing on the first order, the grandparent nothing on the second
    assert hits_of(by_phone)["self_purchase"]["beneficiaries"] == [{"creator_id": up1.id, "how": ["phone"]}]
    assert hits_of(by_device)["self_purchase"]["beneficiaries"] == [{"creator_id": top.id, "how": ["device"]}]
    assert sum(v for (c, _), v in lines_of(by_phone).items() if c == up1.id) == 0
    assert sum(v for (c, _), v in lines_of(by_device).items() if c == top.id) == 0
    assert bucket(seller, "pending") == 2000
    assert_books_clean()


def test_a_stranger_buying_from_a_creator_is_no_self_purchase(rt, shop):
    up1, seller = chain(2, 1)
    order = risk_buy(seller, make_sku(shop), shopper(unionid="u-stranger", phone="13800000001"),
                     ip="10.2.2.2", device="stranger")
    score(rt)
    assert hits_of(order) == {} and outcome_of(order) == (0, "allow")
    assert bucket(seller, "pending") == 1000


def test_a_voided_order_later_refunded_reverses_cleanly(rt, shop):
    from models import reversals

    up1, seller = chain(2, 1)
    with db.connection_context():
        me = seller.user
    order = risk_buy(seller, make_sku(shop), me)
    score(rt)
    with db.connection_context():
        Order.update(status="refunded").where(Order.id == order).execute()
        reversals.reverse_refunded()
    assert state_of(order) == "reversed"
    assert bucket(seller, "pending") == 0 and bucket(up1, "pending") == 0
    assert_books_clean()


# -- circular buying ----------------------------------------------------------------------------

def test_a_team_buying_from_one_device_within_a_week_is_held(rt, shop):
    # given creator X with two direct members, who with X buy 3 orders on one device in 3 days
    x = creator("circle-x", rank=2)
    a, b = creator("circle-a", parent=x), creator("circle-b", parent=x)
    sku = make_sku(shop)
    start = utcnow() - dt.timedelta(days=4)
    with db.connection_context():
        users = [c.user for c in (x, a, b)]
    ids = [risk_buy(a, sku, u, at=start + dt.timedelta(days=i), device="team-phone", ip=f"10.3.0.{i}")
           for i, u in enumerate(users)]
    # when scored
    score(rt)
    # then every one of them is hit, held, and in the seller's case
    for oid in ids:
        ev = hits_of(oid)["circular_buying"]
        assert ev["team_of"] == x.id and ev["orders"] == ids
        assert ev["shared"][0]["kind"] == "device"
        assert outcome_of(oid) == (50, "hold") and held(oid)
    case = open_case(a.id)
    assert case is not None and case.outcome == "hold"
    with db.connection_context():
        assert RiskCaseHit.select().where(RiskCaseHit.case_id == case.id).count() >= 3


def test_a_loyal_outside_buyer_ordering_thrice_from_their_own_device_is_not_circular(rt, shop):
    x = creator("loyal-x", rank=2)
    a = creator("loyal-a", parent=x)
    fan = shopper()
    sku = make_sku(shop)
    start = utcnow() - dt.timedelta(days=3)
    ids = [risk_buy(a, sku, fan, at=start + dt.timedelta(days=i), device="fan-phone") for i in range(3)]
    score(rt)
    assert all(hits_of(oid) == {} for oid in ids)
    assert not any(held(oid) for oid in ids)


# -- bursts -------------------------------------------------------------------------------------

def test_ten_orders_from_one_ip_in_ten_minutes_are_all_held(rt, shop):
    (seller,) = chain(1)
    sku = make_sku(shop)
    start = utcnow() - AGO
    ids = [risk_buy(seller, sku, shopper(), at=start + dt.timedelta(seconds=50 * i), ip="10.9.9.9")
           for i in range(10)]
    lone = risk_buy(seller, sku, shopper(), at=start + dt.timedelta(minutes=30), ip="10.9.9.9")
    score(rt)
    for oid in ids:
        assert hits_of(oid)["burst_orders"]["shared"] == [
            {"kind": "ip", "hash": hits_of(oid)["burst_orders"]["shared"][0]["hash"], "count": 10}]
        assert outcome_of(oid) == (50, "hold") and held(oid)
    # an order on that IP twenty minutes after the burst is not part of it
    assert hits_of(lone) == {} and not held(lone)


def test_family_members_sharing_an_ip_once_are_not_a_burst(rt, shop):
    (seller,) = chain(1)
    sku = make_sku(shop)
    at = utcnow() - AGO
    ids = [risk_buy(seller, sku, shopper(), at=at + dt.timedelta(seconds=i), ip="192.168.1.20") for i in range(2)]
    score(rt)
    assert all(hits_of(oid) == {} for oid in ids)


def test_five_new_accounts_ordering_from_one_device_are_held_but_old_ones_are_not(rt, shop):
    (seller,) = chain(1)
    sku = make_sku(shop)
    start = utcnow() - AGO
    young = [risk_buy(seller, sku, shopper(age_hours=5), at=start + dt.timedelta(minutes=i), device="farm")
             for i in range(5)]
    old = [risk_buy(seller, sku, shopper(), at=start + dt.timedelta(minutes=i), device="office") for i in range(5)]
    score(rt)
    for oid in young:
        assert hits_of(oid)["burst_new_accounts"]["shared"][0]["count"] == 5
        assert held(oid)
    assert all(hits_of(oid) == {} for oid in old)


def test_three_accounts_paying_with_one_payer_within_a_day_are_held(rt, shop):
    (seller,) = chain(1)
    sku = make_sku(shop)
    start = utcnow() - dt.timedelta(hours=20)
    ids = [risk_buy(seller, sku, shopper(), at=start + dt.timedelta(hours=6 * i), payer="openid-wallet")
           for i in range(3)]
    two = [risk_buy(seller, sku, shopper(), at=start + dt.timedelta(hours=i), payer="openid-pair") for i in range(2)]
    score(rt)
    for oid in ids:
        assert hits_of(oid)["shared_payer"]["shared"][0] == {
            "kind": "payer", "hash": hits_of(oid)["shared_payer"]["shared"][0]["hash"], "count": 3}
        assert held(oid)
    assert all(hits_of(oid) == {} for oid in two)


# -- amounts and number segments ----------------------------------------------------------------

def test_a_new_account_buying_big_goes_to_review_a_genuine_big_buyer_does_not(rt, shop):
    (seller,) = chain(1)
    sku = make_sku(shop, price=80_000)
    fresh = risk_buy(seller, sku, shopper(age_hours=3), amount=80_000, cost=40_000, device="new-phone")
    regular = shopper(age_hours=24 * 200)
    genuine = [risk_buy(seller, sku, regular, amount=80_000, cost=40_000, device="own-phone",
                        at=utcnow() - dt.timedelta(days=i)) for i in range(3)]
    result = score(rt)
    assert outcome_of(fresh) == (80, "review") and held(fresh)
    assert hits_of(fresh)["new_account_big"]["amount_fen"] == 80_000
    assert all(hits_of(oid) == {} and outcome_of(oid) == (0, "allow") for oid in genuine)
    assert (result.held, result.reviewed, result.cases) == (1, 1, 1)
    case = open_case(seller.id)
    assert case.outcome == "review" and case.held_fen == 8000


def test_a_virtual_number_segment_adds_weight_but_blocks_nothing_alone(rt, shop):
    (seller,) = chain(1)
    order = risk_buy(seller, make_sku(shop), shopper(phone="17012345678"))
    score(rt)
    assert hits_of(order) == {"virtual_segment": {"segment": "170"}}
    assert outcome_of(order) == (20, "allow") and not held(order)
    assert open_case(seller.id) is None


def test_weights_add_up_a_burst_on_a_virtual_number_goes_to_review(rt, shop):
    (seller,) = chain(1)
    sku = make_sku(shop)
    start = utcnow() - AGO
    ids = [risk_buy(seller, sku, shopper(phone=f"1701234{i:04d}"), at=start + dt.timedelta(seconds=i), ip="10.8.8.8")
           for i in range(10)]
    score(rt)
    assert {outcome_of(oid) for oid in ids} == {(70, "hold")}
    with db.connection_context():
        risk_rules.update_rule("virtual_segment", actor="test", weight=30)
    more = risk_buy(seller, sku, shopper(phone="17099990000"), at=start + dt.timedelta(seconds=30), ip="10.8.8.8")
    score(rt)
    assert outcome_of(more) == (80, "review")


# -- allowlist, release, idempotency, rule versions ---------------------------------------------

def test_an_allowlisted_seller_skips_the_rule_until_the_entry_ends(rt, shop):
    # given a seller allowlisted for burst_orders, and another whose entries ended or were revoked
    (seller,) = chain(1)
    (other,) = chain(1, prefix="o")
    sku = make_sku(shop)
    allow("creator", seller.id, "burst_orders")
    allow("creator", other.id, "burst_orders", days=-1)
    allow("creator", other.id, "burst_orders")
    with db.connection_context():
        from models.risk_tables import RiskAllow

        RiskAllow.update(revoked_at=utcnow()).where(
            (RiskAllow.subject_id == other.id) & (RiskAllow.until > utcnow())).execute()
    start = utcnow() - AGO
    ids = [risk_buy(seller, sku, shopper(), at=start + dt.timedelta(seconds=i), ip="10.7.7.7") for i in range(10)]
    theirs = [risk_buy(other, sku, shopper(), at=start + dt.timedelta(seconds=i), ip="10.7.7.8") for i in range(10)]
    # when scored
    score(rt)
    # then the allowlisted seller's burst is skipped, the other's is held
    assert all(hits_of(oid) == {} and not held(oid) for oid in ids)
    assert all("burst_orders" in hits_of(oid) and held(oid) for oid in theirs)


def test_an_allowlisted_buyer_skips_the_rule(rt, shop):
    (seller,) = chain(1)
    sku = make_sku(shop, price=80_000)
    buyer = shopper(age_hours=2)
    allow("user", buyer.id, "new_account_big")
    order = risk_buy(seller, sku, buyer, amount=80_000, cost=40_000)
    score(rt)
    assert hits_of(order) == {} and outcome_of(order) == (0, "allow")


def test_held_and_unscored_orders_stay_pending_through_release_the_scored_clean_one_is_released(rt, shop):
    (seller,) = chain(1)
    sku = make_sku(shop, price=80_000)
    risky = risk_buy(seller, sku, shopper(age_hours=1), amount=80_000, cost=40_000)
    clean = risk_buy(seller, sku, shopper(), amount=80_000, cost=40_000)
    score(rt)
    unscored = risk_buy(seller, sku, shopper(), amount=80_000, cost=40_000)
    settle(rt)
    later = utcnow() + dt.timedelta(days=rt.payout.refund_window_days, seconds=5)
    with db.connection_context():
        released = settlement.release_due(rt.payout, now=later, require_scored=True)
    assert released == 1
    assert (state_of(risky), state_of(clean), state_of(unscored)) == ("pending", "available", "pending")
    assert_books_clean()


def test_scoring_again_scores_nothing_twice(rt, shop):
    (seller,) = chain(1)
    sku = make_sku(shop)
    start = utcnow() - AGO
    ids = [risk_buy(seller, sku, shopper(), at=start + dt.timedelta(seconds=i), ip="10.6.6.6") for i in range(12)]
    first = score(rt, batch=5)
    with db.connection_context():
        before = (sorted(RiskHit.select(RiskHit.subject_id, RiskHit.code, RiskHit.evidence).tuples()),
                  sorted(RiskOrderScore.select(RiskOrderScore.order_id, RiskOrderScore.score).tuples()),
                  RiskCase.select().count())
    again = score(rt)
    by_ids = score(rt, order_ids=ids)
    with db.connection_context():
        after = (sorted(RiskHit.select(RiskHit.subject_id, RiskHit.code, RiskHit.evidence).tuples()),
                 sorted(RiskOrderScore.select(RiskOrderScore.order_id, RiskOrderScore.score).tuples()),
                 RiskCase.select().count())
    assert (first.orders, first.batches, first.hits) == (12, 3, 12)
    assert again.orders == 0 and by_ids.orders == 0
    assert after == before


def test_a_rule_edit_applies_to_new_orders_and_leaves_past_hits_on_the_old_version(rt, shop):
    (seller,) = chain(1)
    sku = make_sku(shop, price=80_000)
    first = risk_buy(seller, sku, shopper(age_hours=1), amount=80_000, cost=40_000)
    score(rt)
    with db.connection_context():
        v1 = risk_rules.current()["new_account_big"]
        v2 = risk_rules.update_rule("new_account_big", actor="test", params={"min_amount_fen": 100_000}, weight=60)
    second = risk_buy(seller, sku, shopper(age_hours=1), amount=80_000, cost=40_000)
    third = risk_buy(seller, sku, shopper(age_hours=1), amount=120_000, cost=40_000)
    score(rt)
    with db.connection_context():
        old = RiskHit.get((RiskHit.subject_id == first) & (RiskHit.code == "new_account_big"))
        new = RiskHit.get((RiskHit.subject_id == third) & (RiskHit.code == "new_account_big"))
    assert (old.rule_id, old.weight, outcome_of(first)) == (v1.id, 80, (80, "review"))
    assert hits_of(second) == {}
    assert (new.rule_id, new.weight, outcome_of(third)) == (v2.id, 60, (60, "hold"))


def test_a_disabled_rule_does_not_fire(rt, shop):
    (seller,) = chain(1)
    with db.connection_context():
        risk_rules.update_rule("virtual_segment", actor="test", enabled=False)
    order = risk_buy(seller, make_sku(shop), shopper(phone="17012345678"))
    score(rt)
    assert hits_of(order) == {} and outcome_of(order) == (0, "allow")


def test_orders_without_a_seller_keep_their_hits_and_open_no_case(rt, shop):
    sku = make_sku(shop, price=80_000)
    order = risk_buy(None, sku, shopper(age_hours=1), amount=80_000, cost=40_000)
    result = score(rt)
    assert outcome_of(order) == (80, "review") and held(order)
    assert result.cases == 0
    with db.connection_context():
        assert RiskCase.select().count() == 0
        assert json.loads(RiskHit.get(RiskHit.subject_id == order).evidence)["amount_fen"] == 80_000
