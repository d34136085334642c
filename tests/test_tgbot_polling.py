"""`qianxing tgbot`: long polling against the fake Bot API (updates pushed with push_update),
stored like the webhook stores them and processed by the drain code; the webhook switch; a
clean exit on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from models.chat import BotUpdate
from models.db import connection
from qianxing.cli.tgbot import run_polling
from qianxing.settings import Settings
from tests.conftest import TG_SECRET
from tests.fakes.telegram_api import FakeTelegramAPI, _params


@pytest.fixture
def cli(cli: Callable[..., Any]) -> Callable[..., Any]:
    """`qianxing tgbot ...` through the shared CLI fixture."""
    return lambda *args: cli("tgbot", *args)


def test_set_webhook_passes_the_secret_and_keeps_pending_updates(cli, telegram: FakeTelegramAPI) -> None:  # noqa: ANN001
    # when the operator points Telegram at the webhook
    result = cli("--set-webhook", "https://shop.example.com/webhooks/telegram")
    # then setWebhook carried the URL, the secret token, the update types, and kept pending updates
    assert result.exit_code == 0, result.output
    assert "webhook set to https://shop.example.com/webhooks/telegram" in result.output
    hook = telegram.webhook
    assert hook["url"] == "https://shop.example.com/webhooks/telegram"
    assert hook["secret_token"] == TG_SECRET
    assert hook["drop_pending_updates"] in ("false", "False", False)
    assert "chat_member" in hook["allowed_updates"] and "callback_query" in hook["allowed_updates"]
    # and --delete-webhook removes it
    result = cli("--delete-webhook")
    assert result.exit_code == 0 and "webhook deleted" in result.output and telegram.webhook == {}


def test_webhook_options_are_checked(cli, telegram: FakeTelegramAPI, monkeypatch) -> None:  # noqa: ANN001
    assert cli("--set-webhook", "x", "--delete-webhook").exit_code == 2
    assert cli("--set-webhook", "ftp://example.com/hook").exit_code == 2
    monkeypatch.delenv("TELEGRAM_WEBHOOK_SECRET")
    result = cli("--set-webhook", "https://shop.example.com/webhooks/telegram")
    assert result.exit_code == 1 and "TELEGRAM_WEBHOOK_SECRET" in result.output
    assert telegram.webhook == {}


def _env(settings: Settings) -> dict[str, str]:
    env = {**os.environ}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[name] = str(value)
    return env


def _wait(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_the_polling_process_deletes_the_webhook_and_exits_cleanly_on_sigterm(
        settings: Settings, telegram: FakeTelegramAPI) -> None:
    # given a webhook left over from a webhook deployment
    telegram.webhook = {"url": "https://old.example.com/webhooks/telegram"}
    # when `qianxing tgbot` runs as a real process
    proc = subprocess.Popen([sys.executable, "-m", "qianxing.cli", "tgbot", "--timeout", "20"],
                            env=_env(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # then it deleted the webhook and long-polls
        # (a fresh process imports aiogram first: seconds of CPU on a loaded host)
        assert _wait(lambda: any(r.path.endswith("/getUpdates") for r in telegram.requests), 60), proc.poll()
        assert telegram.webhook == {}
        # and on SIGTERM it stops promptly with exit code 0
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out.decode()
    assert b"tgbot stopped" in out


def stored_keys() -> list[tuple[str, str]]:
    with connection():
        return [(u.update_key, u.state) for u in BotUpdate.select().order_by(BotUpdate.id)]


@pytest.fixture
def polling(settings: Settings, telegram: FakeTelegramAPI) -> Iterator[Callable[[], None]]:
    """Run the polling loop in a thread; stop it (as SIGTERM would) at the end."""
    stop = threading.Event()
    sessions: list[Any] = []
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["stored"] = run_polling(settings, stop, timeout=1, on_session=sessions.append)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the test below
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)

    def start() -> None:
        thread.start()

    yield start
    stop.set()
    for s in sessions:
        s.interrupt()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert "error" not in result, result.get("error")


def test_polling_stores_processes_and_answers_each_update_once(
        polling: Callable[[], None], telegram: FakeTelegramAPI) -> None:
    from tests.factories import creator

    owner = creator("owner-poll", name="阿星")
    start = {"update_id": 500, "message": {
        "message_id": 1, "date": 1_700_000_000, "chat": {"id": 4004, "type": "private"},
        "from": {"id": 4004, "is_bot": False, "first_name": "Poll"}, "text": f"/start {owner.code}",
        "entities": [{"type": "bot_command", "offset": 0, "length": 6}]}}
    # given an update waiting at the Bot API, and the polling loop running
    telegram.push_update(start)
    polling()
    # then it is stored, processed, and answered at the fake
    assert _wait(lambda: stored_keys() == [("500", "done")] and len(telegram.sent_to(4004)) == 1)
    assert "绑定成功" in telegram.sent_to(4004)[0].text
    # when Telegram hands out the same update again (say after a restart) and a new one
    telegram.push_update(start)
    telegram.push_update({**start, "update_id": 501, "message": {**start["message"], "text": "/help",
                                                                "entities": [{"type": "bot_command",
                                                                              "offset": 0, "length": 5}]}})
    # then only the new one is processed and answered
    assert _wait(lambda: stored_keys() == [("500", "done"), ("501", "done")] and len(telegram.sent_to(4004)) == 2)
    time.sleep(0.3)
    assert len(telegram.sent_to(4004)) == 2
    # and each getUpdates confirmed what was stored before it (offset = last update_id + 1)
    offsets = [_params(r).get("offset") for r in telegram.requests if r.path.endswith("/getUpdates")]
    assert offsets[0] is None and "501" in offsets and "502" in offsets
