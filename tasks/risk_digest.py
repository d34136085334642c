"""The operators' daily risk digest (issue 15): new cases in the last 24 hours, open cases,
orders held and the commission they keep waiting (models/risk_cases.py `summary`), posted to
RISK_DIGEST_CHAT ("telegram:<chat id>", a group's id starts with "-"; or "wechat:<openid>")
through the one sender.

Once a day: the job runs every 15 minutes (tasks/periodic.py) and writes the day's message from
RISK_DIGEST_HOUR (Beijing time) on, under the outbox key `risk:digest:<local date>`, so a
second run, a second worker or a restarted cron writes nothing more. An empty RISK_DIGEST_CHAT
turns it off.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from models import live_rules, outbox, risk_cases
from models.chat import Platform
from models.db import connection, utcnow
from models.money import rmb
from tasks.context import runtime

TZ = "Asia/Shanghai"


def digest_key(day: str) -> str:
    return f"risk:digest:{day}"


def digest_text(day: str, figures: dict[str, int]) -> str:
    return (f"风控日报 {day}\n"
            f"过去 24 小时新增案件：{figures['new_cases']} 件\n"
            f"待处理案件：{figures['open_cases']} 件\n"
            f"冻结订单：{figures['held_orders']} 笔\n"
            f"冻结佣金：{rmb(figures['held_fen'])}\n"
            "请在管理后台「风控」中处理。")


def send_digest(now: dt.datetime | None = None) -> dict[str, Any]:
    """Write today's digest for the operators' chat if it is time and not written yet."""
    rt = runtime()
    target = rt.settings.RISK_DIGEST_CHAT
    if not target:
        return {"sent": False, "reason": "off"}
    now = now or utcnow()
    local = live_rules.in_zone(now, TZ)
    if local.hour < rt.settings.RISK_DIGEST_HOUR:
        return {"sent": False, "reason": "not_yet"}
    day = local.strftime("%Y-%m-%d")
    key = digest_key(day)
    platform, _, chat_id = target.partition(":")
    kind = "group" if platform == Platform.TELEGRAM.value and chat_id.startswith("-") else "private"
    with connection():
        if outbox.states([key]):
            return {"sent": False, "reason": "done", "day": day}
        figures = risk_cases.summary(now)
        new = rt.sender.enqueue(key, platform, chat_id, {"text": digest_text(day, figures)}, chat_kind=kind)
    return {"sent": new, "day": day, **figures}
