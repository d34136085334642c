"""wechatpy clients pointed at configurable base URLs (so tests can use local fakes)."""

from __future__ import annotations

from typing import Any

from wechatpy.client import WeChatClient
from wechatpy.session import SessionStorage
from wechatpy.session.memorystorage import MemoryStorage
from wechatpy.session.redisstorage import RedisStorage


class MiniProgramClient(WeChatClient):
    """WeChatClient whose every URL, including the hard-coded token URL, uses `base_url`.

    The access_token lives in Redis when a connection is given, shared by every process:
    fetching a new token invalidates the old one, so processes must not each keep their own.
    """

    def __init__(self, appid: str, secret: str, base_url: str, redis: Any = None,
                 timeout: float = 5.0) -> None:
        base = base_url if base_url.endswith("/") else base_url + "/"
        storage: SessionStorage = (
            RedisStorage(redis, prefix="qianxing:wechat") if redis is not None else MemoryStorage()
        )
        super().__init__(appid, secret, session=storage, timeout=timeout)
        self.API_BASE_URL = base + "cgi-bin/"
        self.wxa.API_BASE_URL = base
        self._token_url = base + "cgi-bin/token"

    def fetch_access_token(self) -> dict:
        return self._fetch_access_token(
            url=self._token_url,
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )

    def code_to_session(self, js_code: str) -> dict:
        """jscode2session (a wx.login() code for the openid) through wechatpy, without the
        access_token wechatpy adds to every call: this endpoint authenticates with the app id
        and secret, so a login needs neither a token fetch nor Redis (which keeps the token)."""
        return self.wxa._get("sns/jscode2session", params={
            "appid": self.appid, "secret": self.secret, "js_code": js_code,
            "grant_type": "authorization_code", "access_token": None})

    def phone_number(self, code: str) -> dict:
        """The phone a shopper authorized in the mini-program (the `code` of a getPhoneNumber
        button, valid once): WeChat's `phone_info` ({"purePhoneNumber", "countryCode", ...}).
        wechatpy 1.8 has no wrapper for `wxa/business/getuserphonenumber`: its `_post` adds the
        access token and raises WeChatClientException on an errcode (40029 for a bad code)."""
        result = self.wxa._post("wxa/business/getuserphonenumber", data={"code": code})
        return result.get("phone_info") or {}
