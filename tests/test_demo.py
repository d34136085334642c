"""The demo data `make run` seeds: a catalog with keys and a creator team to try commissions."""

from __future__ import annotations

from models import network
from models.db import db
from models.live import LiveSession
from models.network import Creator, CreatorPrice
from qianxing.demo import DEMO_TEAM, seed_demo


def test_seed_demo_builds_a_shop_and_a_two_level_team_once(rt):
    with db.connection_context():
        # when the demo is seeded twice
        first = seed_demo(keys_per_sku=3)
        second = seed_demo(keys_per_sku=3)
        # then the second run changes nothing
        assert second == []
        assert any("IQY-GOLD-1M: 3 keys" == line for line in first)
        # and the team has its leader, two direct recruits and three second-level ones
        leader = network.creator_of(Creator.get(Creator.name == DEMO_TEAM[0][1]).user_id)
        team = network.team(leader)
        assert len(team.direct) == 2 and team.second == 3
        assert {m.name for m in team.direct} == {DEMO_TEAM[1][1], DEMO_TEAM[2][1]}
        # and the leader sells the featured SKU with a markup in a live session
        assert CreatorPrice.get(CreatorPrice.creator == leader.id).markup_fen == 200
        assert LiveSession.get(LiveSession.creator == leader.id).state == "live"
        assert any(f"ref={leader.code}" in line for line in first)
