"""What the benchmarks share: scratch databases and Redis, the service's processes (started as
`python -m qianxing.cli ...`, with every setting in their environment), waiting for health,
the flash-sale catalog (seeding, signed payment notifications) and the after-run checks.

`Scratch` is one run of the real service on loopback: the `qianxing_bench` database created
next to the PostgreSQL in DATABASE_URL (or a SQLite file under var/bench/), Redis (REDIS_URL on
database 14, or an embedded redis-server of its own), and the processes it started.
`ScratchDatabase` is only a database, for the benchmarks that run in-process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from wechatpy.pay import calculate_signature, dict_to_xml

from qianxing.processes import stop_all
from qianxing.settings import VAR_DIR, Settings, load_settings

BENCH_DIR = VAR_DIR / "bench"
BENCH_DATABASE = "qianxing_bench"
BENCH_REDIS_DB = 14
SKU_CODE = "BENCH-FLASH-1"
PRICE_FEN = 990
STARTUP_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---- scratch databases --------------------------------------------------------------------


def pg_admin(url: str, *statements: str) -> None:
    """Run statements outside a transaction (CREATE/DROP DATABASE) on the server of `url`."""
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


class ScratchDatabase:
    """One benchmark run's database: its URL, `create()` and `remove()`."""

    def __init__(self, settings: Settings, label: str) -> None:
        self.postgres = settings.DATABASE_URL.startswith(("postgres://", "postgresql://"))
        self.admin_url = settings.DATABASE_URL
        self.path: Path | None = None
        if self.postgres:
            self.name = f"qx_bench_{label}_{os.getpid()}"
            self.url = with_database(settings.DATABASE_URL, self.name)
        else:
            BENCH_DIR.mkdir(parents=True, exist_ok=True)
            self.name = f"{label}-{os.getpid()}.db"
            self.path = BENCH_DIR / self.name
            self.url = f"sqlite:///{self.path}"

    def create(self) -> None:
        if self.postgres:
            pg_admin(self.admin_url, f'DROP DATABASE IF EXISTS "{self.name}"', f'CREATE DATABASE "{self.name}"')
        else:
            self.remove()

    def remove(self) -> None:
        from models.db import db

        if db.obj is not None:
            if not db.is_closed():
                db.close()
            if hasattr(db.obj, "close_all"):
                db.obj.close_all()
        if self.postgres:
            pg_admin(self.admin_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        elif self.path is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)


# ---- a run of the service: database, Redis, processes ----------------------------------------


def migrate_child(env: dict[str, str]) -> None:
    """`qianxing migrate` in a child process with the benchmark's environment."""
    migrated = subprocess.run([sys.executable, "-m", "qianxing.cli", "migrate"], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    if migrated.returncode:
        raise RuntimeError(f"migrate failed:\n{migrated.stdout}{migrated.stderr}")


def pg_drop(url: str) -> None:
    import psycopg2

    try:
        pg_admin(url, f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
    except psycopg2.errors.SyntaxError:  # PostgreSQL < 13
        pg_admin(
            url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{BENCH_DATABASE}' AND pid <> pg_backend_pid()",
            f"DROP DATABASE IF EXISTS {BENCH_DATABASE}",
        )


def redis_bench_url(url: str) -> str:
    """The given Redis URL, on database 14 when it names no database."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query))
        if "db" in query:
            return url
        query["db"] = str(BENCH_REDIS_DB)
        return urlunsplit(parts._replace(query=urlencode(query)))
    if parts.path.strip("/"):
        return url
    return urlunsplit(parts._replace(path=f"/{BENCH_REDIS_DB}"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Scratch:
    """Everything the run creates, so `close()` can take it all down again."""

    settings: Settings
    database_url: str = ""
    redis_url: str = ""
    sqlite_path: Path | None = None
    pg_admin_url: str | None = None
    embedded: Any = None
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    logs: dict[str, Path] = field(default_factory=dict)

    def open_database(self) -> str:
        url = self.settings.DATABASE_URL
        if url.startswith(("postgres://", "postgresql://")):
            if urlsplit(url).path.strip("/") == BENCH_DATABASE:
                raise RuntimeError(f"DATABASE_URL must not point at the scratch database {BENCH_DATABASE}")
            self.pg_admin_url = url
            pg_drop(url)
            pg_admin(url, f"CREATE DATABASE {BENCH_DATABASE}")
            self.database_url = with_database(url, BENCH_DATABASE)
        elif url.startswith("sqlite"):
            self.sqlite_path = BENCH_DIR / f"flash-sale-{os.getpid()}.db"
            self._remove_sqlite()
            self.database_url = f"sqlite:///{self.sqlite_path}"
        else:
            raise RuntimeError("the benchmark supports SQLite and PostgreSQL DATABASE_URLs")
        return self.database_url

    def open_redis(self) -> str:
        if self.settings.REDIS_URL:
            self.redis_url = redis_bench_url(self.settings.REDIS_URL)
        else:
            # An embedded server of our own: the development one (var/redis) keeps its queues.
            from qianxing.embedded_redis import EmbeddedRedis

            shutil.rmtree(self.redis_dir(), ignore_errors=True)
            self.embedded = EmbeddedRedis(self.redis_dir())
            self.redis_url = self.embedded.url
        from redis import Redis

        client = Redis.from_url(self.redis_url)
        try:
            client.flushdb()
        finally:
            client.close()
        return self.redis_url

    def redis_dir(self) -> Path:
        """The data directory of the embedded Redis (when REDIS_URL is unset)."""
        return BENCH_DIR / "redis"

    def log_dir(self) -> Path:
        return BENCH_DIR

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        self.log_dir().mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir() / f"{name}.log"
        self.logs[name] = log_path
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "qianxing.cli", *args], env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.procs.append((name, proc))
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.logs.get(name)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop_processes(self) -> None:
        names = {proc.pid: name for name, proc in self.procs}
        for proc in stop_all(proc for _, proc in self.procs):
            log(f"{names[proc.pid]} did not stop in time; killed its process group")
        self.procs.clear()

    def close(self) -> None:
        try:
            self.stop_processes()
        finally:
            self._close_database()
            if self.embedded is not None:
                with contextlib.suppress(Exception):
                    self.embedded.stop()
                shutil.rmtree(self.redis_dir(), ignore_errors=True)

    def _close_database(self) -> None:
        from models.db import db
        from qianxing import wiring

        with contextlib.suppress(Exception):
            if db.obj is not None:
                close_all = getattr(db.obj, "close_all", None)
                if close_all is not None:
                    close_all()
                elif not db.is_closed():
                    db.close()
        wiring.reset()
        if self.pg_admin_url:
            try:
                pg_drop(self.pg_admin_url)
            except Exception as exc:  # noqa: BLE001 - reported, never masks the real outcome
                log(f"could not drop database {BENCH_DATABASE}: {exc}")
        if self.sqlite_path is not None:
            self._remove_sqlite()

    def _remove_sqlite(self) -> None:
        assert self.sqlite_path is not None
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.sqlite_path}{suffix}").unlink(missing_ok=True)


def child_env(settings: Settings) -> dict[str, str]:
    """The environment for `qianxing migrate|web|worker`: every setting spelled out, so the
    children see exactly the bench configuration whatever .env or the caller's env holds."""
    fields = set(Settings.model_fields)
    env = {k: v for k, v in os.environ.items() if k not in fields}
    for name in fields:
        value = getattr(settings, name)
        if value is not None:
            env[name] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def bench_settings(settings: Settings, database_url: str, redis_url: str, port: int) -> Settings:
    """The settings of a benchmark's web server and worker: the scratch database and Redis, on
    127.0.0.1:`port`, the sandbox payment provider, no per-IP unpaid limit, quiet logs."""
    return load_settings(**{
        **settings.model_dump(),
        "QIANXING_ENV": "dev", "DATABASE_URL": database_url, "REDIS_URL": redis_url,
        "WEB_BIND": f"127.0.0.1:{port}", "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "WECHATPAY_NOTIFY_URL": None, "PAYMENT_PROVIDER": "sandbox",
        "MAX_UNPAID_PER_IP": 1_000_000, "NOTIFY_CHANNELS": "log", "LOG_LEVEL": "WARNING",
        "ORDER_TTL_SECONDS": 900,
    })


def wait_healthy(scratch: Scratch, base_url: str, timeout: float = STARTUP_TIMEOUT_S) -> None:
    """Wait (up to `timeout` seconds) until the web server answers /healthz."""
    deadline = time.monotonic() + timeout
    while True:
        scratch.check_alive()
        try:
            with urllib.request.urlopen(base_url + "/healthz", timeout=2) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the web server did not become healthy:\n{scratch.tail('web')}")
        time.sleep(0.2)


def seed(keys: int) -> int:
    from models import catalog, vault
    from models.catalog import Kind
    from models.db import connection, db

    with connection():
        with db.atomic():
            product = catalog.create_product("Bench flash sale", "qianxing bench flash-sale")
            sku = catalog.create_sku(product, code=SKU_CODE, name="Bench card key", kind=Kind.CARD_KEY,
                                     supply_price_fen=500, retail_price_fen=PRICE_FEN)
        rows = [(i + 1, f"BENCH-{i:06d}-{secrets.token_hex(6).upper()}") for i in range(keys)]
        report = vault.import_keys(sku, rows)
    return report.imported


def notifier(settings: Settings) -> Callable[[str, int, str], bytes]:
    appid, mch_id, api_key = settings.WECHAT_APPID, settings.WECHATPAY_MCH_ID, settings.WECHATPAY_API_KEY or ""

    def notify_xml(order_no: str, amount_fen: int, openid: str) -> bytes:
        """The signed v2 payment-result notification WeChat Pay posts to notify_url."""
        data = {
            "appid": appid, "mch_id": mch_id, "nonce_str": secrets.token_hex(16),
            "result_code": "SUCCESS", "return_code": "SUCCESS", "openid": openid,
            "is_subscribe": "N", "trade_type": "JSAPI", "bank_type": "OTHERS",
            "total_fee": str(amount_fen), "cash_fee": str(amount_fen), "fee_type": "CNY",
            "out_trade_no": order_no, "transaction_id": "bench" + order_no,
            "time_end": time.strftime("%Y%m%d%H%M%S", time.gmtime()),
        }
        return dict_to_xml(data, calculate_signature(data, api_key)).encode()

    return notify_xml


# ---- verification -------------------------------------------------------------------------


def verify(pool: int) -> dict[str, int]:
    import peewee as pw

    from models.catalog import Sku
    from models.db import connection
    from models.delivery import Voucher
    from models.inventory import OrderItem
    from models.orders import Order, Status
    from models.vault import CardKey

    with connection():
        sku = Sku.get(Sku.code == SKU_CODE)
        keys_in_pool = CardKey.select().where(CardKey.sku == sku).count()
        paid = Order.select().where(Order.status.in_([Status.PAID, Status.DELIVERED])).count()
        delivered = Order.select().where(Order.status == Status.DELIVERED).count()
        pending = Order.select().where(Order.status == Status.PENDING).count()
        held = OrderItem.select(pw.fn.COALESCE(pw.fn.SUM(OrderItem.quantity), 0)).where(
            OrderItem.sku == sku).scalar()
        # Orders holding stock whose claimed keys do not add up: a key claimed by two orders
        # leaves the first one short (card_key.order_id was overwritten).
        claimed = (CardKey.select(CardKey.order_id, pw.fn.COUNT(CardKey.id).alias("n"))
                   .where(CardKey.order_id.is_null(False)).group_by(CardKey.order_id))
        claimed_by = {row.order_id: row.n for row in claimed}
        short = sum(1 for item in OrderItem.select() if claimed_by.get(item.order_id, 0) != item.quantity)
        # Vouchers holding a key that belongs to another order.
        foreign = (Voucher.select().join(CardKey)
                   .where((CardKey.order_id.is_null() | (CardKey.order_id != Voucher.order))
                          & Voucher.revoked_at.is_null()).count())
        # Live vouchers only: a refunded (revoked) voucher keeps its key while the key is sold again.
        live = Voucher.card_key.is_null(False) & Voucher.revoked_at.is_null()
        with_key = Voucher.select().where(live).count()
        distinct_keys = Voucher.select(pw.fn.COUNT(Voucher.card_key.distinct())).where(live).scalar() or 0
        per_order = (Voucher.select(Voucher.order, pw.fn.COUNT(Voucher.id).alias("n"))
                     .group_by(Voucher.order))
        vouchers_of = {row.order_id: row.n for row in per_order}
        wrong_count = sum(1 for o in Order.select(Order.id, Order.quantity)
                          .where(Order.status == Status.DELIVERED)
                          if vouchers_of.get(o.id, 0) != o.quantity)
    oversold = max(0, paid - pool) + max(0, int(held) - keys_in_pool) + short + foreign
    return {
        "paid": paid, "delivered": delivered, "pending": pending, "keys_in_pool": keys_in_pool,
        "oversold": oversold, "duplicate_keys": (with_key - distinct_keys) + wrong_count,
    }


@dataclass
class OwnScratch(Scratch):
    """Scratch with names of its own: a scratch database `ScratchDatabase(settings, db_name)`,
    logs under var/bench/<dir_name>-<pid>/ and an embedded Redis under
    var/bench/<dir_name>-redis-<pid>/, so a benchmark never touches the scratch of another one
    running beside it (live-burst, group-buy)."""

    db_name: str = "own"
    dir_name: str = "own"
    own: ScratchDatabase | None = None

    def open_database(self) -> str:
        self.own = ScratchDatabase(self.settings, self.db_name)
        if not self.own.postgres and not self.settings.DATABASE_URL.startswith("sqlite"):
            raise RuntimeError("the benchmark supports SQLite and PostgreSQL DATABASE_URLs")
        self.own.create()
        self.database_url = self.own.url
        return self.database_url

    def redis_dir(self) -> Path:
        return BENCH_DIR / f"{self.dir_name}-redis-{os.getpid()}"

    def log_dir(self) -> Path:
        return BENCH_DIR / f"{self.dir_name}-{os.getpid()}"

    def _close_database(self) -> None:
        from qianxing import wiring

        with contextlib.suppress(Exception):
            self.own.remove()
        wiring.reset()
