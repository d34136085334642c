"""Logs never carry secrets: the redaction filter, and a full login + payment + reveal flow
logged at DEBUG."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from models import vault
from models.db import db
from models.vault import CardKey
from qianxing.logging_setup import RedactingFilter, configure_logging
from qianxing.settings import secret_values

SECRET = "sup3r-s3cret-value-XYZ"


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, object]]:
    """Run configure_logging on a bare root logger and capture what its handler writes;
    the previous logging setup is restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    noisy = {n: logging.getLogger(n).level for n in ("wechatpy", "urllib3", "requests")}
    root.handlers = []
    buf = io.StringIO()

    def configure(level: str, secrets: list[str]) -> None:
        # pytest's own capture handlers come and go around each test phase; keep them out of
        # the way so configure_logging sees the root logger as a fresh process would
        ours = [h for h in root.handlers if type(h) is logging.StreamHandler]
        pytest_handlers = [h for h in root.handlers if h not in ours]
        root.handlers = ours
        configure_logging(level, secrets)
        for handler in root.handlers:
            handler.setStream(buf)  # type: ignore[attr-defined]
        root.handlers += pytest_handlers

    try:
        yield buf, configure
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        for name, level in noisy.items():
            logging.getLogger(name).setLevel(level)


def test_a_configured_secret_is_redacted_from_messages_and_arguments(captured):
    buf, configure = captured
    configure("DEBUG", [SECRET, "short"])
    log = logging.getLogger("qianxing.test")
    log.info("secret is %s", SECRET)
    log.warning(f"inline {SECRET} too")
    text = buf.getvalue()
    assert SECRET not in text
    assert text.count("[redacted]") == 2


def test_secrets_in_url_query_strings_are_redacted(captured):
    buf, configure = captured
    configure("DEBUG", [])
    log = logging.getLogger("qianxing.test")
    log.debug("GET https://api.weixin.qq.com/sns/jscode2session?appid=wx1&secret=abc123def456"
              "&js_code=0a1b2c3d&grant_type=authorization_code")
    log.debug("pay params %s", "package=prepay_id%3Dwx1&paySign=DEADBEEF0011&signType=MD5")
    text = buf.getvalue()
    for leaked in ("abc123def456", "0a1b2c3d", "DEADBEEF0011"):
        assert leaked not in text
    assert "appid=wx1" in text and "grant_type=authorization_code" in text
    assert "secret=[redacted]&js_code=[redacted]" in text


def test_secrets_inside_a_logged_exception_are_redacted(captured):
    # given a library error whose message carries the secret (e.g. a URL with secret=...)
    buf, configure = captured
    configure("DEBUG", [SECRET])
    log = logging.getLogger("qianxing.test")
    try:
        raise ConnectionError(f"Max retries exceeded with url: /cgi-bin/token?secret={SECRET}"
                              f"&appid=wx1 ({SECRET})")
    except ConnectionError:
        # when it is logged with its traceback
        log.exception("token fetch failed")
    # then neither the traceback nor the message shows it
    text = buf.getvalue()
    assert "token fetch failed" in text and "ConnectionError" in text
    assert SECRET not in text


def test_the_noisy_libraries_stay_at_info_even_at_debug(captured):
    _, configure = captured
    configure("DEBUG", [])
    assert logging.getLogger().level == logging.DEBUG
    for name in ("wechatpy", "urllib3", "requests"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.INFO


def test_configuring_twice_keeps_one_filter_per_handler(captured):
    _, configure = captured
    configure("INFO", ["first-secret-value"])
    configure("INFO", ["second-secret-value"])
    root = logging.getLogger()
    ours = [h for h in root.handlers if type(h) is logging.StreamHandler]
    assert len(ours) == 1
    filters = [f for f in ours[0].filters if isinstance(f, RedactingFilter)]
    assert len(filters) == 1 and filters[0].redact("second-secret-value") == "[redacted]"


def test_a_login_payment_delivery_and_reveal_at_debug_leak_no_secret(
        captured, settings, client, login, shop, fake_pay, run_jobs):
    # given the app logging at DEBUG with the configured secrets
    buf, configure = captured
    configure("DEBUG", secret_values(settings))
    sku = shop.card_sku(keys=2, price=1990, code="LOGCHK")
    with db.connection_context():
        plaintexts = [vault.plaintext_of(k) for k in CardKey.select()]
    # when a shopper logs in, orders, pays through WeChat Pay, gets delivery and reveals it
    auth = login("log-alice")
    order = client.post("/api/v1/orders", json={"sku": sku.code, "quantity": 1},
                        headers=auth).json
    assert client.post(f"/api/v1/orders/{order['id']}/pay", headers=auth).status_code == 200
    assert fake_pay.notify_acknowledged(fake_pay.pay(order["no"]))
    run_jobs()
    [voucher] = client.get("/api/v1/vouchers", headers=auth).json["vouchers"]
    revealed = client.get(f"/api/v1/vouchers/{voucher['id']}", headers=auth).json["secret"]
    assert revealed in plaintexts
    # and a failed login and a refused notification are logged too
    assert client.post("/api/v1/auth/login", json={"code": "unknown-code-123"}).status_code >= 400
    fake_pay.send_notify(order["no"], fake_pay.build_notify_xml(order["no"], tamper_sign=True))
    # then the DEBUG log saw the traffic but none of the secrets or card keys
    text = buf.getvalue()
    assert "DEBUG" in text and len(text) > 1000
    for secret in (settings.WECHATPAY_API_KEY, settings.WECHAT_SECRET, settings.SECRET_KEY,
                   settings.VOUCHER_HASH_KEY, *plaintexts):
        assert secret and secret not in text, f"leaked {secret[:4]}..."
