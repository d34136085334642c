"""Fake of the Telegram Bot API (api.telegram.org) on 127.0.0.1 for the real aiogram client.

aiogram talks to it through `AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url))`:
requests are `POST /bot{token}/{method}` with form or multipart bodies; answers are
`{"ok": true, "result": ...}` or `{"ok": false, "error_code": 429, "description": ...,
"parameters": {"retry_after": N}}`.

Served methods: getMe, sendMessage, sendPhoto, answerCallbackQuery, getUpdates (from a queue
the test fills), setWebhook, deleteWebhook, getWebhookInfo, setMyCommands and getMyCommands (the
command menus are kept per scope type and language code, as Telegram keeps them). Every delivered message is recorded
with its arrival time (for rate checks); failures (429 with retry_after, 5xx, 400/403) can be
injected for the next N calls, or for a chat, or as a rate limit the fake enforces itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl

from tests.fakes.http import FakeResponse, FakeServer, RecordedRequest, _make_handler_class

SEND_METHODS = ("sendMessage", "sendPhoto")


@dataclass(frozen=True)
class Sent:
    method: str
    chat_id: str
    text: str
    at: float  # time.monotonic() on arrival
    params: dict[str, Any]
    has_photo: bool = False


@dataclass
class _Injected:
    error_code: int
    description: str
    retry_after: int | None = None
    chat_id: str | None = None  # only for this chat
    times: int = 1


@dataclass
class _RateLimit:
    per_s: float  # global accepted messages per second before answering 429
    retry_after: int = 1
    window: deque = field(default_factory=deque)


def _params(request: RecordedRequest) -> dict[str, Any]:
    """Form, multipart or JSON body (aiogram sends multipart when a file is attached)."""
    ctype = request.headers.get("Content-Type", "")
    if "multipart/form-data" in ctype:
        return _multipart(request.body, ctype)
    if "application/json" in ctype:
        return json.loads(request.body or b"{}")
    params: dict[str, Any] = dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
    params.update(request.query)
    return params


def _multipart(body: bytes, ctype: str) -> dict[str, Any]:
    boundary = ctype.split("boundary=", 1)[1].strip().strip('"').encode()
    out: dict[str, Any] = {}
    for part in body.split(b"--" + boundary):
        if b"\r\n\r\n" not in part:
            continue
        head, _, value = part.partition(b"\r\n\r\n")
        value = value.removesuffix(b"\r\n")
        name = None
        for token in head.decode("utf-8", "replace").split(";"):
            token = token.strip()
            if token.startswith("name="):
                name = token[5:].strip('"')
        if name is None:
            continue
        is_file = b"filename=" in head
        out[name] = value if is_file else value.decode("utf-8", "replace")
    return out


class FakeTelegramAPI(FakeServer):
    def __init__(self, token: str, username: str = "qianxing_test_bot") -> None:
        super().__init__()
        self.token, self.username = token, username
        self.sent: list[Sent] = []
        self.callback_answers: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] = {}
        # (scope type, language code or "") -> [{"command": ..., "description": ...}]
        self.my_commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self._updates: deque[dict[str, Any]] = deque()
        self._injected: list[_Injected] = []
        self._rate: _RateLimit | None = None
        self._next_message_id = 1
        self._update_event = threading.Event()
        for method in ("getMe", *SEND_METHODS, "answerCallbackQuery", "getUpdates", "setWebhook",
                       "deleteWebhook", "getWebhookInfo", "setMyCommands", "getMyCommands"):
            self.route("POST", f"/bot{token}/{method}", self._handler(method))
            self.route("GET", f"/bot{token}/{method}", self._handler(method))

    def start(self) -> Self:
        """As FakeServer.start, but HTTP/1.1 keep-alive with TCP_NODELAY: aiogram keeps its
        connections open, so a run at 1,000 messages/s pays neither a connection nor a server
        thread per message (and no Nagle delay on the split header/body writes)."""
        if self._httpd is not None:
            return self

        class KeepAlive(_make_handler_class(self)):  # type: ignore[misc, valid-type]
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    # -- test controls ---------------------------------------------------------------------
    def fail_next(self, error_code: int = 429, *, retry_after: int | None = None, times: int = 1,
                  chat_id: str | int | None = None, description: str | None = None) -> None:
        """Answer the next `times` send calls (to `chat_id`, if given) with an error."""
        desc = description or {429: f"Too Many Requests: retry after {retry_after or 1}",
                               400: "Bad Request: chat not found",
                               403: "Forbidden: bot was blocked by the user"}.get(
            error_code, "Internal Server Error")
        with self._lock:
            self._injected.append(_Injected(error_code, desc, retry_after if error_code == 429 else None,
                                            str(chat_id) if chat_id is not None else None, times))

    def limit_rate(self, per_s: float | None, retry_after: int = 1) -> None:
        """Enforce a global rate: sends beyond `per_s` in any 1-second window get a 429."""
        with self._lock:
            self._rate = _RateLimit(per_s, retry_after) if per_s else None

    def push_update(self, update: dict[str, Any]) -> None:
        """Queue an update for getUpdates (long polling)."""
        with self._lock:
            self._updates.append(update)
        self._update_event.set()

    def sent_to(self, chat_id: str | int) -> list[Sent]:
        with self._lock:
            return [s for s in self.sent if s.chat_id == str(chat_id)]

    def reset(self) -> None:
        with self._lock:
            self.sent.clear()
            self.callback_answers.clear()
            self._updates.clear()
            self._injected.clear()
            self._rate = None
            self.webhook = {}
            self.my_commands.clear()
            self.clear_requests()

    # -- handlers --------------------------------------------------------------------------
    def _handler(self, method: str):  # noqa: ANN202
        def handle(request: RecordedRequest) -> FakeResponse:
            params = _params(request)
            if method == "getUpdates":
                return self._get_updates(params)
            if method in SEND_METHODS:
                return self._send(method, params)
            if method == "getMe":
                return _ok({"id": 424242, "is_bot": True, "first_name": "千星",
                            "username": self.username, "can_join_groups": True,
                            "can_read_all_group_messages": False, "supports_inline_queries": False})
            if method == "answerCallbackQuery":
                self.callback_answers.append(params)
                return _ok(True)
            if method == "setWebhook":
                self.webhook = params
                return _ok(True)
            if method == "deleteWebhook":
                self.webhook = {}
                return _ok(True)
            if method in ("setMyCommands", "getMyCommands"):
                return self._my_commands(method, params)
            return _ok({"url": self.webhook.get("url", ""), "has_custom_certificate": False,
                        "pending_update_count": len(self._updates)})
        return handle

    def _send(self, method: str, params: dict[str, Any]) -> FakeResponse:
        chat_id = str(params.get("chat_id", ""))
        if not chat_id:
            return _error(400, "Bad Request: chat_id is empty")
        for injected in list(self._injected):
            if injected.chat_id is None or injected.chat_id == chat_id:
                injected.times -= 1
                if injected.times <= 0:
                    self._injected.remove(injected)
                return _error(injected.error_code, injected.description, injected.retry_after)
        now = time.monotonic()
        if self._rate is not None:
            window = self._rate.window
            while window and now - window[0] >= 1.0:
                window.popleft()
            if len(window) >= self._rate.per_s:
                return _error(429, f"Too Many Requests: retry after {self._rate.retry_after}",
                              self._rate.retry_after)
            window.append(now)
        text = str(params.get("text") or params.get("caption") or "")
        self.sent.append(Sent(method, chat_id, text, now, params, has_photo=method == "sendPhoto"))
        message_id = self._next_message_id
        self._next_message_id += 1
        result: dict[str, Any] = {"message_id": message_id, "date": int(time.time()),
                                  "chat": {"id": int(chat_id) if chat_id.lstrip("-").isdigit() else 0,
                                           "type": "private"}}
        if method == "sendPhoto":
            result["photo"] = [{"file_id": f"photo-{message_id}", "file_unique_id": f"u{message_id}",
                                "width": 100, "height": 100}]
            result["caption"] = text
        else:
            result["text"] = text
        return _ok(result)

    def _my_commands(self, method: str, params: dict[str, Any]) -> FakeResponse:
        scope = _json_param(params.get("scope")) or {"type": "default"}
        key = (str(scope.get("type", "default")), str(params.get("language_code") or ""))
        if method == "getMyCommands":
            with self._lock:
                return _ok(list(self.my_commands.get(key, [])))
        commands = _json_param(params.get("commands"))
        if not isinstance(commands, list) or len(commands) > 100:
            return _error(400, "Bad Request: commands must be a list of at most 100 BotCommand")
        for c in commands:
            name, desc = str(c.get("command", "")), str(c.get("description", ""))
            if not (1 <= len(name) <= 32 and name == name.lower() and name.replace("_", "").isalnum()
                    and name.isascii() and 1 <= len(desc) <= 256):
                return _error(400, f"Bad Request: BOT_COMMAND_INVALID {name!r}")
        with self._lock:
            self.my_commands[key] = [{"command": c["command"], "description": c["description"]} for c in commands]
        return _ok(True)

    def _get_updates(self, params: dict[str, Any]) -> FakeResponse:
        offset = int(params.get("offset") or 0)
        while self._updates and self._updates[0].get("update_id", 0) < offset:
            self._updates.popleft()
        if not self._updates:
            # A short wait instead of the real long poll, released when an update arrives.
            self._lock.release()
            try:
                self._update_event.wait(timeout=min(float(params.get("timeout") or 0), 0.5))
                self._update_event.clear()
            finally:
                self._lock.acquire()
        batch = [u for u in self._updates if u.get("update_id", 0) >= offset][:100]
        return _ok(batch)


def _json_param(value: Any) -> Any:
    """A form field holding JSON (aiogram sends objects and lists as JSON strings)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _ok(result: Any) -> FakeResponse:
    return FakeResponse.of_json({"ok": True, "result": result})


def _error(code: int, description: str, retry_after: int | None = None) -> FakeResponse:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return FakeResponse.of_json(body, status=code)
