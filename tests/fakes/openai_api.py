"""Fake OpenAI-compatible server on 127.0.0.1 for the real `openai` client.

Serves `POST /v1/chat/completions` and `POST /v1/embeddings` with the real response shapes (id,
object, created, model, choices[0].message.content, finish_reason, usage; embeddings
data[i].embedding with its index), and answers 401 without `Authorization: Bearer <key>`.

Test controls (each stays in force until `reset()`): `answer(content)`, `stall(seconds)` (waits
before answering, outside the fake's lock so retries are seen at once), `fail(status)`,
`malformed()` (content that is not JSON), `invent_number(n)` (a fluent answer that quotes the
number n, for the grounding guards). Requests are recorded (`chat_calls`, `embed_calls`).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import struct
import time
from typing import Any

from tests.fakes.http import FakeResponse, FakeServer, RecordedRequest

CHAT, EMBED = "/v1/chat/completions", "/v1/embeddings"
EMBED_DIM = 8


class FakeOpenAI(FakeServer):
    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self._ids = itertools.count(1)
        self.reset()
        self.route("POST", CHAT, self._chat)
        self.route("POST", EMBED, self._embed)

    @property
    def base_url_v1(self) -> str:
        """What AI_BASE_URL is set to (the openai client appends /chat/completions)."""
        return self.url("/v1")

    # -- test controls ---------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self.content: str | None = None  # None: echo a short answer about the last message
            self.stall_s = 0.0
            self.status = 200
            self.clear_requests()

    def answer(self, content: str | dict[str, Any]) -> None:
        with self._lock:
            self.content = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
            self.status = 200

    def stall(self, seconds: float) -> None:
        with self._lock:
            self.stall_s = seconds

    def fail(self, status: int = 500) -> None:
        with self._lock:
            self.status = status

    def malformed(self) -> None:
        self.answer('{"title": "好物推荐", "lines": ["家人们')

    def invent_number(self, number: int | float | str) -> None:
        self.answer(f"这款会员卡今天只要{number}元，下单立减，库存充足，放心买！")

    @property
    def chat_calls(self) -> list[RecordedRequest]:
        return self.requests_to(CHAT, "POST")

    @property
    def embed_calls(self) -> list[RecordedRequest]:
        return self.requests_to(EMBED, "POST")

    # -- serving: recorded on arrival, then the stall outside the lock (tests/fakes/http.py) -------
    quiet_disconnects = True  # a client that gave up on a stalled answer (a timeout) is expected

    def _stall_for(self, request: RecordedRequest) -> float:
        return self.stall_s

    # -- handlers --------------------------------------------------------------------------------
    def _refuse(self, request: RecordedRequest) -> FakeResponse | None:
        auth = {k.lower(): v for k, v in request.headers.items()}.get("authorization")
        if auth != f"Bearer {self.api_key}":
            return FakeResponse.of_json({"error": {"message": "Incorrect API key provided",
                                                   "type": "invalid_request_error",
                                                   "code": "invalid_api_key"}}, status=401)
        if self.status != 200:
            return FakeResponse.of_json({"error": {"message": "The server had an error",
                                                   "type": "server_error"}}, status=self.status)
        return None

    def _chat(self, request: RecordedRequest) -> FakeResponse:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        body = request.json()
        messages = body.get("messages") or []
        last = str(messages[-1].get("content", "")) if messages else ""
        content = self.content if self.content is not None else f"收到：{last[:20]}"
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages)
        completion_tokens = len(content)
        return FakeResponse.of_json({
            "id": f"chatcmpl-fake{next(self._ids)}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", ""),
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })

    def _embed(self, request: RecordedRequest) -> FakeResponse:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        body = request.json()
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        b64 = body.get("encoding_format") == "base64"  # what the openai client asks for by default
        data = [{"object": "embedding", "index": i,
                 "embedding": _b64(vector(t)) if b64 else vector(t)} for i, t in enumerate(texts)]
        tokens = sum(len(t) for t in texts)
        return FakeResponse.of_json({"object": "list", "data": data, "model": body.get("model", ""),
                                     "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def _b64(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def vector(text: str) -> list[float]:
    """A deterministic unit-ish vector per text (the same text, the same vector)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round((b - 127.5) / 127.5, 6) for b in digest[:EMBED_DIM]]
