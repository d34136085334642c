"""Admin page: model usage (issue 16), `/admin/content/ai-usage`, read-only, `content.view`.

From the call log (models/ai_calls.py, one row per model call) and the provider's Redis state
(content_ai/provider.py):
- the circuit breakers of chat and of embeddings (closed / open until when / half-open) and the
  configured models (the base URL's host and the model names; never the key);
- per Beijing day (the last `days`, 14 by default, at most 60): calls, tokens, estimated cost in
  yuan (summed as integer milli-fen, shown rounded up to the fen), the cache hit rate, counts by
  outcome and by purpose;
- today's top creators by quota use: model calls from the log and the quota counter itself
  against AI_DAILY_QUOTA;
- the most recent calls.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlsplit

from flask import request
from flask_admin import Admin, expose
from flask_babel import lazy_gettext as _l

from miniapp_api.admin.base import QxView
from miniapp_api.admin.dashboard import percent_bp
from miniapp_api.deps import runtime
from models import ai_calls
from models.db import utcnow
from models.network import Creator

DAYS_DEFAULT, DAYS_MAX = 14, 60
RECENT = 50
TOP = 10
BREAKER_LABELS = {"closed": _l("关闭（正常调用模型）"), "open": _l("打开（离线兜底）"),
                  "half_open": _l("半开（等待一次试探调用）")}
OUTCOME_LABELS = {"ok": _l("成功"), "cached": _l("缓存命中"), "timeout": _l("超时"), "http_5xx": _l("服务端错误"),
                  "http_4xx": _l("请求被拒"), "connection": _l("连接失败"), "invalid": _l("输出无效"),
                  "breaker_open": _l("熔断中"), "quota": _l("超出配额"), "error": _l("其他错误")}


def _days() -> int:
    raw = request.args.get("days", "")
    try:
        return min(max(int(raw), 1), DAYS_MAX) if raw else DAYS_DEFAULT
    except ValueError:
        return DAYS_DEFAULT


def _breaker(kind: str) -> dict[str, Any]:
    rt = runtime()
    if not rt.ai.online:
        return {"state": "offline"}
    try:
        state = rt.ai.breaker_state(kind)
    except Exception:  # noqa: BLE001 - Redis away: the page still shows the log
        return {"state": "unknown"}
    if state["state"] == "open":
        state["until"] = utcnow() + dt.timedelta(seconds=state["open_for_s"])
    return state


def _top_creators(today: dt.date) -> list[dict[str, Any]]:
    top = ai_calls.top_creators(today, TOP)
    ids = [cid for cid, _, _ in top]
    creators = {c.id: c for c in Creator.select().where(Creator.id.in_(ids))} if ids else {}
    try:
        used = runtime().ai.quota_used(ids, today)
    except Exception:  # noqa: BLE001 - Redis away: the log's counts are still shown
        used = {}
    return [{"id": cid, "creator": creators.get(cid), "calls": calls, "cost_mfen": cost, "quota_used": used.get(cid)}
            for cid, calls, cost in top]


class AIUsageView(QxView):
    permission = "content.view"

    @expose("/")
    def index(self) -> Any:
        settings = runtime().settings
        days = _days()
        today = ai_calls.beijing_day()
        per_day = ai_calls.usage_by_day([today - dt.timedelta(days=n) for n in range(days)])
        return self.render(
            "qx/content/ai_usage.html", days=days, per_day=per_day, today=per_day[0],
            breakers={"chat": _breaker("chat"), "embed": _breaker("embed")}, breaker_labels=BREAKER_LABELS,
            outcome_labels=OUTCOME_LABELS,
            top=_top_creators(today), recent=ai_calls.recent(RECENT), quota=settings.AI_DAILY_QUOTA,
            host=urlsplit(settings.AI_BASE_URL).hostname if settings.AI_BASE_URL else None,
            chat_model=settings.AI_MODEL, embed_model=settings.AI_EMBED_MODEL, keep_days=settings.AI_CALL_KEEP_DAYS,
            yuan=ai_calls.mfen_to_yuan, percent_bp=percent_bp)


def register(admin: Admin) -> None:
    """Adds this area's views to the admin."""
    admin.add_view(AIUsageView(name=_l("模型用量"), endpoint="ai_usage", url="content/ai-usage",
                               category=_l("内容运营")))
