"""The official account's signature checks use wechatpy's public API only: the server-URL check
(plain and with an encrypted echostr) and message envelopes, signature first, never through
wechatpy's private `_check_signature`."""

from __future__ import annotations

import hashlib
import time

import pytest
import xmltodict
from wechatpy.crypto import BaseWeChatCrypto, WeChatCrypto

from bots import wechat_oa_auth
from bots.wechat_oa_auth import OAConfig, Refused

TOKEN, APPID = "sig-token", "wx0123456789abcdef"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CFG = OAConfig(APPID, TOKEN, AES_KEY, 4000)


def sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


@pytest.fixture(autouse=True)
def no_private_check(monkeypatch: pytest.MonkeyPatch) -> None:
    def private(*_args: object, **_kw: object) -> None:
        raise AssertionError("wechatpy's private _check_signature was called")

    monkeypatch.setattr(BaseWeChatCrypto, "_check_signature", private)


def test_plain_echostr_is_echoed_only_when_signed() -> None:
    ts, nonce = str(int(time.time())), "n1"
    good = {"signature": sign(TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": "hello"}
    assert wechat_oa_auth.verify_server_url(CFG, good) == "hello"
    with pytest.raises(Refused) as refused:
        wechat_oa_auth.verify_server_url(CFG, {**good, "signature": sign("other", ts, nonce)})
    assert refused.value.status == 403


def test_encrypted_echostr_is_decrypted_through_the_public_api() -> None:
    ts, nonce = str(int(time.time())), "n2"
    sealed = xmltodict.parse(WeChatCrypto(TOKEN, AES_KEY, APPID).encrypt_message("echo-42", nonce, ts))["xml"]
    query = {"msg_signature": sealed["MsgSignature"], "timestamp": ts, "nonce": nonce, "echostr": sealed["Encrypt"]}
    assert wechat_oa_auth.verify_server_url(CFG, query) == "echo-42"
    # a signature over other parts is refused before any decryption
    with pytest.raises(Refused) as refused:
        wechat_oa_auth.verify_server_url(CFG, {**query, "msg_signature": sign(TOKEN, ts, nonce)})
    assert (refused.value.status, refused.value.reason) == (403, "bad msg_signature")


def test_a_signed_echostr_for_another_appid_is_refused() -> None:
    ts, nonce = str(int(time.time())), "n3"
    sealed = xmltodict.parse(WeChatCrypto(TOKEN, AES_KEY, "wxsomeoneelse0001").encrypt_message("x", nonce, ts))["xml"]
    query = {"msg_signature": sealed["MsgSignature"], "timestamp": ts, "nonce": nonce, "echostr": sealed["Encrypt"]}
    with pytest.raises(Refused) as refused:
        wechat_oa_auth.verify_server_url(CFG, query)
    assert (refused.value.status, refused.value.reason) == (403, "message for another appid")


def test_the_module_does_not_reach_for_wechatpys_private_check() -> None:
    source = open(wechat_oa_auth.__file__, encoding="utf-8").read()  # noqa: PTH123
    assert "_check_signature" not in source
