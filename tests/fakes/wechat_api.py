"""Fake of the WeChat server API (api.weixin.qq.com) for the endpoints the project uses."""

from __future__ import annotations

import json
import secrets
import time
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from tests.fakes.http import FakeResponse, FakeServer, RecordedRequest

TOKEN_PATH = "/cgi-bin/token"
CODE2SESSION_PATH = "/sns/jscode2session"
SUBSCRIBE_SEND_PATH = "/cgi-bin/message/subscribe/send"
THING_MAX = 20  # characters in a subscribe message `thing` value
CUSTOM_SEND_PATH = "/cgi-bin/message/custom/send"
MENU_CREATE_PATH = "/cgi-bin/menu/create"
MENU_GET_PATH = "/cgi-bin/menu/get"
MEDIA_UPLOAD_PATH = "/cgi-bin/media/upload"
PHONE_NUMBER_PATH = "/wxa/business/getuserphonenumber"

ERRMSGS: dict[int, str] = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40029: "invalid code",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    41002: "appid missing",
    41004: "appsecret missing",
    41008: "missing code",
    42001: "access_token expired",
    43101: "user refuse to accept the msg",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    47001: "data format error",
}


def wechat_error(errcode: int, errmsg: str | None = None, status: int = 200) -> FakeResponse:
    msg = errmsg or ERRMSGS.get(errcode, "error")
    return FakeResponse.of_json({"errcode": errcode, "errmsg": msg}, status=status)


@dataclass
class _Failure:
    errcode: int
    http_status: int | None
    errmsg: str | None
    endpoint: str | None  # "subscribe", "custom" or None for any message send


@dataclass
class _Code:
    openid: str
    unionid: str | None
    session_key: str


class FakeWeChatAPI(FakeServer):
    """Serves /cgi-bin/token, /sns/jscode2session, the two message send endpoints, the
    official account's menu and the mini-program's phone authorization (getuserphonenumber).
    ``add_app`` accepts a second app (the official account): each app has its own
    access_token, and a new one only invalidates that app's previous token."""

    def __init__(self, appid: str, secret: str) -> None:
        super().__init__()
        self.appid = appid
        self.secret = secret
        self._apps: dict[str, str] = {appid: secret}
        self.app_tokens: dict[str, str] = {}  # other apps' current tokens
        self.app_token_fetches: dict[str, int] = {}  # token fetches per other app
        self.menus: list[dict[str, Any]] = []  # every menu created, in order
        self.media_uploads: list[dict[str, Any]] = []  # temporary media: type, media_id, size
        self.token_fetches = 0
        self.access_token: str | None = None
        self.expires_in = 7200
        self.subscribe_messages: list[dict[str, Any]] = []
        self.custom_messages: list[dict[str, Any]] = []
        self._codes: dict[str, _Code] = {}
        self._used_codes: set[str] = set()
        self._failures: list[_Failure] = []
        self.arrivals: list[tuple[str, str, float]] = []  # (endpoint, touser, time.monotonic()) per message kept
        self._rate: tuple[float, int] | None = None  # (sends per 1-second window, errcode beyond it)
        self._window: deque[float] = deque()
        self.route("GET", TOKEN_PATH, self._token)
        self.route("GET", CODE2SESSION_PATH, self._code2session)
        self.route("POST", SUBSCRIBE_SEND_PATH, self._subscribe_send)
        self.route("POST", CUSTOM_SEND_PATH, self._custom_send)
        self.route("POST", MENU_CREATE_PATH, self._menu_create)
        self.route("GET", MENU_GET_PATH, self._menu_get)
        self.route("POST", MEDIA_UPLOAD_PATH, self._media_upload)
        self._phone_codes: dict[str, tuple[str, str]] = {}  # getPhoneNumber code -> (number, country code)
        self.route("POST", PHONE_NUMBER_PATH, self._phone_number)
        self._init_sec_check()  # issue 16: moderation's msg_sec_check

    # -- test controls -------------------------------------------------------------------
    def add_app(self, appid: str, secret: str) -> None:
        """Accept a second app's credentials (e.g. the official account beside the mini-program)."""
        with self._lock:
            self._apps[appid] = secret

    def reset_app(self, appid: str) -> None:
        """Forget another app's token and fetch count (per-test isolation)."""
        with self._lock:
            self.app_tokens.pop(appid, None)
            self.app_token_fetches.pop(appid, None)

    def register_code(
        self, code: str, openid: str, unionid: str | None = None, session_key: str | None = None
    ) -> str:
        """Make ``code`` redeemable once via jscode2session; returns its session_key."""
        key = session_key or secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = _Code(openid=openid, unionid=unionid, session_key=key)
            self._used_codes.discard(code)
        return key

    def register_phone_code(self, code: str, phone: str, country_code: str = "86") -> None:
        """Make ``code`` (a getPhoneNumber button's code) redeemable once for ``phone`` (the pure
        number, without the country code) via getuserphonenumber; other codes answer 40029."""
        with self._lock:
            self._phone_codes[code] = (phone, country_code)

    def expire_token(self) -> None:
        """Invalidate the current access token (next message send answers 40001)."""
        with self._lock:
            self.access_token = None

    def fail_next(
        self,
        n: int = 1,
        errcode: int = -1,
        http_status: int | None = None,
        *,
        errmsg: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        """The next ``n`` message sends fail with ``errcode`` (or bare ``http_status``).

        ``endpoint`` limits it to "subscribe" or "custom"; None means any message send.
        Failures are answered before the token is checked and nothing is recorded.
        """
        if endpoint not in (None, "subscribe", "custom"):
            raise ValueError(f"unknown endpoint {endpoint!r}")
        with self._lock:
            self._failures.extend(
                _Failure(errcode, http_status, errmsg, endpoint) for _ in range(n)
            )

    def limit_rate(self, per_s: float | None, errcode: int = 45009) -> None:
        """Enforce a global rate on the message sends (both endpoints together): sends beyond
        `per_s` in any 1-second window are refused with `errcode` and not recorded."""
        with self._lock:
            self._rate = (per_s, errcode) if per_s else None
            self._window.clear()

    def _over_rate(self) -> FakeResponse | None:
        if self._rate is None:
            return None
        now = time.monotonic()
        while self._window and now - self._window[0] >= 1.0:
            self._window.popleft()
        if len(self._window) >= self._rate[0]:
            return wechat_error(self._rate[1])
        self._window.append(now)
        return None

    @property
    def pending_failures(self) -> int:
        with self._lock:
            return len(self._failures)

    # -- handlers ------------------------------------------------------------------------
    def _check_app(self, q: dict[str, str]) -> FakeResponse | None:
        if not q.get("appid"):
            return wechat_error(41002)
        if not q.get("secret"):
            return wechat_error(41004)
        if self._apps.get(q["appid"]) != q["secret"]:
            return wechat_error(40125)
        return None

    def _token(self, req: RecordedRequest) -> FakeResponse:
        q = req.query
        if q.get("grant_type") != "client_credential":
            return wechat_error(40002)
        error = self._check_app(q)
        if error is not None:
            return error
        token = secrets.token_urlsafe(48)  # invalidates the app's previous one
        if q["appid"] == self.appid:
            self.token_fetches += 1
            self.access_token = token
        else:
            self.app_token_fetches[q["appid"]] = self.app_token_fetches.get(q["appid"], 0) + 1
            self.app_tokens[q["appid"]] = token
        return FakeResponse.of_json({"access_token": token, "expires_in": self.expires_in})

    def _token_valid(self, req: RecordedRequest) -> bool:
        token = req.query.get("access_token")
        return bool(token) and (token == self.access_token or token in self.app_tokens.values())

    def _code2session(self, req: RecordedRequest) -> FakeResponse:
        q = req.query
        error = self._check_app(q)
        if error is not None:
            return error
        if q.get("grant_type") != "authorization_code":
            return wechat_error(40002)
        code = q.get("js_code", "")
        if not code:
            return wechat_error(41008)
        entry = self._codes.get(code)
        if entry is None or code in self._used_codes:
            return wechat_error(40029)
        self._used_codes.add(code)
        result: dict[str, Any] = {"session_key": entry.session_key, "openid": entry.openid}
        if entry.unionid:
            result["unionid"] = entry.unionid
        return FakeResponse.of_json(result)

    def _take_failure(self, endpoint: str) -> FakeResponse | None:
        for i, failure in enumerate(self._failures):
            if failure.endpoint in (None, endpoint):
                del self._failures[i]
                if failure.http_status is not None:
                    status = failure.http_status
                    return FakeResponse.of_text(HTTPStatus(status).phrase, status)
                return wechat_error(failure.errcode, failure.errmsg)
        return None

    def _message_send(
        self, req: RecordedRequest, endpoint: str, required: tuple[str, ...]
    ) -> tuple[FakeResponse | None, dict[str, Any]]:
        failure = self._take_failure(endpoint) or self._over_rate()
        if failure is not None:
            return failure, {}
        error, payload = self._json_call(req)
        if error is not None:
            return error, {}
        if not isinstance(payload, dict) or any(not payload.get(k) for k in required):
            return wechat_error(47001), {}
        return None, payload

    def _json_call(self, req: RecordedRequest) -> tuple[FakeResponse | None, Any]:
        """A call with an access token and a JSON body: (an error answer, None) or (None, the body)."""
        if not self._token_valid(req):
            return wechat_error(40001), None
        try:
            return None, json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return wechat_error(47001), None

    def _subscribe_send(self, req: RecordedRequest) -> FakeResponse:
        error, payload = self._message_send(req, "subscribe", ("touser", "template_id", "data"))
        if error is not None:
            return error
        data = payload["data"]
        if not isinstance(data, dict) or not all(isinstance(v, dict) and isinstance(v.get("value"), str)
                                                 for v in data.values()):
            return wechat_error(47001)
        # As WeChat does: a `thing` field holds at most 20 characters.
        if any(k.startswith("thing") and len(v["value"]) > THING_MAX for k, v in data.items()):
            return wechat_error(47003, "argument invalid! data.thing.value exceeds limit")
        self.subscribe_messages.append(payload)
        self.arrivals.append(("subscribe", str(payload["touser"]), time.monotonic()))
        return wechat_error(0, "ok")

    def _custom_send(self, req: RecordedRequest) -> FakeResponse:
        error, payload = self._message_send(req, "custom", ("touser", "msgtype"))
        if error is not None:
            return error
        self.custom_messages.append(payload)
        self.arrivals.append(("custom", str(payload["touser"]), time.monotonic()))
        return wechat_error(0, "ok")

    def _menu_create(self, req: RecordedRequest) -> FakeResponse:
        error, payload = self._json_call(req)
        if error is not None:
            return error
        buttons = payload.get("button") if isinstance(payload, dict) else None
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            return wechat_error(40016, "invalid button size")
        for button in buttons:
            subs = button.get("sub_button") if isinstance(button, dict) else None
            if not isinstance(button, dict) or not button.get("name"):
                return wechat_error(40016, "invalid button")
            if subs and len(subs) > 5:
                return wechat_error(40017, "invalid sub button size")
            for item in (subs or [button]):
                if item.get("type") == "click" and not item.get("key"):
                    return wechat_error(40019, "invalid button key size")
        self.menus.append(payload)
        return wechat_error(0, "ok")

    def _menu_get(self, req: RecordedRequest) -> FakeResponse:
        if not self._token_valid(req):
            return wechat_error(40001)
        if not self.menus:
            return wechat_error(46003, "menu no exist")
        return FakeResponse.of_json({"menu": self.menus[-1]})

    def _media_upload(self, req: RecordedRequest) -> FakeResponse:
        """Temporary media (the customer-service image's media_id)."""
        if not self._token_valid(req):
            return wechat_error(40001)
        kind = req.query.get("type", "")
        if kind not in ("image", "voice", "video", "thumb") or b'name="media"' not in req.body:
            return wechat_error(40004, "invalid media type")
        media_id = f"media-{len(self.media_uploads) + 1}"
        self.media_uploads.append({"type": kind, "media_id": media_id, "size": len(req.body)})
        return FakeResponse.of_json({"type": kind, "media_id": media_id, "created_at": 1700000000})

    def _phone_number(self, req: RecordedRequest) -> FakeResponse:
        """wxa/business/getuserphonenumber: {"code"} -> phone_info, each code once."""
        error, payload = self._json_call(req)
        if error is not None:
            return error
        code = payload.get("code") if isinstance(payload, dict) else None
        if not isinstance(code, str) or not code:
            return wechat_error(41008)
        with self._lock:
            entry = self._phone_codes.pop(code, None)
        if entry is None:
            return wechat_error(40029)
        phone, country = entry
        shown = phone if country == "86" else f"+{country}{phone}"
        return FakeResponse.of_json({"errcode": 0, "errmsg": "ok", "phone_info": {
            "phoneNumber": shown, "purePhoneNumber": phone, "countryCode": country,
            "watermark": {"timestamp": int(time.time()), "appid": self.appid}}})

    # -- issue 16: moderation: wxa/msg_sec_check (version 1, as wechatpy 1.8 calls it) ---------
    def _init_sec_check(self) -> None:
        self.sec_checks: list[str] = []  # every content checked, in order
        self._sec_answer = "pass"
        self._sec_risky_words: tuple[str, ...] = ()
        self._sec_stall_s = 0.0
        self.route("POST", SEC_CHECK_PATH, self._msg_sec_check)

    def sec_check(self, answer: str = "pass", *, risky_words: tuple[str, ...] = (), stall_s: float = 0.0) -> None:
        """How msg_sec_check answers from now on: "pass" (errcode 0), "risky" (87014 for every
        text, or only for texts containing one of `risky_words` when given), "error" (errcode
        -1 system error), "http500", or "stall" (answers after `stall_s` seconds). Also forgets
        the texts checked so far."""
        if answer not in ("pass", "risky", "error", "http500", "stall"):
            raise ValueError(f"unknown msg_sec_check answer {answer!r}")
        with self._lock:
            self._sec_answer, self._sec_risky_words, self._sec_stall_s = answer, tuple(risky_words), stall_s
            self.sec_checks.clear()

    def _msg_sec_check(self, req: RecordedRequest) -> FakeResponse:
        error, payload = self._json_call(req)
        if error is not None:
            return error
        content = payload.get("content") if isinstance(payload, dict) else None
        if not isinstance(content, str) or not content:
            return wechat_error(47001)
        with self._lock:
            answer, words, stall = self._sec_answer, self._sec_risky_words, self._sec_stall_s
            self.sec_checks.append(content)
        if answer == "stall":
            time.sleep(stall)
            return wechat_error(0, "ok")
        if answer == "error":
            return wechat_error(-1)
        if answer == "http500":
            return FakeResponse.of_text("Internal Server Error", 500)
        if answer == "risky" and (not words or any(w in content for w in words)):
            return wechat_error(87014, "risky content")
        return wechat_error(0, "ok")


SEC_CHECK_PATH = "/wxa/msg_sec_check"
