"""The model provider: one client layer over any OpenAI-compatible server (the `openai` package).

Only `chat.completions.create` and `embeddings.create` are used (compatible servers differ in the
rest). Every call answers or returns None, and None means "use the offline path": no model
configured, the circuit breaker open, the creator's daily quota used up, a timeout, a 5xx, or
content that is not the JSON the schema asks for. Nothing here raises to the caller.

State lives in Redis so every process shares it:
- circuit breaker: AI_BREAKER_FAILURES consecutive failures open it for AI_BREAKER_OPEN_S; then
  one trial call (half-open) closes it on success or opens it again on failure;
- response cache: a hash of (model, messages, schema name) for AI_CACHE_S;
- quota: model calls per creator per Beijing day, AI_DAILY_QUOTA.

One log line per call on logger "content_ai.provider": outcome, latency, tokens, estimated cost.
Never the key, never the prompt.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import openai
from pydantic import BaseModel, ValidationError

log = logging.getLogger("content_ai.provider")

_PREFIX = "ai:"
_BEIJING = dt.timezone(dt.timedelta(hours=8))


class AISettings(Protocol):
    AI_BASE_URL: str | None
    AI_API_KEY: str | None
    AI_MODEL: str
    AI_EMBED_MODEL: str
    AI_TIMEOUT_S: float
    AI_RETRIES: int
    AI_BREAKER_FAILURES: int
    AI_BREAKER_OPEN_S: int
    AI_CACHE_S: int
    AI_DAILY_QUOTA: int
    AI_PRICE_IN_PER_1K_FEN: float
    AI_PRICE_OUT_PER_1K_FEN: float


@dataclass(frozen=True)
class Answer:
    content: str  # the model's text
    data: BaseModel | None = None  # the validated object when a schema was given
    cached: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_fen: float = 0.0


class _Invalid(Exception):
    """The model answered, but not what was asked for."""


class Provider:
    def __init__(self, settings: AISettings, redis: Any) -> None:
        self.settings, self.redis = settings, redis
        self.client: openai.OpenAI | None = None
        if settings.AI_BASE_URL:
            self.client = openai.OpenAI(
                base_url=settings.AI_BASE_URL, api_key=settings.AI_API_KEY or "none",
                timeout=settings.AI_TIMEOUT_S, max_retries=settings.AI_RETRIES)

    @property
    def online(self) -> bool:
        return self.client is not None

    # -- public ----------------------------------------------------------------------------------
    def chat(self, messages: list[dict[str, str]], *, creator_id: int | str | None = None,
             schema: type[BaseModel] | None = None) -> Answer | None:
        """The model's answer, validated by `schema` when given; None: use the offline path.

        With a schema the server is asked for JSON mode (`response_format` json_object), which
        OpenAI and DeepSeek accept only when the messages themselves ask for JSON."""
        if self.client is None:
            return None
        started = time.monotonic()
        try:
            return self._chat(messages, creator_id, schema, started)
        except Exception as exc:  # a bug or a Redis outage must not reach the user either
            self._log("chat", "error", started, error=type(exc).__name__)
            return None

    def embed(self, texts: list[str]) -> list[list[float]] | None:
        """One vector per text; None: use the offline path."""
        if self.client is None or not texts:
            return None
        started = time.monotonic()
        try:
            if not self._breaker_allows():
                self._log("embed", "breaker_open", started)
                return None
            try:
                res = self.client.embeddings.create(model=self.settings.AI_EMBED_MODEL, input=texts)
                vectors = [list(map(float, d.embedding)) for d in sorted(res.data, key=lambda d: d.index)]
                if len(vectors) != len(texts):
                    raise _Invalid("vector count")
            except (openai.OpenAIError, _Invalid, TypeError, ValueError, AttributeError) as exc:
                self._failure()
                self._log("embed", _outcome(exc), started)
                return None
            self._success()
            usage = getattr(res, "usage", None)
            tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
            self._log("embed", "ok", started, prompt_tokens=tokens, cost_fen=self._cost(tokens, 0))
            return vectors
        except Exception as exc:
            self._log("embed", "error", started, error=type(exc).__name__)
            return None

    # -- chat --------------------------------------------------------------------------------------
    def _chat(self, messages: list[dict[str, str]], creator_id: int | str | None,
              schema: type[BaseModel] | None, started: float) -> Answer | None:
        assert self.client is not None
        key = self._cache_key(messages, schema)
        hit = self._cached(key, schema)
        if hit is not None:
            self._log("chat", "cached", started)
            return hit
        if not self._quota_allows(creator_id):
            self._log("chat", "quota", started)
            return None
        if not self._breaker_allows():
            self._log("chat", "breaker_open", started)
            return None
        kwargs: dict[str, Any] = {}
        if schema is not None:
            kwargs["response_format"] = {"type": "json_object"}
        try:
            res = self.client.chat.completions.create(
                model=self.settings.AI_MODEL, messages=messages, **kwargs)  # type: ignore[arg-type]
            content = res.choices[0].message.content or ""
            usage = res.usage
            p_tok = int(getattr(usage, "prompt_tokens", 0) or 0)
            c_tok = int(getattr(usage, "completion_tokens", 0) or 0)
            data = _validate(content, schema)
        except (openai.OpenAIError, _Invalid, IndexError, AttributeError, TypeError) as exc:
            self._failure()
            self._log("chat", _outcome(exc), started)
            return None
        self._success()
        cost = self._cost(p_tok, c_tok)
        answer = Answer(content=content, data=data, prompt_tokens=p_tok, completion_tokens=c_tok,
                        cost_fen=cost)
        if self.settings.AI_CACHE_S > 0:
            self.redis.set(key, json.dumps({"content": content}), ex=self.settings.AI_CACHE_S)
        self._log("chat", "ok", started, prompt_tokens=p_tok, completion_tokens=c_tok, cost_fen=cost)
        return answer

    def _cache_key(self, messages: list[dict[str, str]], schema: type[BaseModel] | None) -> str:
        blob = json.dumps([self.settings.AI_MODEL, messages, schema.__name__ if schema else None],
                          ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return f"{_PREFIX}cache:{hashlib.sha256(blob.encode()).hexdigest()}"

    def _cached(self, key: str, schema: type[BaseModel] | None) -> Answer | None:
        if self.settings.AI_CACHE_S <= 0:
            return None
        raw = self.redis.get(key)
        if raw is None:
            return None
        try:  # the cache is re-validated too: a schema may have changed since it was written
            content = json.loads(raw)["content"]
            return Answer(content=content, data=_validate(content, schema), cached=True)
        except (ValueError, KeyError, TypeError, _Invalid):
            self.redis.delete(key)
            return None

    # -- quota -------------------------------------------------------------------------------------
    def _quota_allows(self, creator_id: int | str | None) -> bool:
        if creator_id is None:
            return True
        day = dt.datetime.now(_BEIJING).strftime("%Y%m%d")
        key = f"{_PREFIX}quota:{creator_id}:{day}"
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, 2 * 86_400)
        used = int(pipe.execute()[0])
        return used <= self.settings.AI_DAILY_QUOTA

    # -- circuit breaker -------------------------------------------------------------------------
    # fails: consecutive failures; open: present while open (expires after AI_BREAKER_OPEN_S);
    # tripped: the breaker opened and has not closed since (open gone + tripped = half-open);
    # trial: the one call allowed while half-open.
    def _breaker_allows(self) -> bool:
        if not self.redis.exists(_PREFIX + "breaker:tripped"):
            return True
        if self.redis.exists(_PREFIX + "breaker:open"):
            return False
        bound = int(self.settings.AI_TIMEOUT_S * (self.settings.AI_RETRIES + 1)) + 10
        return bool(self.redis.set(_PREFIX + "breaker:trial", "1", nx=True, ex=bound))

    def _success(self) -> None:
        self.redis.delete(_PREFIX + "breaker:fails", _PREFIX + "breaker:tripped",
                          _PREFIX + "breaker:trial")

    def _failure(self) -> None:
        half_open = bool(self.redis.exists(_PREFIX + "breaker:tripped"))
        fails = int(self.redis.incr(_PREFIX + "breaker:fails"))
        if half_open or fails >= self.settings.AI_BREAKER_FAILURES:
            pipe = self.redis.pipeline()
            pipe.set(_PREFIX + "breaker:open", "1", ex=self.settings.AI_BREAKER_OPEN_S)
            pipe.set(_PREFIX + "breaker:tripped", "1")
            pipe.delete(_PREFIX + "breaker:fails", _PREFIX + "breaker:trial")
            pipe.execute()
            log.warning("ai breaker open for %ss", self.settings.AI_BREAKER_OPEN_S)

    # -- log ---------------------------------------------------------------------------------------
    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        s = self.settings
        return round(prompt_tokens / 1000 * s.AI_PRICE_IN_PER_1K_FEN
                     + completion_tokens / 1000 * s.AI_PRICE_OUT_PER_1K_FEN, 4)

    def _log(self, kind: str, outcome: str, started: float, *, prompt_tokens: int = 0,
             completion_tokens: int = 0, cost_fen: float = 0.0, error: str = "") -> None:
        ms = int((time.monotonic() - started) * 1000)
        log.info("ai %s outcome=%s ms=%d prompt_tokens=%d completion_tokens=%d cost_fen=%s%s",
                 kind, outcome, ms, prompt_tokens, completion_tokens, cost_fen,
                 f" error={error}" if error else "")


def _validate(content: str, schema: type[BaseModel] | None) -> BaseModel | None:
    if schema is None:
        if not content.strip():
            raise _Invalid("empty content")
        return None
    try:
        return schema.model_validate(json.loads(_strip_fence(content)))
    except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
        raise _Invalid(type(exc).__name__) from None


def _strip_fence(content: str) -> str:
    """Models often wrap JSON in ```json fences; the fence is not part of the answer."""
    text = content.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, _Invalid | IndexError | AttributeError | TypeError | ValueError):
        return "invalid"
    return "error"
