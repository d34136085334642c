"""What `qianxing bench faults` measures: the buyers' load (orders created and paid, retried as
WeChat Pay retries, with every error counted) and the database's verdict seen from outside the
service (backlog, per-window checks, notices written twice to the workers' logs)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from qianxing.bench.harness import SKU_CODE, log

REQUEST_TIMEOUT_S = 10.0
NOTIFY_ATTEMPTS = 5
NOTIFY_RETRY_S = 1.0
NOTICE_LINE = re.compile(rb"notice to user \d+: order (\S+) ")


# ---- the database, seen from outside the service ------------------------------------------


class Db:
    """Raw read-only queries on the scratch database through one connection of the bench's own,
    opened again after any error (a terminated backend included)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith(("postgres://", "postgresql://"))
        self.conn: Any = None

    def query(self, sql: str, *params: Any) -> list[tuple]:
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = self._connect()
                cur = self.conn.cursor()
                cur.execute(sql if self.postgres else sql.replace("%s", "?"), params)
                rows = cur.fetchall()
                cur.close()
                self.conn.rollback()
                return rows
            except Exception:
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def scalar(self, sql: str, *params: Any) -> Any:
        return self.query(sql, *params)[0][0]

    def _connect(self) -> Any:
        if self.postgres:
            import psycopg2

            conn = psycopg2.connect(self.url, connect_timeout=3, application_name="qianxing-bench-faults")
            conn.set_session(readonly=True)
            return conn
        return sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=5)

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None

    def backlog(self, after_id: int = 0) -> tuple[int, float]:
        """Paid orders not delivered (those with an id above `after_id`), and how long the
        oldest has waited (s)."""
        count, oldest = self.query("SELECT COUNT(*), MIN(paid_at) FROM \"order\" WHERE status = 'paid' "
                                   "AND id > %s", after_id)[0]
        if not count or oldest is None:
            return 0, 0.0
        if isinstance(oldest, str):
            oldest = dt.datetime.fromisoformat(oldest)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return int(count), max(0.0, (now - oldest).total_seconds())

    def max_order_id(self) -> int:
        return int(self.scalar("SELECT COALESCE(MAX(id), 0) FROM \"order\""))

    def window_checks(self, low: int, high: int) -> dict[str, int]:
        """The database's verdict on the orders with low < id <= high."""
        rng = (low, high)
        paid = self.scalar("SELECT COUNT(*) FROM \"order\" WHERE id > %s AND id <= %s "
                           "AND status IN ('paid', 'delivered', 'refunded')", *rng)
        lost = self.scalar("SELECT COUNT(*) FROM \"order\" WHERE id > %s AND id <= %s AND status = 'paid'", *rng)
        delivered = self.scalar("SELECT COUNT(*) FROM \"order\" WHERE id > %s AND id <= %s "
                                "AND status = 'delivered'", *rng)
        shared_key = self.scalar(
            "SELECT COUNT(*) FROM voucher v WHERE v.order_id > %s AND v.order_id <= %s "
            "AND v.card_key_id IS NOT NULL AND v.revoked_at IS NULL AND EXISTS (SELECT 1 FROM voucher w "
            "WHERE w.card_key_id = v.card_key_id AND w.id <> v.id AND w.revoked_at IS NULL)", *rng)
        extra_vouchers = self.scalar(
            "SELECT COUNT(*) FROM (SELECT o.id FROM \"order\" o JOIN voucher v ON v.order_id = o.id "
            "AND v.revoked_at IS NULL WHERE o.id > %s AND o.id <= %s GROUP BY o.id, o.quantity "
            "HAVING COUNT(*) > o.quantity) t", *rng)
        second_notice = self.scalar(
            "SELECT COUNT(*) FROM (SELECT order_id FROM notification WHERE order_id > %s AND order_id <= %s "
            "GROUP BY order_id, channel, kind HAVING COUNT(*) > 1) t", *rng)
        sent_twice = self.scalar(
            "SELECT COUNT(*) FROM (SELECT a.notification_id FROM notification_attempt a "
            "JOIN notification n ON n.id = a.notification_id WHERE n.order_id > %s AND n.order_id <= %s "
            "AND a.ok GROUP BY a.notification_id HAVING COUNT(*) > 1) t", *rng)
        foreign_key = self.scalar(
            "SELECT COUNT(*) FROM voucher v JOIN card_key k ON k.id = v.card_key_id "
            "WHERE v.order_id > %s AND v.order_id <= %s AND (k.order_id IS NULL OR k.order_id <> v.order_id)",
            *rng)
        short = self.scalar(
            "SELECT COUNT(*) FROM order_item i WHERE i.order_id > %s AND i.order_id <= %s AND i.quantity <> "
            "(SELECT COUNT(*) FROM card_key k WHERE k.order_id = i.order_id)", *rng)
        return {"orders": int(paid), "delivered": int(delivered), "lost": int(lost),
                "duplicates": int(shared_key + extra_vouchers + second_notice + sent_twice),
                "oversold": int(foreign_key + short)}


def notices_logged_twice(logs: dict[str, Path], db: Db) -> set[int]:
    """Orders whose delivery notice the workers wrote to their logs (the `log` channel) more
    than once, whatever the database recorded: a notice sent again after a crash between the
    send and its record."""
    seen: Counter[bytes] = Counter()
    for name, path in logs.items():
        if name.startswith("worker") and path.exists():
            seen.update(NOTICE_LINE.findall(path.read_bytes()))
    twice = [no.decode() for no, n in seen.items() if n > 1]
    found: set[int] = set()
    for i in range(0, len(twice), 500):
        chunk = twice[i:i + 500]
        rows = db.query(f"SELECT id FROM \"order\" WHERE no IN ({', '.join(['%s'] * len(chunk))})", *chunk)
        found.update(int(row[0]) for row in rows)
    if seen:
        log(f"{sum(seen.values())} delivery notices in the worker logs, {len(twice)} orders noticed twice")
    else:
        log("no delivery notice found in the worker logs")
    return found


# ---- load ---------------------------------------------------------------------------------


@dataclass
class Load:
    created: int = 0  # orders answered 201
    paid: int = 0  # notifications answered SUCCESS
    unpaid: int = 0  # created orders whose notification was never accepted
    notify_retries: int = 0
    errors_5xx: int = 0
    connection_errors: int = 0
    timeouts: int = 0
    unexpected: int = 0  # other answers (4xx other than sold out)
    sold_out: bool = False
    statuses: Counter[int] = field(default_factory=Counter)


async def _request(load: Load, http: aiohttp.ClientSession, method: str, url: str,
                   **kwargs: Any) -> tuple[int, bytes] | None:
    try:
        async with http.request(method, url, **kwargs) as resp:
            body = await resp.read()
            status = resp.status
    except TimeoutError:
        load.timeouts += 1
        await asyncio.sleep(0.2)
        return None
    except aiohttp.ClientError:
        load.connection_errors += 1
        await asyncio.sleep(0.2)
        return None
    load.statuses[status] += 1
    if status >= 500:
        load.errors_5xx += 1
    return status, body


def _session(clients: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients, ttl_dns_cache=None)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))


async def login(base_url: str, clients: int) -> list[str]:
    async with _session(clients) as http:

        async def login(i: int) -> str:
            async with http.post(base_url + "/api/v1/auth/dev-login", json={"openid": f"bench-{i}"}) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"dev-login answered {resp.status}: {await resp.text()}")
                return (await resp.json())["token"]

        return list(await asyncio.gather(*(login(i) for i in range(clients))))


async def buyers(base_url: str, tokens: list[str], until: float,
                  notify_xml: Callable[[str, int, str], bytes], tag: str) -> Load:
    load = Load()
    orders_url, notify_url = base_url + "/api/v1/orders", base_url + "/webhooks/wechatpay/notify"
    async with _session(len(tokens)) as http:

        async def buyer(i: int, token: str) -> None:
            auth = {"Authorization": f"Bearer {token}"}
            n = 0
            while time.monotonic() < until:
                n += 1
                answer = await _request(load, http, "POST", orders_url, json={"sku": SKU_CODE, "quantity": 1},
                                        headers={**auth, "Idempotency-Key": f"faults-{tag}-{i}-{n}"})
                if answer is None or answer[0] >= 500:
                    continue
                status, body = answer
                if status == 409 and b"out_of_stock" in body:
                    load.sold_out = True
                    return
                if status != 201:
                    load.unexpected += 1
                    await asyncio.sleep(0.05)
                    continue
                load.created += 1
                order = json.loads(body)
                # Paid as WeChat Pay would: the notification again until it is accepted.
                for attempt in range(NOTIFY_ATTEMPTS):
                    if attempt:
                        load.notify_retries += 1
                        await asyncio.sleep(NOTIFY_RETRY_S)
                    paid = await _request(load, http, "POST", notify_url,
                                          data=notify_xml(order["no"], int(order["amount_fen"]), f"bench-{i}"),
                                          headers={"Content-Type": "text/xml"})
                    if paid is None or paid[0] >= 500:
                        continue
                    if paid[0] == 200 and b"SUCCESS" in paid[1]:
                        load.paid += 1
                    else:
                        load.unexpected += 1
                        load.unpaid += 1
                    break
                else:
                    load.unpaid += 1

        await asyncio.gather(*(buyer(i, t) for i, t in enumerate(tokens)))
    return load
