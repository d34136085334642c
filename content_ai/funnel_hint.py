"""The funnel hint (issue 16): a creator's weakest funnel step (plays -> live entries ->
orders) compared with creators of the same star level, and one action to take.

The numbers are computed in the database (models/funnel_compare.py); the model only words them:
its answer (JSON {"hint": ...}) must pass the guard against exactly those numbers
(`facts_text`) and moderation (kind "funnel_hint"). Offline, or when the model fails or its
answer is refused, a template per weakest step says the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from content_ai.facts import percent
from content_ai.live_vet import vetted
from models.funnel_compare import Comparison

HINT_MAX = 160
STEP_NAMES = {"plays": "视频播放", "entries": "从视频进直播间", "orders": "直播间成交"}
SYSTEM = (
    "你是带货创作者的运营教练。根据【数据】用两句话告诉创作者：漏斗里的短板（和同星级创作者的中位数比），"
    "以及一个具体可执行的改进动作。规则：只能使用【数据】里出现的数字；不要编造收益、优惠或任何保证；"
    "不要使用“最”“第一”等绝对化用语。只输出 JSON 对象：{\"hint\": \"提示\"}。"
)
# the one action per weakest step (offline text, and what the model is told to build on)
ACTIONS = {
    "plays": "先把视频发起来：固定时间更新短视频，每条视频开头 3 秒讲清卖点，带上直播预告。",
    "entries": "在视频结尾和评论区置顶直播预告与预约入口，开播前发预约提醒，把看视频的人带进直播间。",
    "orders": "直播时讲清阶梯价和福利，固定节奏上架商品并多次引导下单，用投票和福利款留住进来的观众。",
}
NO_DATA = "同星级的创作者还没有足够的数据可以比较。先发视频、开直播，攒下数据后再来看看哪一步需要加强。"


class HintModel(BaseModel):
    hint: str = Field(min_length=1, max_length=HINT_MAX * 2)


@dataclass(frozen=True)
class FunnelHint:
    step: str | None  # plays | entries | orders; None: nothing to compare with yet
    text: str
    source: str  # model | offline
    comparison: Comparison

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "text": self.text, "source": self.source, "funnel": self.comparison.as_dict()}


def level_name(rank: int) -> str:
    return f"{rank}星" if rank > 0 else "新人"


def facts_text(c: Comparison) -> str:
    m = c.medians
    lines = [f"你的等级：{level_name(c.rank)}；同等级创作者 {m.peers} 人。",
             f"你的漏斗：视频播放 {c.plays} 次，直播间进入 {c.entries} 次，订单 {c.orders} 笔。",
             f"播放→进直播间：你 {percent(c.entry_bp)}，同等级中位数 {percent(m.entry_bp)}。",
             f"进直播间→下单：你 {percent(c.order_bp)}，同等级中位数 {percent(m.order_bp)}。",
             f"视频播放：你 {c.plays} 次，同等级中位数 {m.plays} 次。"]
    if c.weakest:
        lines.append(f"短板：{STEP_NAMES[c.weakest]}。建议动作：{ACTIONS[c.weakest]}")
    return "\n".join(lines)


def _own_and_median(c: Comparison) -> tuple[str, str]:
    if c.weakest == "plays":
        return f"{c.plays} 次", f"{c.medians.plays} 次"
    if c.weakest == "entries":
        return percent(c.entry_bp), percent(c.medians.entry_bp)
    return percent(c.order_bp), percent(c.medians.order_bp)


def offline_text(c: Comparison) -> str:
    if c.weakest is None:
        return NO_DATA
    own, median = _own_and_median(c)
    return (f"和同为{level_name(c.rank)}的创作者比，你的短板在「{STEP_NAMES[c.weakest]}」：你是 {own}，"
            f"同等级中位数是 {median}。建议：{ACTIONS[c.weakest]}")


def funnel_hint(c: Comparison, *, ai: Any = None, settings: Any = None, creator_id: int | None = None) -> FunnelHint:
    """The hint: the model's wording when one is configured and it passes every check, else the
    template. Never raises for the model's sake."""
    if c.weakest is not None and ai is not None and getattr(ai, "online", False):
        facts = facts_text(c)
        answer = ai.chat([{"role": "system", "content": SYSTEM},
                          {"role": "user", "content": "【数据】\n" + facts + "\n请给出提示，输出 JSON。"}],
                         creator_id=creator_id, schema=HintModel, purpose="funnel_hint")
        if answer is not None and isinstance(answer.data, HintModel):
            shown = vetted(answer.data.hint, facts, kind="funnel_hint",
                           subject=f"creator:{creator_id}" if creator_id else "", limit=HINT_MAX, settings=settings)
            if shown is not None:
                return FunnelHint(c.weakest, shown, "model", c)
    return FunnelHint(c.weakest, offline_text(c), "offline", c)
