"""The demo's model-backed content (issue 16), all on the offline path unless AI_BASE_URL is set:
the demo group answers questions from the catalog and FAQ (its AI fallback on, hand-offs to
星主小千), one of 阿星's scripts waits in the review queue (/admin/content/script-review/), and a
hot-topic list is imported and paired with the catalog by the worker (/admin/content/hot-topics/).
Each step is skipped when already done, so a re-run changes nothing."""

from __future__ import annotations

from models import network
from models.chat import GroupConfig
from models.hot_topics import HotTopicImport
from models.scripts import ContentScript
from models.users import User

DEMO_SCRIPT_SKU = "IQY-GOLD-1M"
DEMO_TOPICS_KEY = "demo-hot-topics"
DEMO_TOPICS = """title,heat
周末宅家追剧,98000
年度热歌榜单出炉,76000
打工人办公效率神器,54000
新学期手机话费怎么省,32000
台风登陆浙江,120000
"""


def _creator(openid: str) -> network.Creator | None:
    user = User.get_or_none(User.openid == openid)
    return network.Creator.get_or_none(network.Creator.user == user.id) if user else None


def seed_content(group: str, leader_openid: str, host_openid: str) -> list[str]:
    from bots.groups import configure
    from content_ai.scripts import create_script, submit_script
    from qianxing.wiring import runtime
    from tasks.hot_topics import queue_csv

    rt = runtime()
    lines: list[str] = []
    config = GroupConfig.get_or_none(GroupConfig.chat_key == group)
    if config is not None and not config.ai_fallback:
        configure(group, ai_fallback=True)
        lines.append(f"group {group}: AI answers on (catalog, FAQ, rules; hand-offs to its creator)")
    host = _creator(host_openid)
    if host is not None and not ContentScript.select().where(ContentScript.creator == host.id).exists():
        script = create_script(host, DEMO_SCRIPT_SKU, "周末追剧", "亲切", ai=rt.ai, settings=rt.settings,
                               actor="demo")
        submit_script(host, script.id, settings=rt.settings)
        lines.append(f"script {script.id} of {host.name} submitted for review")
    if _creator(leader_openid) is not None and not HotTopicImport.select().where(
            HotTopicImport.key == DEMO_TOPICS_KEY).exists():
        import_id, parsed = queue_csv(DEMO_TOPICS.encode(), key=DEMO_TOPICS_KEY, operator="demo")
        lines.append(f"hot topics import {import_id}: {len(parsed.rows)} topics, paired by the worker")
    return lines


def content_summary() -> list[str]:
    """Where to look, read back from the database."""
    lines = ['ask the demo group: .venv/bin/qianxing chat --as bob --group demo, then "爱奇艺会员多少钱" '
             '(or "转人工" for a hand-off to 星主小千)']
    script = ContentScript.select().order_by(ContentScript.id.desc()).first()
    if script is not None:
        lines.append(f"script {script.id} ({script.state}): /admin/content/scripts/{script.id}")
    imported = HotTopicImport.get_or_none(HotTopicImport.key == DEMO_TOPICS_KEY)
    if imported is not None:
        lines.append(f"hot topics ({imported.state}): /admin/content/hot-topics/{imported.id}")
    return lines
