"""The fake Bot API speaks Telegram's protocol to the real aiogram client."""

from __future__ import annotations

import asyncio

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramForbiddenError, TelegramRetryAfter, TelegramServerError
from aiogram.types import BufferedInputFile

from tests.fakes.telegram_api import FakeTelegramAPI

TOKEN = "987654:fake-token_for_the_fake_itself_0000"


@pytest.fixture(scope="module")
def fake() -> FakeTelegramAPI:
    with FakeTelegramAPI(TOKEN) as server:
        yield server


def _run(fake: FakeTelegramAPI, steps):  # noqa: ANN001, ANN202
    async def go():  # noqa: ANN202
        bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url.rstrip("/"))))
        try:
            return await steps(bot)
        finally:
            await bot.session.close()
    return asyncio.run(go())


def test_messages_photos_and_updates_round_trip(fake: FakeTelegramAPI) -> None:
    fake.reset()
    fake.push_update({"update_id": 7, "message": {
        "message_id": 1, "date": 0, "chat": {"id": 42, "type": "private"},
        "from": {"id": 42, "is_bot": False, "first_name": "A"}, "text": "/start"}})

    async def steps(bot: Bot):  # noqa: ANN202
        me = await bot.get_me()
        text = await bot.send_message(42, "你好")
        photo = await bot.send_photo(42, BufferedInputFile(b"\x89PNG", "p.png"), caption="海报")
        updates = await bot.get_updates(offset=0, timeout=1)
        return me, text, photo, updates

    me, text, photo, updates = _run(fake, steps)
    assert me.username == fake.username and text.text == "你好" and photo.photo
    assert [u.update_id for u in updates] == [7] and updates[0].message.text == "/start"
    assert [(s.method, s.text) for s in fake.sent_to(42)] == [("sendMessage", "你好"), ("sendPhoto", "海报")]


def test_injected_failures_surface_as_aiogram_exceptions(fake: FakeTelegramAPI) -> None:
    fake.reset()
    fake.fail_next(429, retry_after=4)
    fake.fail_next(403, chat_id=7)
    fake.fail_next(502)

    async def attempt(bot: Bot, chat: int) -> type[Exception] | int:
        try:
            await bot.send_message(chat, "x")
        except TelegramRetryAfter as exc:
            return exc.retry_after
        except (TelegramForbiddenError, TelegramServerError) as exc:
            return type(exc)
        return 0

    async def steps(bot: Bot):  # noqa: ANN202
        return [await attempt(bot, 7), await attempt(bot, 8), await attempt(bot, 7), await attempt(bot, 8)]

    assert _run(fake, steps) == [4, TelegramServerError, TelegramForbiddenError, 0]
    assert len(fake.sent) == 1


def test_rate_limit_answers_429_beyond_the_configured_rate(fake: FakeTelegramAPI) -> None:
    fake.reset()
    fake.limit_rate(5, retry_after=1)

    async def steps(bot: Bot):  # noqa: ANN202
        limited = 0
        for i in range(8):
            try:
                await bot.send_message(100 + i, "x")
            except TelegramRetryAfter:
                limited += 1
        return limited

    assert _run(fake, steps) == 3 and len(fake.sent) == 5
