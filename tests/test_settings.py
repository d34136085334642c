"""Settings: validated up front, bad values named, prod never falls back to dev secrets."""

from __future__ import annotations

import base64

import pytest

from qianxing.settings import _SECRETS, Settings, SettingsError, load_settings, parse_voucher_keys

GOOD_KEY = "k1:" + base64.b64encode(b"k" * 32).decode()
PROD = dict(QIANXING_ENV="prod", SECRET_KEY="prod-secret-key-0123456789", VOUCHER_KEY=GOOD_KEY,
            VOUCHER_HASH_KEY="prod-hash-key", WECHAT_SECRET="prod-wechat-secret",
            WECHATPAY_API_KEY="p" * 32, RISK_HMAC_KEY="prod-risk-hmac-key", PAYMENT_PROVIDER="wechatpay",
            PAYOUT_PROVIDER="wechatpay",
            WECHATPAY_NOTIFY_URL="https://shop.example.com/webhooks/wechatpay/notify",
            WECHATPAY_MCH_CERT="apiclient_cert.pem", WECHATPAY_MCH_KEY="apiclient_key.pem")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):  # noqa: ANN001, ANN201
    """No inherited configuration: empty environment for our names, no .env file."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    for name in ("apiclient_cert.pem", "apiclient_key.pem"):  # the PROD merchant certificate
        (tmp_path / name).write_text("-----BEGIN PEM-----\n")


def test_dev_defaults_work_without_any_configuration():
    s = load_settings()
    assert s.QIANXING_ENV == "dev" and s.is_sqlite
    assert s.SECRET_KEY and s.VOUCHER_HASH_KEY and s.WECHAT_SECRET and s.WECHATPAY_API_KEY
    assert list(parse_voucher_keys(s.VOUCHER_KEY or "")) == ["dev1"]
    assert s.notify_channels == ["log"] and s.PAYMENT_PROVIDER == "sandbox"
    assert s.intervals("DELIVERY_RETRY_INTERVALS") == [5, 30, 120, 600, 1800]
    assert s.notify_url == "http://127.0.0.1:8000/webhooks/wechatpay/notify"


def test_a_complete_prod_configuration_loads():
    s = load_settings(**PROD)
    assert s.SECRET_KEY == PROD["SECRET_KEY"] and s.notify_channels == ["wxa_subscribe"]
    assert s.notify_url == PROD["WECHATPAY_NOTIFY_URL"]


@pytest.mark.parametrize("missing", _SECRETS)
def test_prod_without_a_secret_names_it(missing):
    values = {k: v for k, v in PROD.items() if k != missing}
    with pytest.raises(SettingsError, match=missing):
        load_settings(**values)


def test_prod_without_secret_key_from_the_environment(monkeypatch):
    # given a prod environment that forgot SECRET_KEY
    for name, value in PROD.items():
        if name != "SECRET_KEY":
            monkeypatch.setenv(name, value)
    # then start-up stops naming it, rather than using the dev default
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "SECRET_KEY" in str(err.value)


def test_prod_refuses_the_sandbox_payment_provider():
    with pytest.raises(SettingsError, match="PAYMENT_PROVIDER"):
        load_settings(**{**PROD, "PAYMENT_PROVIDER": "sandbox"})


@pytest.mark.parametrize(("value", "complaint"), [
    ("k1:not*base64*at*all", "not valid base64"),
    ("k1:" + base64.b64encode(b"short").decode(), "32 bytes"),
    ("no-kid-separator", "kid:base64key"),
    (GOOD_KEY + ",k2:%%%", "'k2'"),
])
def test_a_bad_voucher_key_is_named_without_echoing_it(monkeypatch, value, complaint):
    monkeypatch.setenv("VOUCHER_KEY", value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert "VOUCHER_KEY" in message and complaint in message
    assert value not in message and value.split(":")[-1] not in message


@pytest.mark.parametrize(("name", "value"), [
    ("MAX_QUANTITY", "lots"),
    ("MAX_QUANTITY", "0"),
    ("ORDER_TTL_SECONDS", "1.5"),
    ("SESSION_TTL_SECONDS", "10"),
    ("TRUSTED_PROXIES", "-1"),
    ("DELIVERY_RETRY_INTERVALS", "5,soon"),
    ("NOTIFY_CHANNELS", "wxa_subscribe,pager"),
    ("QIANXING_ENV", "staging"),
])
def test_a_bad_value_from_the_environment_is_named(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert name in str(err.value)


def test_an_integer_from_the_environment_is_parsed(monkeypatch):
    monkeypatch.setenv("MAX_QUANTITY", "25")
    monkeypatch.setenv("TOPUP_RETRY_INTERVALS", " 1, 2 ,3 ")
    s = load_settings()
    assert s.MAX_QUANTITY == 25 and s.intervals("TOPUP_RETRY_INTERVALS") == [1, 2, 3]


def test_overrides_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("MAX_QUANTITY", "25")
    assert load_settings(MAX_QUANTITY=7).MAX_QUANTITY == 7


def test_a_dotenv_file_is_read(tmp_path):
    (tmp_path / ".env").write_text("MAX_UNPAID_PER_USER=9\nLOW_STOCK_THRESHOLD=4\n")
    s = load_settings()
    assert s.MAX_UNPAID_PER_USER == 9 and s.LOW_STOCK_THRESHOLD == 4


def test_prod_without_the_merchant_certificate_names_it():
    # given a prod configuration without the certificate that refunds need
    config = {k: v for k, v in PROD.items() if k not in ("WECHATPAY_MCH_CERT", "WECHATPAY_MCH_KEY")}
    # when it is loaded, then the error names the setting
    with pytest.raises(SettingsError, match="WECHATPAY_MCH_CERT"):
        load_settings(**config)


@pytest.mark.parametrize("changes,named", [
    ({"WECHATPAY_MCH_CERT": "missing.pem"}, "WECHATPAY_MCH_CERT"),
    ({"WECHATPAY_MCH_KEY": "missing.pem"}, "WECHATPAY_MCH_KEY"),
    ({"WECHATPAY_MCH_KEY": None}, "WECHATPAY_MCH_KEY"),
])
def test_a_bad_merchant_certificate_setting_is_named(changes, named):  # noqa: ANN001
    with pytest.raises(SettingsError, match=named):
        load_settings(**{**PROD, **changes})


def test_a_hold_threshold_above_the_review_threshold_is_refused():
    # given a hold score graver than the review score
    # when the settings load
    with pytest.raises(ValueError, match="RISK_HOLD_SCORE"):
        Settings(RISK_HOLD_SCORE=90, RISK_REVIEW_SCORE=80)
    # then equal thresholds are fine (every held order goes to review)
    assert Settings(RISK_HOLD_SCORE=80, RISK_REVIEW_SCORE=80).RISK_HOLD_SCORE == 80
