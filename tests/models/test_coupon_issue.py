"""Making and handing out coupons (models/coupon_issue.py through models/coupons.py): an
operator's coupon validated whole, claims by code and their refusals (nothing written), bulk
issuance run twice, the campaign coupon, the wallet, an expired grant at order time (the
sweep's job: tests/tasks/test_coupon_jobs.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from models import coupons
from models.coupons import Coupon, CouponGrant, CouponScope, CouponSpec
from models.db import db, utcnow
from models.errors import Conflict, InvalidInput, NotFound
from models.events import Event
from tests.factories import buyer, coupon, coupon_state, granted, named, unpaid, with_coupons

NOW = utcnow()
BASE = CouponSpec(name="满100减10", kind="amount_off", threshold_fen=10_000, amount_off_fen=1_000,
                  starts_at=NOW - dt.timedelta(hours=1), ends_at=NOW + dt.timedelta(days=7))


@pytest.mark.parametrize(("changes", "code"), [
    ({"name": ""}, "invalid_name"),
    ({"kind": "bogo"}, "invalid_kind"),
    ({"amount_off_fen": 0}, "invalid_amount_off"),
    ({"amount_off_fen": -5}, "invalid_amount_off"),
    ({"percent_bp": 500}, "invalid_amount_off"),  # a field of another kind
    ({"kind": "percent_off", "amount_off_fen": 0, "percent_bp": 10_000}, "invalid_percent"),
    ({"kind": "percent_off", "amount_off_fen": 0, "percent_bp": 0}, "invalid_percent"),
    ({"kind": "fixed_price", "amount_off_fen": 0, "fixed_price_fen": 990}, "invalid_fixed_price"),  # shelf scope
    ({"cap_fen": 0}, "invalid_cap"),
    ({"max_uses": 0}, "invalid_max_uses"),
    ({"budget_fen": 0}, "invalid_budget"),
    ({"per_user_limit": 0}, "invalid_per_user_limit"),
    ({"grant_valid_days": 0}, "invalid_grant_valid_days"),
    ({"ends_at": NOW - dt.timedelta(hours=2)}, "invalid_window"),
    ({"code": "SHORT-1"}, "invalid_code"),
    ({"code": "中文券码中文券码中文券码"}, "invalid_code"),
    ({"scope": "category"}, "invalid_scope"),
    ({"scope": "product"}, "invalid_scope"),  # a product coupon without products
    ({"include_skus": (1,)}, "invalid_scope"),  # a shelf coupon listing what it covers
    ({"exclude_products": (999_999,)}, "invalid_scope"),  # no such product
    ({"owner_creator_id": 999_999}, "invalid_owner"),
    ({"campaign": "birthday"}, "invalid_campaign"),
    ({"threshold_fen": True}, "invalid_threshold"),
])
def test_a_coupon_that_is_not_whole_is_refused_with_its_code_and_nothing_written(rt, changes, code):  # noqa: ANN001
    # given a spec with one bad field
    spec = dataclasses.replace(BASE, **changes)
    # when an operator creates it, then it is refused naming the field, and nothing is written
    with db.connection_context():
        with pytest.raises(InvalidInput) as refused:
            coupons.create_coupon(spec, actor="operator:ann")
        assert refused.value.code == code
        assert Coupon.select().count() == 0 and CouponScope.select().count() == 0


def test_a_scoped_creator_coupon_is_created_with_its_targets_code_and_event(rt, shop):  # noqa: ANN001
    # given two SKUs of one product and another product, and a creator
    sku = shop.card_sku(code="SCOPE-A")
    other = shop.card_sku(code="SCOPE-B")
    owner = named()
    # when a product-scoped creator coupon excluding one SKU is created with a messy code
    made = coupon(name="主播专享", scope="product", include_products=(sku.product_id,),
                  exclude_skus=(other.id,), owner_creator_id=owner.id, code=" qx-2026 spring ")
    with db.connection_context():
        # then its code is normalized, its targets stored, and the creation recorded
        assert Coupon.get_by_id(made.id).code == "QX2026SPRING"
        assert sorted((t.target, t.target_id, t.exclude) for t in CouponScope.select()) == [
            ("product", sku.product_id, False), ("sku", other.id, True)]
        assert Event.select().where(Event.topic == "coupon.created").count() == 1
        # and the same code again is a conflict
        with pytest.raises(Conflict) as taken:
            coupons.create_coupon(dataclasses.replace(BASE, code="QX 2026 SPRING"), actor="test")
        assert taken.value.code == "coupon_code_taken" and Coupon.select().count() == 1


@pytest.mark.parametrize(("typed", "stored"), [
    (" qx-2026 spring ", "QX2026SPRING"),
    ("ＱＸ２０２６ＳＰＲＩＮＧ", "QX2026SPRING"),  # full-width, as a Chinese keyboard types it
    ("qx_2026—spring", "QX2026SPRING"),
])
def test_codes_are_normalized(typed, stored):  # noqa: ANN001
    assert coupons.normalize_code(typed) == stored


# ---- claim ------------------------------------------------------------------------------------

def test_a_claim_puts_the_coupon_in_the_wallet_up_to_the_per_user_limit(rt):  # noqa: ANN001
    # given a code claimable twice per person, valid 3 days after the claim
    made = coupon(code="WELCOME2026", per_user_limit=2, grant_valid_days=3)
    ann = buyer("ann")
    with db.connection_context():
        # when Ann claims it twice, then she holds two grants expiring in 3 days
        first = coupons.claim(ann.id, "welcome-2026")
        second = coupons.claim(ann.id, "WELCOME 2026")
        assert {first.source_key, second.source_key} == {"claim:1", "claim:2"}
        assert abs(first.expires_at - (utcnow() + dt.timedelta(days=3))) < dt.timedelta(minutes=1)
        # and a third claim is refused, writing nothing
        before = coupon_state()
        with pytest.raises(Conflict) as refused:
            coupons.claim(ann.id, "WELCOME2026")
        assert refused.value.code == "coupon_limit" and coupon_state() == before
        # and Bob still claims his own
        assert coupons.claim(buyer("bob").id, "WELCOME2026").coupon_id == made.id


@pytest.mark.parametrize(("spec", "typed", "error", "code"), [
    ({}, "NOSUCHCODE99", NotFound, "coupon_not_found"),
    ({}, "short", NotFound, "coupon_not_found"),
    ({"starts_at": NOW - dt.timedelta(days=9), "ends_at": NOW - dt.timedelta(days=1)}, None, Conflict,
     "coupon_expired"),
    ({"starts_at": NOW + dt.timedelta(days=1), "ends_at": NOW + dt.timedelta(days=9)}, None, Conflict,
     "coupon_expired"),
])
def test_a_bad_claim_is_refused_and_writes_nothing(rt, spec, typed, error, code):  # noqa: ANN001
    # given a coupon with a code, and a code typed
    coupon(code="SPRING2026SALE", **spec)
    ann = buyer("ann")
    before = coupon_state()
    # when it is claimed, then refused with its code and nothing written
    with db.connection_context(), pytest.raises(error) as refused:
        coupons.claim(ann.id, typed or "SPRING2026SALE")
    assert refused.value.code == code and coupon_state() == before


def test_claims_of_a_withdrawn_or_used_up_coupon_are_refused(rt, shop):  # noqa: ANN001
    # given a coupon with one use, used by Ann's order, and a withdrawn one
    sku = shop.card_sku(keys=3, price=2_000)
    coupon(code="ONLYONCE2026", max_uses=1, per_user_limit=3)
    gone = coupon(code="WITHDRAWN2026")
    ann, bob = buyer("ann"), buyer("bob")
    with db.connection_context():
        grant = coupons.claim(ann.id, "ONLYONCE2026")
        Coupon.update(active=False).where(Coupon.id == gone.id).execute()
    with_coupons(sku, [grant.id], ann)
    before = coupon_state()
    with db.connection_context():
        # when Bob claims either, then refused, nothing written
        for code, expected in (("ONLYONCE2026", "coupon_exhausted"), ("WITHDRAWN2026", "coupon_inactive")):
            with pytest.raises(Conflict) as refused:
                coupons.claim(bob.id, code)
            assert refused.value.code == expected
    assert coupon_state() == before


# ---- issue, campaign, wallet, expiry ----------------------------------------------------------

def test_issuing_to_a_list_twice_gives_each_user_one_grant(rt):  # noqa: ANN001
    # given a wake-up campaign coupon and three users (one id that is nobody)
    made = coupon(campaign="wakeup")
    users = [buyer(f"u{i}") for i in range(3)]
    ids = [u.id for u in users] + [987_654]
    with db.connection_context():
        # when the campaign issues it twice under the same run key
        assert coupons.issue(made.id, ids, source="wakeup", source_key="wakeup:2026-12") == 3
        assert coupons.issue(made.id, ids, source="wakeup", source_key="wakeup:2026-12") == 0
        # then each real user holds exactly one grant
        assert CouponGrant.select().count() == 3
        # and a new run key gives a new one; a bad source is refused
        assert coupons.issue(made.id, ids[:1], source="wakeup", source_key="wakeup:2027-01") == 1
        with pytest.raises(InvalidInput):
            coupons.issue(made.id, ids, source="friends", source_key="x")
        with pytest.raises(NotFound):
            coupons.issue(999_999, ids, source="operator", source_key="x")
        assert coupons.campaign_coupon("wakeup").id == made.id
        assert coupons.campaign_coupon("lottery_loser") is None


def test_the_wallet_lists_usable_coupons_first_with_the_reasons_of_the_others(rt, shop):  # noqa: ANN001
    # given Ann's coupons: one usable, one out of scope for a SKU, one held by an order, one past its end
    sku = shop.card_sku(keys=3, price=2_000, code="WALLET-A")
    other = shop.card_sku(keys=1, code="WALLET-B")
    ann = buyer("ann")
    usable = granted(coupon(name="通用券"), ann)[0]
    scoped = granted(coupon(name="B专用", scope="sku", include_skus=(other.id,)), ann)[0]
    held = granted(coupon(name="占用券"), ann)[0]
    late = granted(coupon(name="过期券"), ann)[0]
    with_coupons(sku, [held], ann)
    with db.connection_context():
        CouponGrant.update(expires_at=utcnow() - dt.timedelta(minutes=1)).where(CouponGrant.id == late).execute()
        # when Ann opens her wallet for SKU A
        items = coupons.wallet(ann.id, usable_for_sku="WALLET-A")
        # then the usable one comes first, each other one says why not
        assert [(i.grant_id, i.usable, i.reason) for i in items][0] == (usable, True, None)
        reasons = {i.grant_id: (i.state, i.reason) for i in items}
        assert reasons[scoped] == ("available", "out_of_scope")
        assert reasons[held] == ("reserved", "in_use")
        assert reasons[late] == ("expired", "expired")  # judged at read time, before the sweep
        # and without a SKU, the scoped coupon is usable
        assert {i.grant_id for i in coupons.wallet(ann.id) if i.usable} == {usable, scoped}
        with pytest.raises(NotFound):
            coupons.wallet(ann.id, usable_for_sku="NOPE")


def test_an_expired_grant_is_refused_at_order_time(rt, shop):  # noqa: ANN001
    # given a grant past its end that the sweep has not reached yet
    sku = shop.card_sku(keys=2, price=2_000)
    ann = buyer("ann")
    grant = granted(coupon(), ann)[0]
    with db.connection_context():
        CouponGrant.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(CouponGrant.id == grant).execute()
    before = coupon_state()
    # when Ann orders with it, then it is refused and nothing is written
    with pytest.raises(Conflict) as refused:
        with_coupons(sku, [grant], ann)
    assert refused.value.code == "coupon_expired" and coupon_state() == before
    unpaid(sku, "ann")  # the stock was not held either
