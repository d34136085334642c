"""The transports on their own: how each platform answer is classified, and what reaches the
fake servers (real aiogram and wechatpy clients)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from bots.sender import store_image
from bots.transport_telegram import TelegramTransport
from bots.transport_wechat import WeChatTransport, menu_choice, wechat_text
from bots.transports import ConsoleTransport, Outgoing, Result
from tests.conftest import OA_APPID, TG_TOKEN, free_port
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.wechat_api import FakeWeChatAPI

PNG = b"\x89PNG\r\n\x1a\n" + b"poster" * 100


def msg(payload: dict, chat: str = "1001", *, id: int = 1, paid: bool = False, platform: str = "telegram") -> Outgoing:  # noqa: A002
    return Outgoing(id=id, key=f"k{id}", platform=platform, chat_id=chat, chat_kind="private", payload=payload,
                    paid=paid)


def send_all(transport, *messages: Outgoing) -> list[Result]:  # noqa: ANN001
    async def go() -> list[Result]:
        async with transport:
            return [await transport.send(m) for m in messages]

    return asyncio.run(go())


@pytest.fixture
def tg(rt, telegram: FakeTelegramAPI, tmp_path: Path) -> TelegramTransport:  # noqa: ANN001
    return TelegramTransport(TG_TOKEN, telegram.base_url, redis=rt.redis, poster_dir=tmp_path)


# ---- Telegram --------------------------------------------------------------------------------


@pytest.mark.parametrize(("inject", "outcome", "status"), [
    (dict(error_code=429, retry_after=3), "retry_after", "429"),
    (dict(error_code=500), "transient", "5xx"),
    (dict(error_code=502), "transient", "5xx"),
    (dict(error_code=403), "permanent", "403"),
    (dict(error_code=400), "permanent", "400"),
])
def test_telegram_answers_are_classified(tg: TelegramTransport, telegram: FakeTelegramAPI, inject: dict,
                                         outcome: str, status: str) -> None:
    telegram.fail_next(**inject)
    (result,) = send_all(tg, msg({"text": "hi"}))
    assert (result.outcome, result.status) == (outcome, status)
    assert result.retry_after == (3.0 if outcome == "retry_after" else None)
    assert telegram.sent == []


def test_an_unreachable_bot_api_is_a_transient_network_error(rt, tmp_path: Path) -> None:  # noqa: ANN001
    transport = TelegramTransport(TG_TOKEN, f"http://127.0.0.1:{free_port()}", redis=rt.redis, poster_dir=tmp_path)
    (result,) = send_all(transport, msg({"text": "hi"}))
    assert result.outcome == "transient" and result.status in ("network", "timeout", "error")


def test_telegram_message_with_buttons_link_and_paid_flag(tg: TelegramTransport, telegram: FakeTelegramAPI) -> None:
    payload = {"text": "今晚直播", "link": "https://example.com/live",
               "buttons": [[{"text": "提醒我", "data": "remind"}, {"text": "打开", "url": "https://example.com/x"}]]}
    (result,) = send_all(tg, msg(payload, "2002", paid=True))
    assert result.ok
    (sent,) = telegram.sent_to(2002)
    assert sent.text == "今晚直播\nhttps://example.com/live"
    assert sent.params["allow_paid_broadcast"] == "true"
    assert json.loads(sent.params["reply_markup"])["inline_keyboard"] == [
        [{"text": "提醒我", "callback_data": "remind"}, {"text": "打开", "url": "https://example.com/x"}]]


def test_a_poster_with_a_long_text_is_photo_then_text_and_a_retry_skips_the_photo(
        tg: TelegramTransport, telegram: FakeTelegramAPI, tmp_path: Path) -> None:
    store_image(tmp_path, "long-poster", PNG)
    payload = {"text": "字" * 1500, "image_key": "long-poster"}  # over the 1,024-character caption

    class TextFailsOnce(TelegramTransport):
        """The Bot API answers 500 to the call right after the first photo of this pass."""

        failed = False

        async def _send_photo(self, *args: object, **kwargs: object) -> None:
            await super()._send_photo(*args, **kwargs)  # type: ignore[arg-type]
            if not TextFailsOnce.failed:
                TextFailsOnce.failed = True
                telegram.fail_next(500)

    flaky = TextFailsOnce(TG_TOKEN, telegram.base_url, redis=tg.redis, poster_dir=tmp_path)
    # when the message is tried, fails between its photo and its text, and is tried again
    results = send_all(flaky, msg(payload, "3004", id=32), msg(payload, "3004", id=32))
    # then the retry sent only the text: one photo, one text in all
    assert [r.outcome for r in results] == ["transient", "sent"]
    sent = telegram.sent_to(3004)
    assert [s.method for s in sent] == ["sendPhoto", "sendMessage"]
    assert sent[0].params.get("caption") is None and sent[1].text == "字" * 1500


def test_a_missing_image_is_permanent(tg: TelegramTransport) -> None:
    (result,) = send_all(tg, msg({"text": "x", "image_key": "not-there"}))
    assert result.outcome == "permanent" and "not-there" in (result.error or "")


# ---- WeChat official account -----------------------------------------------------------------


@pytest.fixture
def wx(rt, fake_wechat: FakeWeChatAPI, tmp_path: Path) -> WeChatTransport:  # noqa: ANN001
    fake_wechat.reset_app(OA_APPID)
    return WeChatTransport(rt.oa, redis=rt.redis, poster_dir=tmp_path)


def wx_msg(payload: dict, openid: str, id: int = 1) -> Outgoing:  # noqa: A002
    return msg(payload, openid, id=id, platform="wechat")


def test_wechat_text_with_links_and_a_numbered_menu(rt, wx: WeChatTransport, fake_wechat: FakeWeChatAPI) -> None:  # noqa: ANN001
    payload = {"text": "选一个", "buttons": [
        [{"text": "海报", "data": "CMD_POSTER"}, {"text": "团队", "data": "CMD_TEAM"}],
        [{"text": "商城", "url": "https://example.com/shop"}]]}
    (result,) = send_all(wx, wx_msg(payload, "oa-menu"))
    assert result.ok
    (sent,) = [m for m in fake_wechat.custom_messages if m["touser"] == "oa-menu"]
    content = sent["text"]["content"]
    assert content == wechat_text(payload)
    assert '<a href="https://example.com/shop">商城</a>' in content and "1. 海报" in content and "2. 团队" in content
    # and a number typed back is the button's data
    assert menu_choice(rt.redis, "oa-menu", "2") == "CMD_TEAM"
    assert menu_choice(rt.redis, "oa-menu", "9") is None and menu_choice(rt.redis, "oa-menu", "hi") is None


def test_wechat_image_is_uploaded_once_then_its_media_id_reused(wx: WeChatTransport, fake_wechat: FakeWeChatAPI,
                                                                tmp_path: Path) -> None:
    store_image(tmp_path, "wx-poster", PNG)
    before = len(fake_wechat.media_uploads)
    results = send_all(wx, wx_msg({"text": "你的海报", "image_key": "wx-poster"}, "oa-img-1", 1),
                       wx_msg({"image_key": "wx-poster"}, "oa-img-2", 2))
    assert [r.ok for r in results] == [True, True]
    assert len(fake_wechat.media_uploads) == before + 1
    media_id = fake_wechat.media_uploads[-1]["media_id"]
    first = [m for m in fake_wechat.custom_messages if m["touser"] == "oa-img-1"]
    second = [m for m in fake_wechat.custom_messages if m["touser"] == "oa-img-2"]
    assert [m["msgtype"] for m in first] == ["image", "text"] and first[0]["image"]["media_id"] == media_id
    assert [m["msgtype"] for m in second] == ["image"] and second[0]["image"]["media_id"] == media_id


@pytest.mark.parametrize(("errcode", "outcome"), [
    (45015, "permanent"), (43004, "permanent"), (40003, "permanent"), (45009, "transient"), (-1, "transient"),
])
def test_wechat_errcodes_are_classified(wx: WeChatTransport, fake_wechat: FakeWeChatAPI, errcode: int,
                                        outcome: str) -> None:
    fake_wechat.fail_next(1, errcode=errcode, endpoint="custom")
    (result,) = send_all(wx, wx_msg({"text": "hi"}, f"oa-err-{errcode}"))
    assert (result.outcome, result.status) == (outcome, f"errcode {errcode}")


def test_wechat_http_error_is_transient(wx: WeChatTransport, fake_wechat: FakeWeChatAPI) -> None:
    fake_wechat.fail_next(1, http_status=503, endpoint="custom")
    (result,) = send_all(wx, wx_msg({"text": "hi"}, "oa-503"))
    assert result.outcome == "transient"


def test_an_invalid_token_is_refreshed_once(wx: WeChatTransport, fake_wechat: FakeWeChatAPI) -> None:
    # given a token WeChat no longer accepts (another process fetched a new one, say)
    assert send_all(wx, wx_msg({"text": "warm"}, "oa-tok-0"))[0].ok
    fetches = fake_wechat.app_token_fetches.get(OA_APPID, 0)
    fake_wechat.fail_next(1, errcode=40001, endpoint="custom")
    (result,) = send_all(wx, wx_msg({"text": "after refresh"}, "oa-tok-1"))
    # then one new token was fetched and the message went out
    assert result.ok
    assert fake_wechat.app_token_fetches[OA_APPID] == fetches + 1
    assert [m["text"]["content"] for m in fake_wechat.custom_messages if m["touser"] == "oa-tok-1"] == ["after refresh"]


# ---- console ---------------------------------------------------------------------------------


def test_console_prints_and_collects() -> None:
    out = io.StringIO()
    console = ConsoleTransport(stream=out)
    payload = {"text": "你好", "image_key": "p1", "buttons": [[{"text": "团队", "data": "t"}]]}
    (result,) = send_all(console, msg(payload, "ann", platform="console"))
    assert result.ok and console.sent[0].payload == payload
    assert out.getvalue() == "你好\n[image p1]\n[团队]\n"
