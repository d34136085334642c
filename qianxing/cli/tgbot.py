"""`qianxing tgbot`: the Telegram bot by long polling (the `tgbot` line of the Procfile), and
the webhook switch.

Both publish the command menu first (setMyCommands, per language, from the command registry:
`TelegramSession.set_commands`); a refusal there is logged and does not stop the bot.

Polling: delete any webhook (Telegram refuses getUpdates while one is set), then loop
getUpdates (offset = last update_id + 1). Each batch is stored in bot_update exactly as the
webhook stores it (duplicates skipped) BEFORE the next getUpdates confirms it to Telegram, and
processed by the same code as the drain job (tasks.chat_updates). SIGTERM/SIGINT cancel the
long poll; the batch in hand is finished and the process exits 0.

Registered on the `qianxing` command in qianxing/cli/__init__.py.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

import click

from qianxing.cli.boot import boot
from qianxing.settings import Settings

if TYPE_CHECKING:
    from bots.telegram import TelegramSession

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0


def run_polling(settings: Settings, stop: threading.Event, timeout: int = 25,
                on_session: Callable[[TelegramSession], None] | None = None) -> int:
    """Poll until `stop` is set; how many new updates were stored. `on_session`, if given, is
    called with the TelegramSession once it exists (the signal handlers use it to interrupt
    a long poll)."""
    from aiogram.exceptions import TelegramAPIError

    from bots.telegram import Interrupted, TelegramSession
    from models.db import connection
    from models.inbox import store_telegram_updates
    from tasks.chat_updates import process_pending

    stored, offset, backoff = 0, None, 1.0
    with TelegramSession(settings) as session:
        if on_session is not None:
            on_session(session)
        session.delete_webhook()
        publish_commands(session)
        log.info("tgbot: polling (timeout %ss)", timeout)
        # updates stored but not processed before the last stop (or by a dead drain job)
        process_pending(session, schedule_retry=False)
        while not stop.is_set():
            try:
                payloads = session.get_updates(offset, timeout)
            except Interrupted:
                break
            except (TelegramAPIError, OSError, TimeoutError) as exc:
                log.warning("tgbot: getUpdates failed (%s); retrying in %.0fs", exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            try:
                if payloads:
                    with connection():
                        stored += len(store_telegram_updates(payloads))
                    offset = max(p["update_id"] for p in payloads) + 1  # stored: confirm them next poll
                # new updates, and earlier ones whose retry is due
                process_pending(session, schedule_retry=False)
            except Exception:  # noqa: BLE001 - the database or Redis is away: unconfirmed updates come again
                log.exception("tgbot: storing or processing failed; retrying in %.0fs", backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = 1.0
        if offset is not None:  # confirm the last batch, so a restart does not fetch it again
            try:
                session.run(session.bot.get_updates(offset=offset, timeout=0, limit=1))
            except (TelegramAPIError, OSError, TimeoutError):
                log.info("tgbot: could not confirm the last batch; it will be fetched (and skipped) again")
    log.info("tgbot: stopped")
    return stored


@click.command("tgbot")
@click.option("--set-webhook", "webhook_url", metavar="URL",
              help="point Telegram at URL (…/webhooks/telegram) with TELEGRAM_WEBHOOK_SECRET, then exit")
@click.option("--delete-webhook", is_flag=True, help="remove the webhook (pending updates are kept), then exit")
@click.option("--timeout", default=25, show_default=True, type=click.IntRange(0, 50),
              help="long-poll timeout in seconds")
def tgbot(webhook_url: str | None, delete_webhook: bool, timeout: int) -> None:
    """Run the Telegram bot by long polling, or switch it to the webhook."""
    settings = boot()
    if not settings.TELEGRAM_BOT_TOKEN:
        raise click.ClickException("TELEGRAM_BOT_TOKEN is not set")
    if webhook_url and delete_webhook:
        raise click.UsageError("--set-webhook and --delete-webhook exclude each other")
    if webhook_url or delete_webhook:
        _switch_webhook(settings, webhook_url)
        return

    stop = threading.Event()
    holder: dict[str, TelegramSession] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("tgbot: signal %s, stopping", signum)
        stop.set()
        session = holder.get("session")
        if session is not None:
            session.interrupt()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stored = run_polling(settings, stop, timeout, on_session=lambda s: holder.update(session=s))
    click.echo(f"tgbot stopped; {stored} new updates stored")


def publish_commands(session: TelegramSession) -> bool:
    """Set the bot's command menu; False (logged) when Telegram refused or was unreachable."""
    from aiogram.exceptions import TelegramAPIError

    try:
        log.info("tgbot: command menu set (%d scopes and languages)", session.set_commands())
        return True
    except (TelegramAPIError, OSError, TimeoutError) as exc:
        log.warning("tgbot: setMyCommands failed (%s); the command menu is unchanged", exc)
        return False


def _switch_webhook(settings: Settings, url: str | None) -> None:
    from aiogram.exceptions import TelegramAPIError

    from bots.telegram import TelegramSession

    if url:
        if not settings.TELEGRAM_WEBHOOK_SECRET:
            raise click.ClickException("TELEGRAM_WEBHOOK_SECRET must be set to use a webhook")
        if not url.startswith(("https://", "http://")):
            raise click.UsageError("the webhook URL must be an http(s) URL")
    with TelegramSession(settings) as session:
        try:
            if url:
                session.set_webhook(url, settings.TELEGRAM_WEBHOOK_SECRET or "")
                publish_commands(session)
            else:
                session.delete_webhook()
            info = session.webhook_info()
        except TelegramAPIError as exc:
            raise click.ClickException(f"Telegram refused: {exc}") from None
    click.echo(f"webhook set to {info.get('url')}" if url else "webhook deleted")
