"""The shared fake server's hooks for slow and flaky servers (tests/fakes/http.py): a stall that
happens after the request is recorded and outside the lock, so other requests are answered
meanwhile; and `quiet_disconnects`, which keeps clients that hung up out of the test output while
any other server error is still printed."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.fakes.http import FakeResponse, FakeServer, RecordedRequest


class Slow(FakeServer):
    quiet_disconnects = True

    def __init__(self) -> None:
        super().__init__()
        self.route("GET", "/slow", lambda r: FakeResponse.of_text("slow", 200))
        self.route("GET", "/fast", lambda r: FakeResponse.of_text("fast", 200))

    def _stall_for(self, request: RecordedRequest) -> float:
        return 1.0 if request.path == "/slow" else 0.0


def fetch(url: str, out: dict[str, float], key: str) -> None:
    assert requests.get(url, timeout=10).text in ("slow", "fast")
    out[key] = time.monotonic()


def test_a_stalled_request_is_recorded_at_once_and_does_not_block_others():
    with Slow() as fake:
        # given a stalled request in flight
        done: dict[str, float] = {}
        slow = threading.Thread(target=fetch, args=(fake.url("/slow"), done, "slow"))
        slow.start()
        deadline = time.monotonic() + 5
        while not fake.requests_to("/slow") and time.monotonic() < deadline:
            time.sleep(0.01)
        # then it was recorded on arrival, before its answer
        assert [r.path for r in fake.requests] == ["/slow"] and "slow" not in done
        # when another request comes / then it is answered while the first still waits
        fetch(fake.url("/fast"), done, "fast")
        slow.join(timeout=10)
        assert done["fast"] < done["slow"]
        assert [r.path for r in fake.requests] == ["/slow", "/fast"]


@pytest.mark.parametrize(("quiet", "error", "printed"), [
    (True, ConnectionResetError, False),  # a client that hung up: expected, silent
    (True, ValueError, True),  # a real server error is still shown
    (False, ConnectionResetError, True),  # other fakes print as before
])
def test_quiet_disconnects(capsys, quiet, error, printed):
    server = Slow()
    server.quiet_disconnects = quiet
    with server as fake:
        try:
            raise error("boom")
        except Exception:  # noqa: BLE001 - handle_error reads the exception being handled
            fake._httpd.handle_error(None, ("127.0.0.1", 1))
    assert ("boom" in capsys.readouterr().err) is printed
