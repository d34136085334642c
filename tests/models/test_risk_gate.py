"""The risk engine's edge checks as services (issue 15): the Redis counters' window, a refused
database claim that does not count, the chat's claims, withdrawal rules (first, spike, shared
payout account) with their counters rebuilt from the database after Redis was flushed or
while it is down, order bursts when RISK_BLOCK_ORDERS is on, and the latency probe."""

from __future__ import annotations

import json

import pytest
import redis as redis_py
from redis.backoff import NoBackoff
from redis.retry import Retry

from models import risk_gate, risk_signals, risk_withdrawal_checks
from models import risk_gate_redis as rg
from models.coupons import Coupon, CouponGrant
from models.db import db
from models.errors import Forbidden
from models.risk_tables import RiskCase, RiskHit, RiskUser
from models.withdrawals import Method, Withdrawal
from tests.bots.conftest import say, text_of, user_of
from tests.conftest import free_port
from tests.factories import DUE_NOW, buyer, coupon, creator, earn, gate_hits, gate_rule, signal_rows, unpaid

HOME, NEIGHBOUR = "36.110.20.7", "36.110.99.1"
CODE = "SPRING2026SALE"


@pytest.fixture
def dead_redis():  # noqa: ANN201
    """A Redis client whose server is not there (a real connection error, quickly)."""
    return redis_py.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2,
                          retry=Retry(NoBackoff(), 0))


def claim(rt, who: str, ip: str | None = HOME, redis=None):  # noqa: ANN001, ANN201
    with db.connection_context():
        return risk_gate.claim_coupon(redis or rt.redis, rt.settings, buyer(who).id, CODE, ip=ip)


def withdraw(rt, c, fen: int, *, redis=None, method: str = "wallet", key: str | None = None) -> Withdrawal:  # noqa: ANN001
    with db.connection_context():
        return risk_withdrawal_checks.request_withdrawal(redis or rt.redis, rt.settings, c, fen, method,
                                                         policy=DUE_NOW, request_key=key)


def codes_of(w: Withdrawal) -> list[str]:
    with db.connection_context():
        return [h.code for h in RiskHit.select().where(
            (RiskHit.subject_kind == "withdrawal") & (RiskHit.subject_id == w.id)).order_by(RiskHit.id)]


# ---- the counters ----------------------------------------------------------------------------------

def test_claims_older_than_the_window_no_longer_count(rt):  # noqa: ANN001
    # given two accounts that claimed from one address 25 hours ago (a 24-hour window)
    keys = rg.claim_keys(7, "iphash", None)
    day = 24 * 3600
    for user in (1, 2):
        assert rg.claim_take(rt.redis, keys, user, now_s=1_000_000, window_s=day, max_accounts=3)[0] is None
    # when a third claims inside the window, then it is refused (the first key)
    assert rg.claim_take(rt.redis, keys, 3, now_s=1_000_000 + 3600, window_s=day, max_accounts=3) == (0, 0)
    # when it claims after the window, then it passes: the old claims left the set
    refused, added = rg.claim_take(rt.redis, keys, 3, now_s=1_000_000 + 25 * 3600, window_s=day, max_accounts=3)
    assert (refused, added) == (None, 1)
    assert rt.redis.zcard(keys[0]) == 1 and 0 < rt.redis.ttl(keys[0]) <= day


def test_a_claim_the_database_refuses_does_not_count(rt):  # noqa: ANN001
    # given a coupon mum claimed at home, then withdrawn for a while
    made = coupon(code=CODE)
    claim(rt, "mum")
    with db.connection_context():
        Coupon.update(active=False).where(Coupon.id == made.id).execute()
    # when two more accounts try at home meanwhile, then the coupon's own refusal
    for who in ("dad", "aunt"):
        with pytest.raises(Exception, match="withdrawn"):
            claim(rt, who)
    # and once it is back, dad is only the second account there: he claims; aunt is the third
    with db.connection_context():
        Coupon.update(active=True).where(Coupon.id == made.id).execute()
    claim(rt, "dad")
    with pytest.raises(Forbidden) as refused:
        claim(rt, "aunt")
    assert refused.value.code == "risk_refused"
    with db.connection_context():
        assert CouponGrant.select().count() == 2


def test_chat_claims_have_no_address_and_are_never_compared(rt):  # noqa: ANN001
    # given a coupon, when three chat accounts claim it
    coupon(code=CODE)
    for who in ("ann", "bob", "cai"):
        assert "领券成功" in text_of(say(f"领券 {CODE}", who=who))
    # then all got it, and their claims were recorded without address or device
    rows = signal_rows(event="claim")
    assert [r.user_id for r in rows] == [user_of(w).id for w in ("ann", "bob", "cai")]
    assert all(r.ip_hash is None and r.device_hash is None for r in rows)
    assert gate_hits() == []


def test_with_redis_down_claims_fail_open(rt, dead_redis, caplog):  # noqa: ANN001
    # given a coupon and Redis unreachable
    coupon(code=CODE)
    # when three accounts claim from one address, then all get it; the outage is logged once
    for who in ("a1", "a2", "a3"):
        claim(rt, who, redis=dead_redis)
    with db.connection_context():
        assert CouponGrant.select().count() == 3
    assert sum("Redis unavailable" in r.getMessage() for r in caplog.records) <= 1
    assert HOME not in caplog.text


def test_the_engine_switched_off_checks_nothing(rt):  # noqa: ANN001
    # given RISK_ENABLED off and two accounts that claimed at home
    off = rt.settings.model_copy(update={"RISK_ENABLED": False})
    coupon(code=CODE)
    with db.connection_context():
        for who in ("x1", "x2", "x3"):
            risk_gate.claim_coupon(rt.redis, off, buyer(who).id, CODE, ip=HOME)
    # then the third passed too, and nothing was counted
    assert gate_hits() == [] and rt.redis.keys("risk:gate:*") == []


# ---- withdrawals ---------------------------------------------------------------------------------

def test_first_spike_and_their_honest_look_alikes(rt):  # noqa: ANN001
    # given a creator with 2,000 yuan
    c = creator()
    earn(c, 200_000)
    # when they withdraw four times
    first = withdraw(rt, c, 20_000)
    usual = withdraw(rt, c, 20_000)
    double = withdraw(rt, c, 40_000)  # 2x the average: not a spike
    spike = withdraw(rt, c, 100_000)  # over 3x the average of 266.67 yuan
    # then the first and the spike wait for review, the others go on
    assert [w.state for w in (first, usual, double, spike)] == ["review", "approved", "approved", "review"]
    assert [codes_of(w) for w in (first, usual, double, spike)] == [["withdrawal_first"], [], [], ["withdrawal_spike"]]
    with db.connection_context():
        evidence = json.loads(RiskHit.get(RiskHit.code == "withdrawal_spike").evidence)
        case = RiskCase.get(RiskCase.creator_id == c.id)
    assert (evidence["average_fen"], evidence["count"], evidence["amount_fen"]) == (26_666, 3, 100_000)
    assert (case.state, case.outcome, case.held_fen) == ("open", "review", 120_000)


def test_a_flushed_redis_is_rebuilt_from_the_database(rt):  # noqa: ANN001
    # given two withdrawals counted in Redis, and then Redis flushed
    c = creator()
    earn(c, 200_000)
    withdraw(rt, c, 20_000)
    withdraw(rt, c, 20_000)
    rt.redis.flushdb()
    # when a spike comes, then it is found from the database: not a first, over 3x
    w = withdraw(rt, c, 70_000)
    assert codes_of(w) == ["withdrawal_spike"]
    # and the counters are warm again, the new withdrawal included
    assert rt.redis.hget(f"risk:gate:wd:{c.id}", "n") == b"3"
    assert rt.redis.zcard(f"risk:gate:wd:z:{c.id}") == 3


def test_with_redis_down_the_withdrawal_checks_ask_the_database(rt, dead_redis):  # noqa: ANN001
    # given a creator who withdrew once, and Redis unreachable
    c = creator()
    earn(c, 200_000)
    withdraw(rt, c, 20_000)
    # when they withdraw like before and then a spike, then the same answers as with Redis
    assert codes_of(withdraw(rt, c, 20_000, redis=dead_redis)) == []
    assert codes_of(withdraw(rt, c, 90_000, redis=dead_redis)) == ["withdrawal_spike"]


def test_a_payout_account_shared_with_another_creator_waits_for_review(rt):  # noqa: ANN001
    # given two creators whose WeChat accounts share a unionid (one person), and a third whose
    # phone is the second's, and an honest fourth
    key = rt.settings.RISK_HMAC_KEY
    with db.connection_context():
        one, two = buyer("shared-1"), buyer("shared-2")
        for u in (one, two):
            u.unionid = "union-same"
            u.save()
        three, four = buyer("phone-3"), buyer("honest-4")
    c1, c2, c3, c4 = (creator(user=u) for u in (one, two, three, four))
    with db.connection_context():
        risk_signals.set_phone(key, two.id, "13800138000")
        risk_signals.set_phone(key, three.id, "+86 138 0013 8000")
        risk_signals.set_phone(key, four.id, "13900139000")
        assert RiskUser.select().count() == 3
    for c in (c1, c2, c3, c4):
        earn(c, 100_000)
    # when each withdraws (their first, so that rule is off to see this one alone)
    gate_rule("withdrawal_first", enabled=False)
    got = {n: withdraw(rt, c, 20_000) for n, c in (("c1", c1), ("c2", c2), ("c3", c3), ("c4", c4))}
    # then the three sharing an identity wait, the honest one goes on
    assert {n: w.state for n, w in got.items()} == {"c1": "review", "c2": "review", "c3": "review", "c4": "approved"}
    with db.connection_context():
        shared = {h.creator_id: json.loads(h.evidence) for h in RiskHit.select().where(
            RiskHit.code == "withdrawal_shared_account")}
    assert shared[c1.id]["creators"] == [c2.id] and shared[c1.id]["identity"] == ["unionid"]
    assert shared[c2.id]["creators"] == [c1.id, c3.id] and shared[c2.id]["identity"] == ["phone", "unionid"]
    assert shared[c3.id]["creators"] == [c2.id] and c4.id not in shared
    # and nothing raw reached Redis
    assert not [k for k in rt.redis.keys("risk:gate:wd:id:*") if b"union-same" in k or b"13800138000" in k]


def test_a_replay_records_nothing_twice_and_credit_is_not_checked(rt):  # noqa: ANN001
    # given a creator's first wallet withdrawal, sent twice with one key
    c = creator()
    earn(c, 100_000)
    w = withdraw(rt, c, 20_000, key="tap-000001")
    again = withdraw(rt, c, 20_000, key="tap-000001")
    # then one withdrawal, one hit, the case holding it once
    assert again.id == w.id and codes_of(w) == ["withdrawal_first"]
    with db.connection_context():
        assert RiskCase.get(RiskCase.creator_id == c.id).held_fen == 20_000
    # and shopping credit (the money stays with us) is not checked
    other = creator()
    earn(other, 100_000)
    credit = withdraw(rt, other, 20_000, method=Method.CREDIT.value)
    assert credit.state == "paid" and codes_of(credit) == []


def test_an_allowlisted_creator_skips_the_rule(rt):  # noqa: ANN001
    # given a creator allowlisted for withdrawal_first
    from tests.factories import allow

    c = creator()
    earn(c, 100_000)
    allow("creator", c.id, "withdrawal_first")
    risk_gate.forget_cached_rules()
    # when they withdraw for the first time, then it goes on
    assert withdraw(rt, c, 20_000).state == "approved"


# ---- order bursts ---------------------------------------------------------------------------------

def test_order_bursts_are_refused_only_when_blocking_orders_is_on(rt, shop):  # noqa: ANN001
    # given three orders a minute placed from one address, and a burst threshold of three
    gate_rule("burst_orders", params={"min_orders": 3})
    blocking = rt.settings.model_copy(update={"RISK_BLOCK_ORDERS": True})
    sku = shop.card_sku(keys=10)
    with db.connection_context():
        for i in range(3):
            order = unpaid(sku, f"burst-{i}")
            risk_gate.order_placed(rt.redis, blocking, order, None, ip=HOME, device=None)
        # when a fourth comes with blocking off (the default), then it may go on
        risk_gate.check_order(rt.redis, rt.settings, buyer("burst-9").id, None, ip=HOME, device=None)
        # when blocking is on, then it is refused; another address is not
        with pytest.raises(Forbidden) as refused:
            risk_gate.check_order(rt.redis, blocking, buyer("burst-9").id, None, ip=HOME, device=None)
        risk_gate.check_order(rt.redis, blocking, buyer("burst-9").id, None, ip=NEIGHBOUR, device=None)
    assert refused.value.code == "risk_refused"
    assert [h.subject_id for h in gate_hits("burst_orders")] == [buyer("burst-9").id]


# ---- latency ---------------------------------------------------------------------------------------

def test_measure_reports_each_check_and_leaves_nothing_behind(rt):  # noqa: ANN001
    # when the probe runs, then a p50 and p99 per check, and no scratch keys remain
    got = rg.measure(rt.redis, 20)
    assert set(got) == {"coupon_farming", "assist_farming", "group_farming", "burst_orders", "withdrawal"}
    assert all(v["n"] == 20 and 0 < v["p50_us"] <= v["p99_us"] for v in got.values())
    assert rt.redis.keys("risk:gate:*") == []
