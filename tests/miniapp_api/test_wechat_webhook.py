"""The WeChat official account's server URL over HTTP (Flask test client and the live app on
127.0.0.1): requests signed, and bodies encrypted, with wechatpy's own helpers exactly as
WeChat's servers send them; passive replies decrypted and their signatures checked the same
way. Bad, missing or stale signatures and hostile XML are refused without a 500 and store
nothing; WeChat's retries are processed once."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import requests
import xmltodict
from wechatpy.crypto import WeChatCrypto

from bots import core, wechat_oa
from bots.types import Incoming, Member
from models import inbox, network
from models.chat import BotUpdate, ChatIdentity, OutboundMessage
from models.db import connection, db, utcnow
from qianxing import wiring
from tasks import wechat_updates
from tests.conftest import OA_AES_KEY, OA_APPID, OA_TOKEN
from tests.fakes.wechat_api import FakeWeChatAPI

URL = "/webhooks/wechat"
OA_ID = "gh_0123456789ab"  # the account's original id (ToUserName)


def sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def text_xml(openid: str, content: str, msg_id: int | None = None, create_time: int | None = None,
             extra: str = "") -> str:
    msg_id = msg_id if msg_id is not None else secrets.randbelow(10**18)
    return (f"<xml><ToUserName><![CDATA[{OA_ID}]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{create_time or int(time.time())}</CreateTime>"
            f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>"
            f"<MsgId>{msg_id}</MsgId>{extra}</xml>")


def event_xml(openid: str, event: str, key: str | None = None, create_time: int | None = None,
              extra: str = "") -> str:
    key_xml = f"<EventKey><![CDATA[{key}]]></EventKey>" if key is not None else ""
    return (f"<xml><ToUserName><![CDATA[{OA_ID}]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{create_time or int(time.time())}</CreateTime>"
            f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>{key_xml}{extra}</xml>")


@dataclass
class Answer:
    status: int
    body: str
    encrypted: bool

    def reply(self) -> dict[str, Any]:
        """The passive reply as WeChat reads it: in AES mode its msg_signature must hold and it
        must decrypt for our appid (wechatpy raises otherwise)."""
        assert self.status == 200, (self.status, self.body)
        assert self.body not in ("", "success"), "expected a passive reply, got " + repr(self.body)
        xml = self.body
        if self.encrypted:
            outer = xmltodict.parse(xml)["xml"]
            assert set(outer) >= {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
            assert "<Content>" not in xml  # nothing in the clear
            xml = WeChatCrypto(OA_TOKEN, OA_AES_KEY, OA_APPID).decrypt_message(
                xml, outer["MsgSignature"], outer["TimeStamp"], outer["Nonce"])
        return xmltodict.parse(xml)["xml"]

    @property
    def success(self) -> bool:
        return self.status == 200 and self.body == "success"


Transport = Callable[[dict[str, str], bytes], tuple[int, str]]


class WeChatServer:
    """WeChat's side of the server URL: signs (and in AES mode encrypts) what it posts."""

    def __init__(self, transport: Transport, encrypted: bool, token: str = OA_TOKEN,
                 aes_key: str = OA_AES_KEY, appid: str = OA_APPID) -> None:
        self.transport, self.encrypted = transport, encrypted
        self.crypto = WeChatCrypto(token, aes_key, appid)
        self.token = token

    def query(self, timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce = nonce or secrets.token_hex(5)
        return {"signature": sign(self.token, ts, nonce), "timestamp": ts, "nonce": nonce,
                "openid": "o-user"}

    def seal(self, xml: str, query: dict[str, str]) -> tuple[dict[str, str], bytes]:
        """The body as WeChat posts it and the query with msg_signature (AES mode)."""
        if not self.encrypted:
            return query, xml.encode()
        sealed = xmltodict.parse(self.crypto.encrypt_message(xml, query["nonce"], query["timestamp"]))["xml"]
        body = (f"<xml><ToUserName><![CDATA[{OA_ID}]]></ToUserName>"
                f"<Encrypt><![CDATA[{sealed['Encrypt']}]]></Encrypt></xml>")
        return {**query, "encrypt_type": "aes", "msg_signature": sealed["MsgSignature"]}, body.encode()

    def post(self, xml: str, at: int | None = None, **query_changes: str | None) -> Answer:
        """Post `xml` signed at time `at`; `query_changes` then overwrite (None: drop) parameters."""
        query, body = self.seal(xml, self.query(at))
        for name, value in query_changes.items():
            if value is None:
                query.pop(name, None)
            else:
                query[name] = value
        return self.raw(query, body)

    def raw(self, query: dict[str, str], body: bytes) -> Answer:
        status, text = self.transport(query, body)
        return Answer(status, text, self.encrypted)


def flask_transport(client: Any) -> Transport:
    def post(query: dict[str, str], body: bytes) -> tuple[int, str]:
        resp = client.post(URL, query_string=query, data=body, content_type="text/xml")
        return resp.status_code, resp.get_data(as_text=True)

    return post


def live_transport(port: int) -> Transport:
    def post(query: dict[str, str], body: bytes) -> tuple[int, str]:
        resp = requests.post(f"http://127.0.0.1:{port}{URL}", params=query, data=body,
                             headers={"Content-Type": "text/xml"}, timeout=10)
        return resp.status_code, resp.text

    return post


@pytest.fixture
def oa_mode(rt, settings, app, monkeypatch) -> Iterator[Callable[..., wiring.Runtime]]:  # noqa: ANN001
    """Re-bootstrap the runtime with other official-account settings (plain mode, a small
    reply budget) and give it to the app; the original settings come back after the test."""

    def use(**changes: object) -> wiring.Runtime:
        wechat_oa.drain()  # a handler still running must finish on the database it started on
        wiring.reset()
        changed = wiring.bootstrap(settings.model_copy(update=changes))
        monkeypatch.setitem(app.extensions, "qianxing", changed)  # what the views use
        return changed

    yield use
    wechat_oa.drain()
    wiring.reset()
    wiring.bootstrap(settings)


@pytest.fixture(params=["aes", "plain"])
def wechat(request, client, oa_mode) -> WeChatServer:  # noqa: ANN001
    """WeChat posting to the Flask test client, in AES mode (the test settings) or plain mode."""
    if request.param == "plain":
        oa_mode(WECHAT_OA_AES_KEY=None)
    return WeChatServer(flask_transport(client), encrypted=request.param == "aes")


@pytest.fixture(params=["flask", "live"])
def aes_wechat(request, client, live_port) -> WeChatServer:  # noqa: ANN001
    """WeChat in AES mode, through the Flask test client and over real HTTP to the live app."""
    transport = flask_transport(client) if request.param == "flask" else live_transport(live_port)
    return WeChatServer(transport, encrypted=True)


def stored(rt) -> dict[str, Any]:  # noqa: ANN001
    """What a refused request must not have written: rows and dedupe claims."""
    with db.connection_context():
        counts = {m.__name__: m.select().count() for m in (ChatIdentity, BotUpdate, OutboundMessage)}
    counts["claims"] = len(rt.redis.keys("qianxing:wechat_oa:seen:*"))
    return counts


NOTHING = {"ChatIdentity": 0, "BotUpdate": 0, "OutboundMessage": 0, "claims": 0}


# -- server-URL check --------------------------------------------------------------------
def test_server_url_check_echoes_echostr_only_when_signed(client, rt) -> None:  # noqa: ANN001
    # given WeChat's GET when the server URL is saved (plain signature, also in AES mode)
    ts, nonce = str(int(time.time())), "n0nce1"
    good = {"signature": sign(OA_TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": "e-12345"}
    # when it is signed with our token, then the echostr comes back as it is
    resp = client.get(URL, query_string=good)
    assert (resp.status_code, resp.get_data(as_text=True)) == (200, "e-12345")
    # when the signature is wrong, a parameter is missing or the timestamp is stale: 403
    for bad in ({**good, "signature": sign("other-token", ts, nonce)},
                {k: v for k, v in good.items() if k != "signature"},
                {k: v for k, v in good.items() if k != "nonce"},
                {**good, "timestamp": str(int(ts) + 1)},
                {**good, "timestamp": str(int(ts) - 600), "signature": sign(OA_TOKEN, str(int(ts) - 600), nonce)}):
        resp = client.get(URL, query_string=bad)
        assert resp.status_code == 403 and "e-12345" not in resp.get_data(as_text=True)
    assert client.get(URL, query_string={k: v for k, v in good.items() if k != "echostr"}).status_code == 403


def test_server_url_check_with_an_encrypted_echostr(client, rt) -> None:  # noqa: ANN001
    # given an encrypted echostr signed with msg_signature (as wechatpy's crypto produces it)
    ts, nonce = str(int(time.time())), "n0nce2"
    crypto = WeChatCrypto(OA_TOKEN, OA_AES_KEY, OA_APPID)
    sealed = xmltodict.parse(crypto.encrypt_message("echo-9876", nonce, ts))["xml"]
    query = {"msg_signature": sealed["MsgSignature"], "timestamp": ts, "nonce": nonce,
             "echostr": sealed["Encrypt"]}
    # when it is checked, then the decrypted echostr comes back
    resp = client.get(URL, query_string=query)
    assert (resp.status_code, resp.get_data(as_text=True)) == (200, "echo-9876")
    # and a tampered one is refused
    resp = client.get(URL, query_string={**query, "msg_signature": sign("x", ts, nonce)})
    assert resp.status_code == 403


# -- refusals --------------------------------------------------------------------------------
def test_bad_signature_is_refused_before_anything_is_stored(wechat, rt) -> None:  # noqa: ANN001
    xml = text_xml("o-mallory", "团队")
    name = "msg_signature" if wechat.encrypted else "signature"
    # when the signature is made with another token, or is garbage, or absent
    for value in (sign("wrong-token", "1", "2"), "not-a-signature", "", None):
        answer = wechat.post(xml, **{name: value})
        # then 403, and nothing was stored or claimed
        assert answer.status == 403, answer
    # when the body was changed after signing (AES: msg_signature covers the ciphertext)
    if wechat.encrypted:
        query, body = wechat.seal(xml, wechat.query())
        other_query, other_body = wechat.seal(text_xml("o-mallory", "提现"), wechat.query())
        assert wechat.raw(query, other_body).status == 403
    else:  # plain mode: a token-less signature never passes
        assert WeChatServer(wechat.transport, False, token="guess").post(xml).status == 403
    assert stored(rt) == NOTHING


def test_aes_messages_for_another_account_or_key_are_refused(client, rt) -> None:  # noqa: ANN001
    xml = text_xml("o-user", "团队")
    transport = flask_transport(client)
    # given a body encrypted for another appid, signed with our token: refused after decryption
    assert WeChatServer(transport, True, appid="wxsomeoneelse0001").post(xml).status == 403
    # given a body encrypted with another key: it does not decrypt to anything of ours
    other_key = "Z" * 43
    assert 400 <= WeChatServer(transport, True, aes_key=other_key).post(xml).status < 500
    assert stored(rt) == NOTHING


def test_missing_parameters_are_refused(wechat, rt) -> None:  # noqa: ANN001
    xml = text_xml("o-user", "团队")
    for name in ("timestamp", "nonce"):
        assert wechat.post(xml, **{name: None}).status == 403
    assert wechat.raw({}, xml.encode()).status == 403
    assert stored(rt) == NOTHING


def test_stale_or_future_timestamps_are_refused(wechat, rt) -> None:  # noqa: ANN001
    # given a correctly signed request from 6 minutes ago (a replay), or 6 minutes ahead
    for shift in (-360, 360):
        answer = wechat.post(text_xml("o-user", "团队"), at=int(time.time()) + shift)
        # then it is refused
        assert answer.status == 403, answer
    assert stored(rt) == NOTHING


BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
                  '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
                  '<xml><ToUserName>x</ToUserName><FromUserName>o-user</FromUserName><CreateTime>1</CreateTime>'
                  '<MsgType>text</MsgType><Content>&c;</Content><MsgId>1</MsgId></xml>')
XXE = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
       '<xml><ToUserName>x</ToUserName><FromUserName>o-user</FromUserName><CreateTime>1</CreateTime>'
       '<MsgType>text</MsgType><Content>&x;</Content><MsgId>2</MsgId></xml>')
HOSTILE = {
    "garbage": "this is not xml",
    "unclosed": "<xml><ToUserName>x</ToUserName>",
    "empty-root": "<xml/>",
    "other-root": "<foo><MsgType>text</MsgType></foo>",
    "no-msgtype": "<xml><ToUserName>x</ToUserName><FromUserName>o-u</FromUserName><CreateTime>1</CreateTime></xml>",
    "bad-msgid": text_xml("o-user", "hi").replace("<MsgId>", "<MsgId>x"),
    "bad-openid": text_xml("o user<>", "hi"),
    "bad-createtime": text_xml("o-user", "hi", create_time=1).replace("<CreateTime>1", "<CreateTime>-1"),
    "event-without-event": event_xml("o-user", "click", "CMD_TEAM").replace("<Event>", "<Ev>").replace(
        "</Event>", "</Ev>"),
    "deep": "<xml><MsgType>text</MsgType><A><B><C><D>x</D></C></B></A></xml>",
    "billion-laughs": BILLION_LAUGHS,
    "xxe": XXE,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_malformed_and_hostile_xml_is_refused_without_a_500(wechat, rt, name) -> None:  # noqa: ANN001
    # given a correctly signed request (and correctly encrypted body) carrying hostile XML
    answer = wechat.post(HOSTILE[name])
    # then a 4xx, and nothing was stored
    assert 400 <= answer.status < 500, answer
    assert stored(rt) == NOTHING


def test_hostile_envelopes_and_oversized_bodies_are_refused(wechat, rt) -> None:  # noqa: ANN001
    query = wechat.seal("<xml/>", wechat.query())[0]
    for body in (BILLION_LAUGHS, XXE, "garbage", "<xml><Encrypt>!!!not base64</Encrypt></xml>", ""):
        assert 400 <= wechat.raw(query, body.encode()).status < 500
    # given a body over the limit (64 KiB), signed and encrypted like a real one
    big = text_xml("o-user", "x" * 70_000)
    assert wechat.post(big).status == 413
    assert stored(rt) == NOTHING


def test_an_unconfigured_official_account_has_no_server_url(client, oa_mode) -> None:  # noqa: ANN001
    oa_mode(WECHAT_OA_TOKEN=None)
    assert client.get(URL, query_string={"echostr": "x"}).status_code == 404
    assert client.post(URL, data=b"<xml/>").status_code == 404


# -- events the core does not answer -----------------------------------------------------
def test_other_events_answer_success_and_open_the_48h_window(wechat, rt) -> None:  # noqa: ANN001
    # given a location report (a user action the core does not answer) and an unsubscribe
    loc = event_xml("o-walker", "LOCATION", extra="<Latitude>23.1</Latitude><Longitude>113.3</Longitude>"
                    "<Precision>119.3</Precision>")
    assert wechat.post(loc).success
    assert wechat.post(event_xml("o-leaver", "unsubscribe")).success
    # then the walker's 48-hour customer-service window is open; the leaver is not recorded
    with db.connection_context():
        identities = {i.external_id: i.last_inbound_at for i in ChatIdentity.select()}
    assert set(identities) == {"o-walker"} and identities["o-walker"] is not None


# -- conversations -------------------------------------------------------------------------
def new_openid() -> str:
    return "o" + secrets.token_urlsafe(20).replace("-", "_")


def join(wechat: WeChatServer, openid: str) -> str:
    """The user joins the plan by typing 加入; returns their invite code."""
    content = wechat.post(text_xml(openid, "加入")).reply()["Content"]
    found = re.search(r"邀请码：([A-Za-z0-9]+)", content)
    assert found, content
    return found.group(1)


def followed_up(fake_wechat: FakeWeChatAPI, openid: str, count: int, timeout: float = 15.0) -> list[dict]:
    """Customer-service messages the fake received for `openid`, once `count` have arrived."""
    deadline = time.monotonic() + timeout
    while True:
        sent = [m for m in list(fake_wechat.custom_messages) if m.get("touser") == openid]
        if len(sent) >= count or time.monotonic() > deadline:
            return sent
        time.sleep(0.05)


def test_text_is_answered_with_a_valid_passive_reply(aes_wechat, rt) -> None:  # noqa: ANN001
    openid = new_openid()
    # when a follower types 加入 (over the test client and over real HTTP, AES mode)
    reply = aes_wechat.post(text_xml(openid, "加入")).reply()
    # then the answer decrypts with our key, its msg_signature holds, and it is addressed back
    assert reply["MsgType"] == "text" and reply["ToUserName"] == openid and reply["FromUserName"] == OA_ID
    assert "欢迎加入千星计划" in reply["Content"]
    # and the 48-hour window is open for them
    with db.connection_context():
        assert ChatIdentity.get(ChatIdentity.external_id == openid).last_inbound_at is not None


def test_menu_keys_and_keywords_run_the_same_commands_as_telegram(wechat, rt) -> None:  # noqa: ANN001
    openid = new_openid()
    join(wechat, openid)
    # when the creator clicks 我的团队 in the menu and types 团队
    by_click = wechat.post(event_xml(openid, "CLICK", "CMD_TEAM")).reply()["Content"]
    by_keyword = wechat.post(text_xml(openid, "团队")).reply()["Content"]
    # then both answers are the team summary, the same as a Telegram creator's /team
    tg = Incoming(platform="telegram", chat_id="9001", chat_kind="private", sender=Member("9001"))
    core.handle(replace(tg, text="/join"), rt)
    (tg_reply,) = core.handle(replace(tg, text="/team"), rt)
    assert by_click == by_keyword == wechat_oa.render(tg_reply)[0]  # WeChat's rendering of it
    assert by_click.startswith("我的团队")
    # and the same holds for earnings (CMD_EARNINGS / 收益 / /earnings; buttons as a numbered menu)
    earnings = wechat.post(event_xml(openid, "CLICK", "CMD_EARNINGS", create_time=int(time.time()) - 1))
    assert earnings.reply()["Content"] == wechat.post(text_xml(openid, "收益")).reply()["Content"] \
        == wechat_oa.render(core.handle(replace(tg, text="/earnings"), rt)[0])[0]


def test_a_number_typed_after_a_numbered_menu_presses_that_button(wechat, rt) -> None:  # noqa: ANN001
    openid = new_openid()
    join(wechat, openid)
    # given a reply with buttons (the welcome back menu: 1. 邀请海报 2. 我的团队 ...)
    menu = wechat.post(text_xml(openid, "开始")).reply()["Content"]
    assert "2. 我的团队" in menu and "回复数字选择" in menu
    # when the user answers 2, then it is the team command
    assert wechat.post(text_xml(openid, "2")).reply()["Content"].startswith("我的团队")


def test_a_qr_scene_subscribe_binds_the_invitee(wechat, rt) -> None:  # noqa: ANN001
    inviter = new_openid()
    code = join(wechat, inviter)
    # when a new follower scans the inviter's parametric QR code and subscribes
    invitee = new_openid()
    reply = wechat.post(event_xml(invitee, "subscribe", f"qrscene_{code}")).reply()["Content"]
    # then they joined and are bound to the inviter
    assert "绑定成功" in reply and code in reply
    # and an existing follower scanning it (SCAN event) is bound too
    follower = new_openid()
    wechat.post(text_xml(follower, "你好"))
    assert "绑定成功" in wechat.post(event_xml(follower, "SCAN", code)).reply()["Content"]
    with db.connection_context():
        parent = network.by_code(code)
        for openid in (invitee, follower):
            identity = ChatIdentity.get(ChatIdentity.external_id == openid)
            assert network.creator_of(identity.user_id).parent_id == parent.id


def test_a_retried_message_is_processed_once(wechat, rt) -> None:  # noqa: ANN001
    openid = new_openid()
    # given WeChat delivering the same message three times (its retries: a new signature each)
    xml = text_xml(openid, "加入", msg_id=7_000_000_001)
    answers = [wechat.post(xml) for _ in range(3)]
    # then the first is answered, the retries get "success" and do nothing
    assert "欢迎加入千星计划" in answers[0].reply()["Content"]
    assert all(a.success for a in answers[1:])
    # and a menu click retried (same sender and CreateTime) too
    now = int(time.time())
    click = event_xml(openid, "CLICK", "CMD_TEAM", create_time=now)
    first, retry = wechat.post(click), wechat.post(click)
    assert first.reply()["Content"].startswith("我的团队") and retry.success
    # but another button pressed in the same second is a new click, and is answered
    other = wechat.post(event_xml(openid, "CLICK", "CMD_EARNINGS", create_time=now))
    assert other.reply()["Content"] == wechat.post(text_xml(openid, "收益")).reply()["Content"]


def test_two_concurrent_deliveries_of_one_message_are_processed_once(rt, live_port) -> None:  # noqa: ANN001
    wechat = WeChatServer(live_transport(live_port), encrypted=True)
    openid = new_openid()
    query, body = wechat.seal(text_xml(openid, "加入", msg_id=7_000_000_002), wechat.query())
    barrier, answers = threading.Barrier(4), []

    def deliver() -> None:
        barrier.wait()
        answers.append(wechat.raw(query, body))

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then exactly one delivery carries the reply; the others were told "success"
    assert sorted(a.success for a in answers) == [False, True, True, True]
    (winner,) = [a for a in answers if not a.success]
    assert "欢迎加入千星计划" in winner.reply()["Content"]
    with db.connection_context():
        assert ChatIdentity.select().where(ChatIdentity.external_id == openid).count() == 1


def test_a_slow_answer_says_success_in_time_and_follows_through_customer_service(
        client, oa_mode, fake_wechat, settings) -> None:  # noqa: ANN001
    wechat = WeChatServer(flask_transport(client), encrypted=True)
    openid = new_openid()
    join(wechat, openid)
    # given a reply budget far below what drawing an uncached poster takes
    oa_mode(WECHAT_REPLY_BUDGET_MS=1, POSTER_DIR=str(Path(settings.POSTER_DIR) / secrets.token_hex(4)))
    click = event_xml(openid, "CLICK", "CMD_POSTER")
    # when the creator clicks 邀请海报 (and WeChat retries while the poster is being drawn)
    started = time.monotonic()
    answer = wechat.post(click)
    elapsed = time.monotonic() - started
    retry = wechat.post(click)
    # then "success" went back at once, well inside WeChat's 5 seconds
    assert answer.success and retry.success and elapsed < 1.0, elapsed
    # and the poster and its text arrive through the customer-service API, once
    sent = followed_up(fake_wechat, openid, 2)
    assert [m["msgtype"] for m in sent] == ["image", "text"], sent
    assert sent[0]["image"]["media_id"] and "邀请海报" in sent[1]["text"]["content"]
    # and a text answer that would have been the passive reply in time follows the same way
    team = wechat.post(text_xml(openid, "团队"))
    assert team.success
    sent = followed_up(fake_wechat, openid, 3)
    assert sent[2]["msgtype"] == "text" and sent[2]["text"]["content"].startswith("我的团队")
    time.sleep(0.3)
    assert len(followed_up(fake_wechat, openid, 4, timeout=0)) == 3  # nothing sent twice
    with db.connection_context():
        rows = list(OutboundMessage.select().where(OutboundMessage.chat_id == openid))
    assert [r.state for r in rows] == ["sent", "sent"]


def test_an_in_time_poster_goes_through_customer_service_too(wechat, rt, fake_wechat) -> None:  # noqa: ANN001
    openid = new_openid()
    join(wechat, openid)
    # when the creator types 海报 (an image: it cannot be a passive text reply)
    answer = wechat.post(text_xml(openid, "海报"))
    # then the request is answered "success" and the poster follows as an image message
    assert answer.success
    assert [m["msgtype"] for m in followed_up(fake_wechat, openid, 2)] == ["image", "text"]


# -- nothing lost in a crash ---------------------------------------------------------------
def _update_state(key: str, timeout: float = 5.0) -> str | None:
    deadline = time.monotonic() + timeout
    while True:
        with db.connection_context():
            row = BotUpdate.get_or_none((BotUpdate.platform == "wechat") & (BotUpdate.update_key == key))
        if (row is not None and row.state != "queued") or time.monotonic() > deadline:
            return row.state if row else None
        time.sleep(0.05)


def test_an_answered_message_is_kept_as_answered(wechat, rt) -> None:  # noqa: ANN001
    # when a follower's message is answered
    openid = new_openid()
    assert "欢迎加入千星计划" in wechat.post(text_xml(openid, "加入", msg_id=7_100_000_001)).reply()["Content"]
    # then it was stored before the answer and is marked answered, so no recovery repeats it
    assert _update_state("msg:7100000001") == "done"
    with db.connection_context():
        assert wechat_updates.recover_stale(now=utcnow() + dt.timedelta(minutes=5)) == 0


def test_a_message_a_crash_left_unanswered_is_answered_later_through_customer_service(
        rt, fake_wechat) -> None:  # noqa: ANN001
    # given a message the webhook stored and claimed, then died before answering
    openid = new_openid()
    incoming = Incoming(platform="wechat", chat_id=openid, chat_kind="private", sender=Member(openid, "阿青"),
                        text="加入")
    with connection():
        inbox.store_wechat_message("msg:7100000002", incoming.as_payload())
    # when the recovery job runs before WeChat's retries are over, nothing happens yet
    assert wechat_updates.recover_stale() == 0
    # and a minute later it answers through the customer-service API, once
    later = utcnow() + dt.timedelta(minutes=2)
    assert wechat_updates.recover_stale(now=later) == 1
    assert wechat_updates.recover_stale(now=later + dt.timedelta(minutes=10)) == 0
    sent = followed_up(fake_wechat, openid, 1)
    assert len(sent) == 1 and "欢迎加入千星计划" in json.dumps(sent[0], ensure_ascii=False)
    assert _update_state("msg:7100000002") == "done"
