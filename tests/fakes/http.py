"""Tiny reusable loopback HTTP server for protocol fakes.

Handlers are registered per (method, path) and run serialised under one lock, so
subclasses can mutate their state without further locking.

Two hooks for fakes of slow or flaky servers:
- `_stall_for(request)`: seconds to wait before answering (default 0). The request is recorded
  first and the wait happens outside the lock, so other requests (a client's retry, a second
  client) are recorded and answered meanwhile;
- `quiet_disconnects = True`: a client that hung up before the answer (a client timeout, as a
  stalled fake provokes on purpose) is expected, and the broken pipe is not printed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it. ``query`` keeps the last value of each key."""

    method: str
    path: str
    query: dict[str, str]
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class FakeResponse:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"

    @classmethod
    def of_json(cls, payload: Any, status: int = 200) -> FakeResponse:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        return cls(status=status, body=data)

    @classmethod
    def of_xml(cls, xml: str | bytes, status: int = 200) -> FakeResponse:
        data = xml.encode("utf-8") if isinstance(xml, str) else xml
        return cls(status=status, body=data, content_type="text/xml; charset=utf-8")

    @classmethod
    def of_text(cls, text: str, status: int) -> FakeResponse:
        return cls(status=status, body=text.encode("utf-8"), content_type="text/plain")


Handler = Callable[[RecordedRequest], FakeResponse]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    quiet_disconnects = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.quiet_disconnects and isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FakeServer:
    """ThreadingHTTPServer on 127.0.0.1:<ephemeral> in a daemon thread."""

    quiet_disconnects = False  # True: clients hanging up mid-answer are expected (see the module doc)

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._routes: dict[tuple[str, str], Handler] = {}
        self._requests: list[RecordedRequest] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- routing -------------------------------------------------------------------------
    def route(self, method: str, path: str, handler: Handler) -> None:
        """Register ``handler`` for ``method`` (e.g. "GET") and exact ``path`` ("/x/y")."""
        self._routes[(method.upper(), path)] = handler

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Self:
        if self._httpd is not None:
            return self
        httpd = _Server(("127.0.0.1", 0), _make_handler_class(self))
        httpd.quiet_disconnects = self.quiet_disconnects
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd, self._thread = None, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/`` (with trailing slash, like wechatpy's API_BASE_URL)."""
        return f"http://127.0.0.1:{self.port}/"

    def url(self, path: str) -> str:
        return self.base_url + path.lstrip("/")

    # -- recording -----------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if r.path == path and (method is None or r.method == method.upper())
        ]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- dispatch (called from server threads) -------------------------------------------
    def _stall_for(self, request: RecordedRequest) -> float:
        """Seconds to wait before answering `request` (called under the lock; 0: at once)."""
        return 0.0

    def _dispatch(self, request: RecordedRequest) -> FakeResponse:
        with self._lock:
            self._requests.append(request)
            stall = self._stall_for(request)
            if not stall:
                return self._handle(request)
        time.sleep(stall)  # outside the lock: retries and other clients are seen meanwhile
        with self._lock:
            return self._handle(request)

    def _handle(self, request: RecordedRequest) -> FakeResponse:
        """The route's answer (called under the lock)."""
        handler = self._routes.get((request.method, request.path))
        if handler is None:
            return FakeResponse.of_text("404 Not Found", 404)
        try:
            return handler(request)
        except Exception as exc:  # a bug in the fake must not hang the client
            return FakeResponse.of_text(f"fake handler error: {exc!r}", 500)


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _make_handler_class(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            request = RecordedRequest(
                method=self.command.upper(),
                path=parts.path,
                query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                body=_read_body(self),
                headers={k: v for k, v in self.headers.items()},
            )
            response = server._dispatch(request)
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return  # keep pytest output clean (and secrets in query strings out of logs)

    return _Handler
