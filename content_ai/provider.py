"""The model provider: one client layer over any OpenAI-compatible server (the `openai` package).

Only `chat.completions.create` and `embeddings.create` are used (compatible servers differ in the
rest). Every call answers or returns None, and None means "use the offline path": no model
configured, the circuit breaker open, the creator's daily quota used up, a timeout, a 5xx, or
content that is not the JSON the schema asks for. Nothing here raises to the caller.

State lives in Redis so every process shares it:
- circuit breaker: AI_BREAKER_FAILURES consecutive failures open it for AI_BREAKER_OPEN_S; then
  one trial call (half-open) closes it on success or opens it again on failure. Chat and
  embeddings have a breaker each: a server without an embeddings endpoint (DeepSeek, a llama.cpp
  server started without --embedding) must not stop the chat calls;
- response cache: a hash of (model, messages, schema name) for AI_CACHE_S;
- quota: model calls per creator per Beijing day, AI_DAILY_QUOTA.

One log line per call on logger "content_ai.provider": outcome, latency, tokens, estimated cost;
and beside it one `ai_call` row (models/ai_calls.py: kind, the caller's `purpose` label, creator,
model, outcome, latency, tokens, cost in integer milli-fen). Never the key, never the prompt. A
database that refuses the row never breaks the call. Outcomes: ok, cached, timeout, http_5xx,
http_4xx (a refused key, a rate limit), connection (nothing listening), invalid (not what was
asked for), breaker_open, quota, error (anything else).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import openai
from pydantic import BaseModel, ValidationError

from models import ai_calls

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
    cost_fen: float = 0.0  # the estimate in fen, 4 decimals (kept for readers of the float)
    cost_mfen: int = 0  # the same estimate in integer milli-fen (1/1000 fen), rounded up


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
             schema: type[BaseModel] | None = None, purpose: str = "") -> Answer | None:
        """The model's answer, validated by `schema` when given; None: use the offline path.

        With a schema the server is asked for JSON mode (`response_format` json_object), which
        OpenAI and DeepSeek accept only when the messages themselves ask for JSON. `purpose` is a
        short label for the call log ("answer", "script", "talk_track", "hint", ...)."""
        if self.client is None:
            return None
        started = time.monotonic()
        call = _Call("chat", purpose, ai_calls.creator_key(creator_id), self.settings.AI_MODEL)
        try:
            return self._chat(messages, creator_id, schema, started, call)
        except Exception as exc:  # a bug or a Redis outage must not reach the user either
            self._log(call, "error", started, error=type(exc).__name__)
            return None

    def embed(self, texts: list[str], *, purpose: str = "") -> list[list[float]] | None:
        """One vector per text; None: use the offline path. `purpose`: as for `chat`."""
        if self.client is None or not texts:
            return None
        started = time.monotonic()
        call = _Call("embed", purpose, None, self.settings.AI_EMBED_MODEL)
        try:
            if not self._breaker_allows("embed"):
                self._log(call, "breaker_open", started)
                return None
            try:
                res = self.client.embeddings.create(model=self.settings.AI_EMBED_MODEL, input=texts)
                vectors = [list(map(float, d.embedding)) for d in sorted(res.data, key=lambda d: d.index)]
                if len(vectors) != len(texts):
                    raise _Invalid("vector count")
            except (openai.OpenAIError, _Invalid, TypeError, ValueError, AttributeError) as exc:
                self._failure("embed")
                self._log(call, _outcome(exc), started)
                return None
            self._success("embed")
            usage = getattr(res, "usage", None)
            tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
            self._log(call, "ok", started, prompt_tokens=tokens)
            return vectors
        except Exception as exc:
            self._log(call, "error", started, error=type(exc).__name__)
            return None

    # -- chat --------------------------------------------------------------------------------------
    def _chat(self, messages: list[dict[str, str]], creator_id: int | str | None,
              schema: type[BaseModel] | None, started: float, call: _Call) -> Answer | None:
        assert self.client is not None
        key = self._cache_key(messages, schema)
        hit = self._cached(key, schema)
        if hit is not None:
            self._log(call, "cached", started)
            return hit
        if not self._quota_allows(creator_id):
            self._log(call, "quota", started)
            return None
        if not self._breaker_allows():
            self._log(call, "breaker_open", started)
            return None
        kwargs: dict[str, Any] = {}
        if schema is not None:
            kwargs["response_format"] = {"type": "json_object"}
        p_tok = c_tok = 0
        try:
            res = self.client.chat.completions.create(
                model=self.settings.AI_MODEL, messages=messages, **kwargs)  # type: ignore[arg-type]
            usage = res.usage
            p_tok = int(getattr(usage, "prompt_tokens", 0) or 0)
            c_tok = int(getattr(usage, "completion_tokens", 0) or 0)
            content = res.choices[0].message.content or ""
            data = _validate(content, schema)
        except (openai.OpenAIError, _Invalid, IndexError, AttributeError, TypeError) as exc:
            self._failure()  # an answer that is not what was asked for was still paid for: its tokens are logged
            self._log(call, _outcome(exc), started, prompt_tokens=p_tok, completion_tokens=c_tok)
            return None
        self._success()
        answer = Answer(content=content, data=data, prompt_tokens=p_tok, completion_tokens=c_tok,
                        cost_fen=self._cost(p_tok, c_tok), cost_mfen=self._cost_mfen(p_tok, c_tok))
        if self.settings.AI_CACHE_S > 0:
            self.redis.set(key, json.dumps({"content": content}), ex=self.settings.AI_CACHE_S)
        self._log(call, "ok", started, prompt_tokens=p_tok, completion_tokens=c_tok)
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
        key = _quota_key(creator_id, dt.datetime.now(_BEIJING).date())
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, 2 * 86_400)
        used = int(pipe.execute()[0])
        return used <= self.settings.AI_DAILY_QUOTA

    def quota_used(self, creator_ids: list[int], day: dt.date | None = None) -> dict[int, int]:
        """Model calls counted against each creator's quota on a Beijing day (today by default),
        as the quota sees them (refused calls count too); for the admin's usage page."""
        if not creator_ids:
            return {}
        day = day or dt.datetime.now(_BEIJING).date()
        values = self.redis.mget([_quota_key(c, day) for c in creator_ids])
        return {c: int(v or 0) for c, v in zip(creator_ids, values, strict=True)}

    # -- circuit breaker -------------------------------------------------------------------------
    # Per kind (chat: ai:breaker:*, embed: ai:breaker:embed:*). fails: consecutive failures; open:
    # present while open (expires after AI_BREAKER_OPEN_S); tripped: the breaker opened and has
    # not closed since (open gone + tripped = half-open); trial: the one call allowed while half-open.
    @staticmethod
    def _bkey(kind: str, name: str) -> str:
        return f"{_PREFIX}breaker:{name}" if kind == "chat" else f"{_PREFIX}breaker:{kind}:{name}"

    def _breaker_allows(self, kind: str = "chat") -> bool:
        if not self.redis.exists(self._bkey(kind, "tripped")):
            return True
        if self.redis.exists(self._bkey(kind, "open")):
            return False
        bound = int(self.settings.AI_TIMEOUT_S * (self.settings.AI_RETRIES + 1)) + 10
        return bool(self.redis.set(self._bkey(kind, "trial"), "1", nx=True, ex=bound))

    def breaker_state(self, kind: str = "chat") -> dict[str, Any]:
        """For the admin: `state` closed | open | half_open, `open_for_s` (seconds until the
        trial call while open), `fails` (consecutive failures while closed)."""
        tripped = bool(self.redis.exists(self._bkey(kind, "tripped")))
        ttl = int(self.redis.ttl(self._bkey(kind, "open")) or -2)
        fails = int(self.redis.get(self._bkey(kind, "fails")) or 0)
        if tripped and ttl > 0:
            return {"state": "open", "open_for_s": ttl, "fails": fails}
        if tripped:
            return {"state": "half_open", "open_for_s": 0, "fails": fails}
        return {"state": "closed", "open_for_s": 0, "fails": fails}

    def _success(self, kind: str = "chat") -> None:
        self.redis.delete(self._bkey(kind, "fails"), self._bkey(kind, "tripped"), self._bkey(kind, "trial"))

    def _failure(self, kind: str = "chat") -> None:
        half_open = bool(self.redis.exists(self._bkey(kind, "tripped")))
        fails = int(self.redis.incr(self._bkey(kind, "fails")))
        if half_open or fails >= self.settings.AI_BREAKER_FAILURES:
            pipe = self.redis.pipeline()
            pipe.set(self._bkey(kind, "open"), "1", ex=self.settings.AI_BREAKER_OPEN_S)
            pipe.set(self._bkey(kind, "tripped"), "1")
            pipe.delete(self._bkey(kind, "fails"), self._bkey(kind, "trial"))
            pipe.execute()
            log.warning("ai %s breaker open for %ss", kind, self.settings.AI_BREAKER_OPEN_S)

    # -- log ---------------------------------------------------------------------------------------
    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        s = self.settings
        return round(prompt_tokens / 1000 * s.AI_PRICE_IN_PER_1K_FEN
                     + completion_tokens / 1000 * s.AI_PRICE_OUT_PER_1K_FEN, 4)

    def _cost_mfen(self, prompt_tokens: int, completion_tokens: int) -> int:
        """The estimate in integer milli-fen, rounded up: a price per 1K tokens in fen is the
        price per token in milli-fen."""
        s = self.settings
        exact = prompt_tokens * s.AI_PRICE_IN_PER_1K_FEN + completion_tokens * s.AI_PRICE_OUT_PER_1K_FEN
        return math.ceil(round(exact, 6))  # round first: 0.1 * 3 must not become 1 too many

    def _log(self, call: _Call, outcome: str, started: float, *, prompt_tokens: int = 0,
             completion_tokens: int = 0, error: str = "") -> None:
        ms = int((time.monotonic() - started) * 1000)
        cost_fen = self._cost(prompt_tokens, completion_tokens)
        log.info("ai %s outcome=%s ms=%d prompt_tokens=%d completion_tokens=%d cost_fen=%s%s",
                 call.kind, outcome, ms, prompt_tokens, completion_tokens, cost_fen,
                 f" error={error}" if error else "")
        ai_calls.record(ai_calls.CallRow(
            kind=call.kind, outcome=outcome, model=call.model, purpose=call.purpose, creator_id=call.creator_id,
            latency_ms=ms, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
            cost_mfen=self._cost_mfen(prompt_tokens, completion_tokens)))


@dataclass(frozen=True)
class _Call:
    """What the call log needs to know about a call besides its outcome (never the prompt)."""

    kind: str  # chat | embed
    purpose: str
    creator_id: int | None
    model: str


def _quota_key(creator_id: int | str, day: dt.date) -> str:
    return f"{_PREFIX}quota:{creator_id}:{day.strftime('%Y%m%d')}"


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
    if isinstance(exc, openai.APITimeoutError):  # a subclass of APIConnectionError: first
        return "timeout"
    if isinstance(exc, openai.APIStatusError):
        return "http_5xx" if exc.status_code >= 500 else "http_4xx"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, _Invalid | IndexError | AttributeError | TypeError | ValueError):
        return "invalid"
    return "error"
