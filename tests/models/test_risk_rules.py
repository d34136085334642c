"""Risk rules as data on both backends: the seeded defaults, versioned edits with an event,
and bad edits refused with a clear code and nothing written."""

from __future__ import annotations

import pytest

from models import risk_rules
from models.db import db
from models.errors import InvalidInput
from models.events import Event
from models.risk_tables import RiskRule


def rules_count() -> int:
    with db.connection_context():
        return RiskRule.select().count()


def update(code: str, **kw) -> risk_rules.RuleView:  # noqa: ANN003
    with db.connection_context():
        return risk_rules.update_rule(code, actor="operator:owner", **kw)


def test_every_default_rule_is_seeded_once_at_version_one(rt):
    with db.connection_context():
        found = risk_rules.current()
        assert risk_rules.seed_defaults() == 0
    assert set(found) == set(risk_rules.BY_CODE)
    assert {v.version for v in found.values()} == {1}
    assert found["coupon_farming"].blocking and not found["burst_orders"].blocking


def test_an_edit_is_a_new_version_with_an_event_and_the_history_keeps_the_old_one(rt):
    # when the owner raises burst_orders' threshold and weight
    made = update("burst_orders", params={"min_orders": 15}, weight=60, note="too many alerts")
    # then version 2 is in force, with the other parameter as it was
    assert (made.version, made.params, made.weight) == (2, {"min_orders": 15, "minutes": 10}, 60)
    with db.connection_context():
        assert risk_rules.current()["burst_orders"].version == 2
        versions = risk_rules.history("burst_orders")
        ev = Event.get(Event.topic == "risk.rule_changed")
    assert [v.version for v in versions] == [2, 1]
    assert versions[1].params == {"min_orders": 10, "minutes": 10}
    assert ev.subject == "risk_rule:burst_orders" and ev.actor == "operator:owner"
    assert ev.payload["from"]["params"] == {"min_orders": 10, "minutes": 10}
    assert ev.payload["to"]["params"] == {"min_orders": 15, "minutes": 10} and ev.payload["to"]["version"] == 2
    # and disabling it is version 3; an edit that changes nothing writes nothing
    assert update("burst_orders", enabled=False).version == 3
    before = rules_count()
    assert update("burst_orders", enabled=False).version == 3
    assert rules_count() == before


def test_segments_and_blocking_on_an_edge_rule(rt):
    made = update("virtual_segment", params={"segments": ["170", "171"]})
    assert made.params == {"segments": ["170", "171"]}
    assert update("coupon_farming", blocking=False).blocking is False


@pytest.mark.parametrize(("code", "kw", "error"), [
    ("no_such_rule", {"weight": 10}, "unknown_rule"),
    ("burst_orders", {"params": {"min_orders": -1}}, "invalid_params"),
    ("burst_orders", {"params": {"min_orders": 0}}, "invalid_params"),
    ("burst_orders", {"params": {"minutes": 100_000}}, "invalid_params"),
    ("burst_orders", {"params": {"minutes": "10"}}, "invalid_params"),
    ("burst_orders", {"params": {"minutes": True}}, "invalid_params"),
    ("burst_orders", {"params": {"seconds": 5}}, "invalid_params"),
    ("circular_buying", {"params": {"days": 365}}, "invalid_params"),
    ("shared_payer", {"params": {"hours": 0}}, "invalid_params"),
    ("new_account_big", {"params": {"min_amount_fen": -5}}, "invalid_params"),
    ("refund_abuse", {"params": {"max_refund_rate_bp": 20_000}}, "invalid_params"),
    ("withdrawal_spike", {"params": {"multiple": 0}}, "invalid_params"),
    ("virtual_segment", {"params": {"segments": []}}, "invalid_params"),
    ("virtual_segment", {"params": {"segments": ["17"]}}, "invalid_params"),
    ("virtual_segment", {"params": {"segments": ["17a"]}}, "invalid_params"),
    ("virtual_segment", {"params": {"segments": [str(100 + i) for i in range(21)]}}, "invalid_params"),
    ("self_purchase", {"params": {"levels": 3}}, "invalid_params"),
    ("burst_orders", {"weight": -1}, "invalid_weight"),
    ("burst_orders", {"weight": 1001}, "invalid_weight"),
    ("burst_orders", {"blocking": True}, "not_blockable"),
    ("withdrawal_first", {"blocking": True}, "not_blockable"),
])
def test_bad_edits_are_refused_with_a_code_and_nothing_is_written(rt, code, kw, error):
    before = rules_count()
    with pytest.raises(InvalidInput) as caught:
        update(code, **kw)
    assert caught.value.code == error
    assert rules_count() == before
    with db.connection_context():
        assert Event.select().where(Event.topic == "risk.rule_changed").count() == 0


def test_history_of_an_unknown_rule_is_refused(rt):
    with pytest.raises(InvalidInput) as caught, db.connection_context():
        risk_rules.history("nope")
    assert caught.value.code == "unknown_rule"
