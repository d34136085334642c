"""Real-time prompts during a live session (issue 16): the model-backed version of the rule
hints of models/live_hints.py, through the same hook (`live_hints.register_provider`).

`install(ai, redis, settings)` (the wiring, where Runtime.ai is built) registers one
`ModelHints` provider; calling it again re-points that provider at the new runtime's parts
(idempotent). For each look at a live session's dashboard (models/live_board.board) it gets
the `HintContext` and:
- offline (no model) it returns nothing: the rule hints still speak;
- at most one model call per session per LIVE_AI_HINT_INTERVAL_S (Redis SET NX EX on
  `qx:live:<id>:ai_gate`, shared by every process); between calls it returns the last model
  hint kept in Redis (`qx:live:<id>:ai_hint`, for two intervals), or nothing;
- the prompt has the snapshot's figures, a short summary of the kept samples and the pinned
  products; the answer (JSON {"hint": ...}) must pass the guard against exactly those figures
  and moderation (kind "hint"); a failure, a stall (bounded by the provider's timeout), a
  refusal by the guard: nothing extra this time.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, Field

from content_ai.facts import percent
from content_ai.live_vet import vetted
from models import live_hints
from models.live_hints import Hint, HintContext
from models.money import rmb

log = logging.getLogger("content_ai.live")
CODE = "ai_prompt"
HINT_MAX = 80
PRODUCTS_MAX = 10
SYSTEM = (
    "你是直播间的实时运营助手，根据【数据】给主播一句可以马上执行的提示（不超过 40 字）。"
    "规则：只能引用【数据】里出现的数字；不要编造价格、库存、优惠、发货时间或任何保证；"
    "不要使用“最”“第一”等绝对化用语。只输出 JSON 对象：{\"hint\": \"提示\"}。"
)


class HintModel(BaseModel):
    hint: str = Field(min_length=1, max_length=HINT_MAX * 2)


def _key(session_id: int, name: str) -> str:
    return f"qx:live:{session_id}:{name}"


def figures_text(ctx: HintContext) -> str:
    """The dashboard's figures as the model sees them and the guard checks against."""
    s = ctx.snapshot
    lines = [f"直播「{s.get('title') or '直播'}」当前：在线 {s.get('online', 0)} 人，"
             f"峰值 {s.get('peak_online', 0)} 人，"
             f"累计观众 {s.get('unique_viewers', 0)} 人，支付订单 {s.get('orders', 0)} 笔，"
             f"成交额 {rmb(int(s.get('gmv_fen', 0)))}，买家 {s.get('buyers', 0)} 人，"
             f"转化率 {percent(int(s.get('conversion_bp', 0)))}。"]
    history = sorted(ctx.history, key=lambda p: p.get("t", 0))
    if len(history) >= 2:
        first, last = history[0], history[-1]
        minutes = max(1, int((last.get("t", 0) - first.get("t", 0)) // 60))
        lines.append(f"近 {minutes} 分钟（{len(history)} 个采样）：在线从 {first.get('online', 0)} 人到 "
                     f"{last.get('online', 0)} 人，订单从 {first.get('orders', 0)} 笔到 {last.get('orders', 0)} 笔，"
                     f"转化率从 {percent(int(first.get('conversion_bp', 0)))} 到 "
                     f"{percent(int(last.get('conversion_bp', 0)))}。")
    for p in (s.get("products") or [])[:PRODUCTS_MAX]:
        line = f"商品「{p.get('name') or p.get('sku')}」已售 {p.get('units', 0)} 件"
        if p.get("price_fen") is not None:
            line += f"，当前价 {rmb(int(p['price_fen']))}"
        if p.get("left_total") is not None:
            line += f"，剩余 {p['left_total']} 件"
        if p.get("sold_out"):
            line += "，已售罄"
        lines.append(line + "。")
    return "\n".join(lines)


class ModelHints:
    """The hint provider (a HintContext -> list[Hint] callable)."""

    __name__ = "model_hints"

    def __init__(self, ai: Any, redis: Any, settings: Any) -> None:
        self.ai, self.redis, self.settings = ai, redis, settings

    @property
    def interval_s(self) -> int:
        return int(getattr(self.settings, "LIVE_AI_HINT_INTERVAL_S", 120))

    def __call__(self, ctx: HintContext) -> list[Hint]:
        if self.ai is None or not getattr(self.ai, "online", False) or self.redis is None:
            return []
        sid = ctx.session_id
        if not self.redis.set(_key(sid, "ai_gate"), 1, nx=True, ex=self.interval_s):
            kept = self.redis.get(_key(sid, "ai_hint"))
            return [Hint(CODE, kept.decode() if isinstance(kept, bytes) else str(kept), "model")] if kept else []
        text = self._ask(ctx)
        if text is None:
            return []
        self.redis.set(_key(sid, "ai_hint"), text, ex=2 * self.interval_s)
        return [Hint(CODE, text, "model")]

    def _ask(self, ctx: HintContext) -> str | None:
        facts = figures_text(ctx)
        creator_id = ctx.snapshot.get("creator_id")
        answer = self.ai.chat([{"role": "system", "content": SYSTEM},
                               {"role": "user", "content": "【数据】\n" + facts + "\n请给一句提示，输出 JSON。"}],
                              creator_id=creator_id, schema=HintModel, purpose="hint")
        if answer is None or not isinstance(answer.data, HintModel):
            return None
        return vetted(answer.data.hint, facts, kind="hint", subject=f"live:{ctx.session_id}", limit=HINT_MAX,
                      settings=self.settings)


_installed: ModelHints | None = None


def install(ai: Any, redis: Any, settings: Any) -> ModelHints:
    """Register the model-backed hint provider once; later calls re-point it (idempotent)."""
    global _installed
    if _installed is None:
        _installed = ModelHints(ai, redis, settings)
    else:
        _installed.ai, _installed.redis, _installed.settings = ai, redis, settings
    live_hints.register_provider(_installed)
    return _installed
