"""The demo data `make run` seeds: a catalog with keys, a creator team to try commissions, a
live session and a console group with keyword rules and a welcome; and what `make run` and
`seed-demo` print about it, the same on every run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from models import network
from models.chat import GroupConfig, GroupRule
from models.db import db
from models.live import LiveSession
from models.network import Creator, CreatorPrice
from qianxing.demo import DEMO_GROUP, DEMO_TEAM, demo_summary, seed_demo
from tests.conftest import free_port


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
        session = LiveSession.get(LiveSession.creator == leader.id)
        assert session.state == "live"
        # and the summary read back names the leader's code and the live session to buy in
        summary = demo_summary()
        assert f'buy with "ref": "{leader.code}", "live": {session.id}' in "\n".join(summary)
        # and the console group `demo` has its keyword rules and welcome
        assert GroupRule.select().where(GroupRule.scope == DEMO_GROUP).count() == 3
        assert "{name}" in GroupConfig.get(GroupConfig.chat_key == DEMO_GROUP).welcome_text


def codes_in(output: str) -> list[str]:
    return re.findall(r"invite code (\S+) \(dev-login openid demo-creator-\d\)", output)


def test_seed_demo_prints_the_invite_codes_and_live_session_every_time(cli):
    # when the demo is seeded, then seeded again
    first = cli("seed-demo", "--keys", "2")
    second = cli("seed-demo", "--keys", "2")
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    # then both runs print the same six invite codes and the live session
    assert len(codes_in(first.output)) == len(DEMO_TEAM)
    assert codes_in(second.output) == codes_in(first.output)
    assert "demo data already present" in second.output
    live = re.search(r'"live": (\d+)', second.output)
    assert live and live.group(0) in first.output
    with db.connection_context():
        assert LiveSession.get_by_id(int(live.group(1))).state == "live"


def test_the_demo_group_welcomes_and_answers_keywords_in_the_console(cli):
    # given the demo seeded
    assert cli("seed-demo", "--keys", "2").exit_code == 0
    # when bob opens the demo group in the console chat and asks about prices and delivery
    result = cli("chat", "--as", "bob", "--group", "demo", input="价格多少？\n什么时候发货\n有优惠吗\n")
    assert result.exit_code == 0, result.output
    out = result.output
    # then the group's welcome comes first, with the coupon and the leader's shop link
    welcome = out.index("bot> 欢迎 bob 加入千星演示群")
    assert "🎁 发送“优惠”查看群友福利" in out
    with db.connection_context():
        leader = Creator.get(Creator.name == DEMO_TEAM[0][1])
    assert f"ref={leader.code}" in out[welcome:out.index("bot>", welcome + 4)]
    # and each keyword gets its rule's answer, prices taken from the catalog
    assert "爱奇艺黄金会员 月卡 ¥19.90" in out and "影音礼包 月卡 ¥32.90" in out
    assert "付款后几秒内自动发货" in out
    assert "群友福利：" in out
    assert "（机器人没有回复）" not in out


def test_make_run_prints_the_demo_codes_live_session_and_operator_hint(settings, tmp_path):
    # given `qianxing run` on an empty database (a free port, the session's Redis)
    port = free_port()
    env = {**os.environ, **{k: str(v) for k, v in settings.model_dump().items() if v is not None},
           "DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}", "WEB_BIND": f"127.0.0.1:{port}",
           "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "QIANXING_ENV": "dev", "WEB_WORKERS": "1"}
    outputs, admin_logins = [], []
    for _ in range(2):  # when it starts, stops, and starts again on the same database
        proc = subprocess.Popen([sys.executable, "-m", "qianxing.cli", "run"], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                cwd=Path(__file__).resolve().parents[1], start_new_session=True)
        lines = []
        deadline = time.monotonic() + 90
        try:
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
                if "Ctrl-C stops everything" in line:
                    break
            admin_logins.append(demo_admin_login(port, "".join(lines)))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        outputs.append("".join(lines))
    first, second = outputs
    # then each time it prints the six invite codes, the live session and an operator hint
    assert "Demo data (seeded now)" in first and "Demo data (already present)" in second
    assert len(codes_in(first)) == len(DEMO_TEAM) and codes_in(second) == codes_in(first)
    assert re.search(r'"live": \d+', second) and "qianxing chat --as bob --group demo" in second
    assert "Operator (another terminal)" in second and f"http://127.0.0.1:{port}/api/swagger" in second
    # and the admin's URL with the readonly demo operator's password, new each run, that signs in
    assert f"http://127.0.0.1:{port}/admin/" in second
    assert admin_logins == [200, 200]


def demo_admin_login(port: int, output: str) -> int:
    """Sign in to the running admin as the demo operator with the printed password: the status
    of the dashboard afterwards (200 when signed in)."""
    import requests

    password = re.search(r'demo operator "demo" \(readonly\), password (\S+)\)', output).group(1)
    base = f"http://127.0.0.1:{port}/admin"
    deadline = time.monotonic() + 150  # a loaded 2-core host: the first admin page builds the admin
    while True:
        try:
            browser = requests.Session()
            page = browser.get(f"{base}/login", timeout=60)
            break
        except (requests.ConnectionError, requests.Timeout):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    browser.post(f"{base}/login", data={"name": "demo", "password": password, "csrf_token": token},
                 timeout=60, allow_redirects=False)
    return browser.get(f"{base}/", timeout=60, allow_redirects=False).status_code


def test_seed_demo_opens_one_risk_case_in_the_admin_queue_once(rt):
    from models.orders import Order
    from models.risk_tables import RiskCase, RiskHit, RiskSignal

    with db.connection_context():
        # when the demo is seeded twice
        first = seed_demo(keys_per_sku=2)
        assert seed_demo(keys_per_sku=2) == []
        # then 阿星 has one open hold case of three orders from one phone, caught as circular buying
        [case] = RiskCase.select()
        seller = Creator.get(Creator.name == DEMO_TEAM[1][1])
        assert (case.creator_id, case.state, case.outcome) == (seller.id, "open", "hold")
        hits = list(RiskHit.select().where(RiskHit.subject_kind == "order"))
        assert {h.code for h in hits} == {"circular_buying"} and len(hits) == 3
        orders = list(Order.select().where(Order.id.in_([h.subject_id for h in hits])))
        assert all(o.risk_hold and o.seller_id == seller.id for o in orders)
        # and their signals hold keyed hashes (one device, one payer per buyer), no raw values
        signals = list(RiskSignal.select().where(RiskSignal.order_id.in_([o.id for o in orders])))
        assert len(signals) == 3 and len({s.device_hash for s in signals}) == 1
        assert all(s.payer_hash and "demo" not in s.device_hash for s in signals)
        # and the seeding and the summary point to it in the admin
        assert any(line.startswith(f"risk case {case.id}:") for line in first)
        assert f"/admin/risk/cases/{case.id}" in "\n".join(demo_summary())


def test_seed_demo_shows_the_model_backed_content_offline_once(cli, rt):
    from models.hot_topics import HotTopicImport
    from models.scripts import ContentScript

    # given the demo seeded twice (no model configured: the offline path)
    assert cli("seed-demo", "--keys", "2").exit_code == 0
    assert cli("seed-demo", "--keys", "2").exit_code == 0
    with db.connection_context():
        # then one script of 阿星, labeled as an ad and priced from the catalog, waits for review
        [script] = ContentScript.select()
        host = Creator.get(Creator.name == DEMO_TEAM[1][1])
        assert (script.creator_id, script.state, script.sku_code) == (host.id, "submitted", "IQY-GOLD-1M")
        assert script.data["label"] == "【广告】" and script.data["source"] == "offline"
        # and one hot-topic import is queued for the worker
        [imported] = HotTopicImport.select()
        assert imported.imported == 5
    # and bob's price question in the demo group, matching no keyword rule, gets a grounded answer
    result = cli("chat", "--as", "bob", "--group", "demo", input="爱奇艺会员一个月要几块钱\n")
    assert result.exit_code == 0, result.output
    assert "19.90" in result.output.split("爱奇艺会员一个月要几块钱", 1)[-1]
    # and the summary points to the script and the import in the admin
    summary = "\n".join(demo_summary())
    assert f"/admin/content/scripts/{script.id}" in summary and f"/admin/content/hot-topics/{imported.id}" in summary
