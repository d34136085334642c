"""The official-account adapter's parts: the shared access_token, the menu command, message
mapping, reply rendering and the 5-second race between the passive reply and the sender."""

from __future__ import annotations

import json
import threading
import time

import pytest
import xmltodict
from redis import Redis

from bots import commands, wechat_oa, wechat_oa_auth
from bots.sender import payload_of
from bots.transport_wechat import menu_choice, wechat_text
from bots.types import Button, Incoming, Member, Reply
from qianxing.gateways.wechat import MiniProgramClient
from tests.conftest import OA_APPID, OA_SECRET
from tests.fakes.wechat_api import FakeWeChatAPI


@pytest.fixture
def oa_fake(rt, fake_wechat: FakeWeChatAPI) -> FakeWeChatAPI:  # noqa: ANN001
    """The fake WeChat API with the official account's token and menus forgotten."""
    fake_wechat.reset_app(OA_APPID)
    fake_wechat.menus.clear()
    return fake_wechat


# -- one access_token for every process ------------------------------------------------------
def test_two_clients_on_one_redis_fetch_the_token_once(rt, oa_fake, settings) -> None:  # noqa: ANN001
    # given the runtime's official-account client and a second one built like another process
    # would (its own Redis connection, same Redis)
    other = MiniProgramClient(OA_APPID, OA_SECRET, settings.WECHAT_OA_API_BASE_URL,
                              redis=Redis.from_url(settings.REDIS_URL))
    # when both need a token
    first, second = rt.oa.access_token, other.access_token
    # then the fake handed out one token, once, and both use it
    assert first == second == oa_fake.app_tokens[OA_APPID]
    assert oa_fake.app_token_fetches[OA_APPID] == 1
    # and both can call the API with it (the menu endpoint checks the token)
    rt.oa.menu.create(wechat_oa.MENU)
    other.menu.create(wechat_oa.MENU)
    assert len(oa_fake.menus) == 2 and oa_fake.app_token_fetches[OA_APPID] == 1
    # and the mini-program's token is a different one, kept apart
    assert rt.wechat.access_token != first


def test_a_rejected_token_is_refetched_once_for_everyone(rt, oa_fake, settings) -> None:  # noqa: ANN001
    other = MiniProgramClient(OA_APPID, OA_SECRET, settings.WECHAT_OA_API_BASE_URL,
                              redis=Redis.from_url(settings.REDIS_URL))
    assert rt.oa.access_token
    # given the token is invalidated at WeChat (40001 on the next call)
    oa_fake.app_tokens[OA_APPID] = "revoked-elsewhere"
    # when one client calls, wechatpy refetches and retries; the other then reads the new token
    rt.oa.menu.create(wechat_oa.MENU)
    assert other.access_token == rt.oa.access_token == oa_fake.app_tokens[OA_APPID]
    assert oa_fake.app_token_fetches[OA_APPID] == 2


# -- qianxing wechat menu ----------------------------------------------------------------
def test_wechat_menu_creates_the_menu_at_wechat(cli, oa_fake) -> None:  # noqa: ANN001
    # when the operator creates the menu
    result = cli("wechat", "menu")
    # then the fake holds it: three top buttons, CLICK entries carrying command keys
    assert result.exit_code == 0, result.output
    assert len(oa_fake.menus) == 1
    created = oa_fake.menus[0]
    keys = [b["key"] for top in created["button"] for b in top["sub_button"]]
    assert {"CMD_POSTER", "CMD_TEAM", "CMD_EARNINGS", "CMD_PRODUCTS", "CMD_VOUCHERS"} <= set(keys)
    assert len(created["button"]) <= 3 and all(len(t["sub_button"]) <= 5 for t in created["button"])
    assert all(b["type"] == "click" for t in created["button"] for b in t["sub_button"])
    assert "CMD_TEAM" in result.output
    # and it was made with the official account's token, not the mini-program's
    assert oa_fake.app_token_fetches[OA_APPID] == 1


def test_wechat_menu_dry_run_and_refusal(cli, oa_fake) -> None:  # noqa: ANN001
    result = cli("wechat", "menu", "--dry-run")
    assert result.exit_code == 0 and json.loads(result.output) == wechat_oa.MENU
    assert oa_fake.menus == []
    # given WeChat refuses (an injected system error on the menu is not possible: the token is
    # revoked and the secret wrong, so the refetch fails too)
    oa_fake.add_app(OA_APPID, "rotated-secret")
    try:
        oa_fake.reset_app(OA_APPID)
        result = cli("wechat", "menu")
    finally:
        oa_fake.add_app(OA_APPID, OA_SECRET)
    assert result.exit_code != 0 and "40125" in result.output
    assert oa_fake.menus == []


# -- mapping and rendering ---------------------------------------------------------------
def _message(xml: str):  # noqa: ANN202
    return wechat_oa.parse(xml)


def _event(event: str, key: str | None = None, openid: str = "o-abc", at: int = 1_700_000_000) -> str:
    key_xml = f"<EventKey><![CDATA[{key}]]></EventKey>" if key is not None else ""
    return (f"<xml><ToUserName>gh_x</ToUserName><FromUserName>{openid}</FromUserName><CreateTime>{at}"
            f"</CreateTime><MsgType>event</MsgType><Event>{event}</Event>{key_xml}</xml>")


def test_messages_and_events_become_the_cores_incoming() -> None:
    text = ("<xml><ToUserName>gh_x</ToUserName><FromUserName>o-abc</FromUserName><CreateTime>1700000000"
            "</CreateTime><MsgType>text</MsgType><Content> 海报 </Content><MsgId>42</MsgId></xml>")
    cases = {
        text: dict(text="海报", callback=None, start_payload=None),
        _event("CLICK", "CMD_TEAM"): dict(text="", callback="CMD_TEAM", start_payload=None),
        _event("subscribe", "qrscene_ABCD1234"): dict(callback=None, start_payload="ABCD1234"),
        _event("SCAN", "ABCD1234"): dict(callback=None, start_payload="ABCD1234"),
        _event("subscribe"): dict(callback=None, start_payload=""),
    }
    for xml, expected in cases.items():
        incoming = wechat_oa.to_incoming(*_message(xml))
        assert incoming is not None, xml
        assert (incoming.platform, incoming.chat_id, incoming.chat_kind) == ("wechat", "o-abc", "private")
        assert incoming.sender.external_id == "o-abc"
        for name, value in expected.items():
            assert getattr(incoming, name) == value, (xml, name)
    for xml in (_event("unsubscribe"), _event("VIEW", "https://example.com/"), _event("CLICK", ""),
                _event("LOCATION")):
        assert wechat_oa.to_incoming(*_message(xml)) is None


def test_a_tapped_text_menu_link_is_a_button_press() -> None:
    xml = ("<xml><ToUserName>gh_x</ToUserName><FromUserName>o-abc</FromUserName><CreateTime>1700000000"
           "</CreateTime><MsgType>text</MsgType><Content>确认提现</Content><MsgId>43</MsgId>"
           "<bizmsgmenuid>withdraw:yes</bizmsgmenuid></xml>")
    incoming = wechat_oa.to_incoming(*_message(xml))
    assert incoming is not None and incoming.callback == "withdraw:yes" and incoming.text == "确认提现"


def test_update_keys_dedupe_messages_by_msgid_and_events_by_sender_and_time() -> None:
    _, fields = _message(_event("CLICK", "CMD_TEAM", at=1_700_000_001))
    assert wechat_oa.update_key(fields) == "evt:o-abc:1700000001:click:CMD_TEAM"
    _, same_second_other_user = _message(_event("CLICK", "CMD_TEAM", openid="o-def", at=1_700_000_001))
    assert wechat_oa.update_key(same_second_other_user) != wechat_oa.update_key(fields)
    _, same_second_other_button = _message(_event("CLICK", "CMD_EARNINGS", at=1_700_000_001))
    assert wechat_oa.update_key(same_second_other_button) != wechat_oa.update_key(fields)
    _, long_id = _message(_event("CLICK", "CMD_TEAM", openid="o" * 64))
    assert len(wechat_oa.update_key(long_id)) <= 64


def test_claims_are_atomic_across_threads(rt) -> None:  # noqa: ANN001
    # given 16 threads claiming the same key at once, then only one wins
    barrier, wins = threading.Barrier(16), []

    def go() -> None:
        barrier.wait()
        wins.append(wechat_oa.claim(Redis.from_url(rt.settings.REDIS_URL), "msg:1"))

    threads = [threading.Thread(target=go) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 15 + [True]
    assert 0 < rt.redis.ttl("qianxing:wechat_oa:seen:msg:1") <= wechat_oa.DEDUPE_TTL_S
    wechat_oa.release(rt.redis, "msg:1")
    assert wechat_oa.claim(rt.redis, "msg:1")


def test_every_menu_key_is_a_command_of_the_core() -> None:
    # given each CLICK key of the menu sent as a button press, then the core knows the command
    for key in wechat_oa.menu_keys():
        incoming = Incoming(platform="wechat", chat_id="o-x", chat_kind="private", sender=Member("o-x"),
                            callback=key)
        command = commands.parse(incoming)
        assert command is not None and command.name not in ("stale_button", "unknown"), key
        assert commands.menu_key(command.name) == key


def test_passive_replies_render_like_the_customer_service_sender() -> None:
    reply = Reply(text="团队 3 人", link="https://m.example/p?a=1",
                  buttons=((Button("确认", data="wd:ok:abcdefgh"), Button("详情", url="https://m.example/x")),))
    text, numbered = wechat_oa.render(reply)
    # the same text the sender would send as a customer-service message
    assert text == wechat_text(payload_of(reply, ""))
    assert text.startswith("团队 3 人\nhttps://m.example/p?a=1")
    assert '<a href="https://m.example/x">详情</a>' in text and "1. 确认" in text
    assert numbered == ["wd:ok:abcdefgh"]
    # an image or an over-long text never goes back as the passive reply
    assert wechat_oa.passive_candidate([Reply(text="x", image=b"\x89PNG")]) is None
    assert wechat_oa.passive_candidate([Reply(text="长" * 1000)]) is None
    assert wechat_oa.passive_candidate([]) is None
    assert wechat_oa.passive_candidate([reply, Reply(text="2")]) is reply


def test_passive_xml_survives_a_cdata_terminator_and_remembers_the_menu(rt) -> None:  # noqa: ANN001
    message, _ = _message(_event("CLICK", "CMD_TEAM"))
    cfg = wechat_oa_auth.OAConfig("wxapp", "tok", None, 3000)
    auth = wechat_oa_auth.Authenticated("", "1", "n", False)
    reply = Reply(text="a]]><b>x</b>", buttons=((Button("团队", data="CMD_TEAM"),),))
    xml = wechat_oa.passive_xml(cfg, message, reply, auth, rt.redis)
    parsed = xmltodict.parse(xml)["xml"]
    assert parsed["Content"].startswith("a]]><b>x</b>") and parsed["ToUserName"] == "o-abc"
    # typing 1 afterwards is the button press
    assert menu_choice(rt.redis, "o-abc", "1") == "CMD_TEAM"


# -- the 5-second race -------------------------------------------------------------------
class _Recorder:
    def __init__(self) -> None:
        self.followed: list[list[Reply]] = []
        self.errors: list[BaseException] = []
        self.finished = threading.Event()

    def follow_up(self, replies) -> None:  # noqa: ANN001
        self.followed.append(list(replies))

    def after(self) -> None:
        self.finished.set()


def test_in_time_the_first_text_is_passive_and_the_rest_follow() -> None:
    rec = _Recorder()
    replies = [Reply(text="团队"), Reply(text="poster", image=b"png"), Reply(text="more")]
    outcome = wechat_oa.run_within(2.0, lambda: replies, rec.follow_up, rec.errors.append, rec.after)
    assert rec.finished.wait(5)
    assert outcome.passive == replies[0] and not outcome.timed_out and not outcome.failed
    assert rec.followed == [replies[1:]]


def test_too_late_every_reply_follows_and_none_is_passive() -> None:
    rec = _Recorder()
    replies = [Reply(text="slow answer"), Reply(text="second")]

    def slow() -> list[Reply]:
        time.sleep(0.3)
        return replies

    started = time.monotonic()
    outcome = wechat_oa.run_within(0.05, slow, rec.follow_up, rec.errors.append, rec.after)
    assert time.monotonic() - started < 0.25  # answered at the budget, not when the handler ended
    assert outcome.timed_out and outcome.passive is None
    assert rec.finished.wait(5)
    assert rec.followed == [replies]  # both, once


def test_a_failing_handler_is_reported_not_swallowed() -> None:
    rec = _Recorder()

    def boom() -> list[Reply]:
        raise RuntimeError("db down")

    outcome = wechat_oa.run_within(2.0, boom, rec.follow_up, rec.errors.append, rec.after)
    assert rec.finished.wait(5)
    assert outcome.failed and outcome.passive is None and rec.followed == []
    assert [str(e) for e in rec.errors] == ["db down"]
