"""POST /api/v1/auth/login is throttled per client IP and per code (issue 10, finding 7): 429
`rate_limited` with Retry-After before WeChat's jscode2session is called; X-Forwarded-For only
counts behind TRUSTED_PROXIES; with Redis down the login still works."""

from __future__ import annotations

from miniapp_api import create_app
from qianxing import wiring
from tests.conftest import free_port, make_settings
from tests.fakes.wechat_api import CODE2SESSION_PATH

LOGIN = "/api/v1/auth/login"


def upstream_calls(fake_wechat) -> int:  # noqa: ANN001
    return len(fake_wechat.requests_to(CODE2SESSION_PATH))


def assert_throttled(resp) -> None:  # noqa: ANN001
    assert resp.status_code == 429, resp.json
    assert resp.json["error"]["code"] == "rate_limited"
    assert resp.json["error"]["message"]
    assert 1 <= int(resp.headers["Retry-After"]) <= 60


def test_one_code_is_tried_a_few_times_then_refused_before_reaching_wechat(client, fake_wechat, settings):
    # given a code redeemed once
    fake_wechat.register_code("reused-code", "reused-user")
    assert client.post(LOGIN, json={"code": "reused-code"}).status_code == 200
    # when the same code is replayed until the per-code limit and beyond
    answers = [client.post(LOGIN, json={"code": "reused-code"}).status_code
               for _ in range(settings.LOGIN_RATE_PER_CODE - 1)]
    before = upstream_calls(fake_wechat)
    refused = client.post(LOGIN, json={"code": "reused-code"})
    # then the replays within the limit got WeChat's refusal, the next one a 429 that never
    # reached WeChat
    assert answers == [401] * (settings.LOGIN_RATE_PER_CODE - 1)
    assert_throttled(refused)
    assert upstream_calls(fake_wechat) == before
    # and other codes from the same address still log in
    fake_wechat.register_code("fresh-code", "fresh-user")
    assert client.post(LOGIN, json={"code": "fresh-code"}).status_code == 200


def test_one_address_is_limited_whatever_codes_it_sends(client, fake_wechat, settings, monkeypatch):
    # given a per-IP limit of 5 logins a window
    monkeypatch.setattr(settings, "LOGIN_RATE_PER_IP", 5)
    for i in range(7):
        fake_wechat.register_code(f"ip-code-{i}", f"ip-user-{i}")
    # when one address logs in 7 times with 7 different valid codes
    before = upstream_calls(fake_wechat)
    answers = [client.post(LOGIN, json={"code": f"ip-code-{i}"}) for i in range(7)]
    # then 5 succeed and the rest are refused with 429 without asking WeChat
    assert [r.status_code for r in answers[:5]] == [200] * 5
    for resp in answers[5:]:
        assert_throttled(resp)
    assert upstream_calls(fake_wechat) - before == 5
    # and a spoofed X-Forwarded-For does not escape the limit (TRUSTED_PROXIES=0)
    spoofed = client.post(LOGIN, json={"code": "ip-code-6"},
                          headers={"X-Forwarded-For": "203.0.113.77"})
    assert_throttled(spoofed)
    # and another address is not affected
    other = client.post(LOGIN, json={"code": "ip-code-6"}, environ_base={"REMOTE_ADDR": "198.51.100.9"})
    assert other.status_code == 200, other.json


def test_behind_a_trusted_proxy_the_forwarded_client_address_is_what_counts(
        rt, database_url, redis_url, fake_wechat, fake_pay, settings):  # noqa: ANN001
    # given the app behind one trusted proxy and a per-IP limit of 2
    proxied = make_settings(database_url, redis_url, fake_wechat, fake_pay, TRUSTED_PROXIES=1,
                            LOGIN_RATE_PER_IP=2)
    try:
        app = create_app(proxied)
        client = app.test_client()
        for i in range(5):
            fake_wechat.register_code(f"proxy-code-{i}", f"proxy-user-{i}")

        def login(i: int, address: str):  # noqa: ANN202
            return client.post(LOGIN, json={"code": f"proxy-code-{i}"},
                               headers={"X-Forwarded-For": address})

        # when one shopper behind the proxy logs in three times, and another once
        first = [login(i, "203.0.113.10").status_code for i in range(2)]
        third = login(2, "203.0.113.10")
        other = login(3, "203.0.113.11")
    finally:
        wiring.reset()
        wiring.bootstrap(settings)
    # then the limit applies to each forwarded address, not to the proxy's
    assert first == [200, 200]
    assert_throttled(third)
    assert other.status_code == 200, other.json


def test_login_works_when_redis_is_down(rt, database_url, fake_wechat, fake_pay, settings, caplog):  # noqa: ANN001
    # given an app whose Redis cannot be reached
    down = make_settings(database_url, f"redis://127.0.0.1:{free_port()}/0", fake_wechat, fake_pay,
                         LOGIN_RATE_PER_IP=1)
    try:
        client = create_app(down).test_client()
        fake_wechat.register_code("redis-down-1", "redis-down-user")
        fake_wechat.register_code("redis-down-2", "redis-down-user")
        # when shoppers log in (more often than the limit)
        answers = [client.post(LOGIN, json={"code": f"redis-down-{i}"}) for i in (1, 2)]
    finally:
        wiring.reset()
        wiring.bootstrap(settings)
    # then the logins go through (fail open) and the outage is logged
    assert [r.status_code for r in answers] == [200, 200], [r.json for r in answers]
    # (jscode2session needs no access token, so none was fetched from WeChat or Redis)
    assert "access_token" not in fake_wechat.requests_to(CODE2SESSION_PATH)[-1].query
    assert any("throttle" in r.getMessage() and "Redis" in r.getMessage() for r in caplog.records)


def test_the_openapi_document_lists_the_429_answer_of_login_with_its_retry_after(client):
    doc = client.get("/api/openapi.json").json
    answer = doc["paths"][LOGIN]["post"]["responses"]["429"]
    assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    assert answer["headers"]["Retry-After"]["required"] is True
