"""Risk signals collected at the edges (issue 15): what an order, a payment, a coupon claim, an
assist help, a group join, a withdrawal request or a phone authorization looked like, as keyed
hashes and the coarse parts the rules read (models/risk_tables.py `RiskSignal`, `RiskUser`).

- Hashes: HMAC-SHA256 under RISK_HMAC_KEY (a secret), the first 32 hex characters, of the
  normalised value (`ip_parts`, `device_hash`, `phone_parts` normalise; `hmac_hex` hashes what
  it is given). The same value under the same key always gives the same hash, so the rules can
  join on it; without the key nobody can tell which address or number a hash stands for.
- In the clear only: the IPv4 /24 as "a.b.c" (the IPv6 /48), the phone's three-digit segment.
- Recording never fails the caller: `record` and `record_payment` log what went wrong (the
  event and the error's kind, never a raw value) and return; each is one statement in its own
  transaction (a savepoint inside a caller's), so a failed insert undoes nothing else.
- Retention: `prune` deletes signal rows and phones (`risk_user`, by their last authorization)
  older than RISK_RETENTION_DAYS and blanks the raw IPs other tables kept (`order.client_ip`,
  `assist_help.ip`) once they are that old.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import re

from models.db import db, execute, utcnow
from models.errors import InvalidInput
from models.risk_tables import RiskUser, SignalEvent

log = logging.getLogger(__name__)

HASH_HEX = 32  # characters kept of the HMAC-SHA256 hex digest (128 bits)
DEVICE_MAX = 128  # characters of a device id header value
_EVENTS = frozenset(e.value for e in SignalEvent)
_PHONE = re.compile(r"1[3-9][0-9]{9}")  # a mainland mobile number, ASCII digits only
_PHONE_SEPARATORS = str.maketrans("", "", " -")


def hmac_hex(key: str, value: str) -> str:
    """HMAC-SHA256 of `value` (already normalised by the caller: see `ip_parts`, `device_hash`,
    `phone_parts`) under `key`, first 32 hex characters."""
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:HASH_HEX]


def normal_ip(ip: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of `ip` (an IPv4-mapped IPv6 address as the IPv4 address, an IPv6 zone
    dropped), or None when missing or unparsable."""
    if not ip:
        return None
    try:
        addr = ipaddress.ip_address(ip.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def ip_parts(key: str, ip: str | None) -> tuple[str | None, str | None]:
    """(keyed hash, coarse network: the IPv4 /24 "a.b.c" or the IPv6 /48) of a client IP; (None,
    None) for a missing or unparsable address."""
    addr = normal_ip(ip)
    if addr is None:
        return None, None
    if isinstance(addr, ipaddress.IPv4Address):
        net = str(addr).rsplit(".", 1)[0]
    else:
        net = str(ipaddress.IPv6Network(f"{addr}/48", strict=False))
    return hmac_hex(key, str(addr)), net


def normal_device(device: str | None) -> str | None:
    """A device id header value stripped of surrounding blanks: 1-128 printable characters, else None."""
    if device is None:
        return None
    value = device.strip()
    if not 1 <= len(value) <= DEVICE_MAX or not value.isprintable():
        return None
    return value


def device_hash(key: str, device: str | None) -> str | None:
    """Keyed hash of a device id header value (None when absent, empty or not printable)."""
    value = normal_device(device)
    return hmac_hex(key, value) if value is not None else None


def normal_phone(phone: str | None) -> str | None:
    """The 11 digits of a mainland mobile number: spaces and dashes ignored, an optional +86 or
    86 prefix taken off; None for anything else (other countries, landlines, letters)."""
    if not phone:
        return None
    value = phone.strip().translate(_PHONE_SEPARATORS)
    if value.startswith("+86"):
        value = value[3:]
    elif value.startswith("86") and len(value) == 13:
        value = value[2:]
    return value if _PHONE.fullmatch(value) else None


def phone_parts(key: str, phone: str | None) -> tuple[str | None, str | None]:
    """(keyed hash, three-digit number segment) of a mainland mobile number; (None, None) for
    anything else."""
    value = normal_phone(phone)
    if value is None:
        return None, None
    return hmac_hex(key, value), value[:3]


_INSERT = ("INSERT INTO risk_signal (at, event, user_id, order_id, ref, ip_hash, ip_net, device_hash) "
           "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (order_id) DO NOTHING")


def record(key: str, event: str, *, user_id: int | None, ip: str | None = None, device: str | None = None,
           order_id: int | None = None, ref: str | None = None, at: dt.datetime | None = None) -> None:
    """One `risk_signal` row for an edge event (never raises into the caller's reply). An
    order's row is unique per `order_id`: a second one for the same order is ignored."""
    if event not in _EVENTS:
        log.warning("risk signal: unknown event %r not recorded", event[:20])
        return
    ip_hash, ip_net = ip_parts(key, ip)
    params = (at or utcnow(), event, user_id, order_id, ref[:64] if ref else None, ip_hash, ip_net,
              device_hash(key, device))
    _write(event, _INSERT, params)


# The payer's identity into the order's row, or a row of its own when the order has none (an
# order placed where no edge recorded it); `at` = the order's placing time either way.
_PAYMENT = ('INSERT INTO risk_signal (at, event, user_id, order_id, payer_hash) '
            'SELECT o.created_at, %s, o.user_id, o.id, %s FROM "order" o WHERE o.id = %s '
            "ON CONFLICT (order_id) DO UPDATE SET payer_hash = excluded.payer_hash")


def record_payment(key: str, order_id: int, payer_openid: str | None) -> None:
    """Fill the payer identity (the hash of the payment notification's payer openid) into the
    order's signal row, inserting one of event 'payment' if there is none. Never raises."""
    payer = (payer_openid or "").strip()
    if not payer:
        return
    _write(SignalEvent.PAYMENT.value, _PAYMENT, (SignalEvent.PAYMENT.value, hmac_hex(key, payer), order_id))


def _write(event: str, sql: str, params: tuple) -> None:
    try:
        with db.atomic():  # a savepoint inside a caller's transaction: a failure undoes only this
            execute(sql, params)
    except Exception as exc:  # noqa: BLE001 - a signal is never worth a failed order or payment
        log.warning("risk signal: %s not recorded (%s)", event, type(exc).__name__)


def set_phone(key: str, user_id: int, phone: str) -> RiskUser:
    """Remember the phone a shopper authorized, as its keyed hash and number segment only (the
    number itself is not kept). InvalidInput `invalid_phone` for anything but a mainland mobile."""
    phone_hash, segment = phone_parts(key, phone)
    if phone_hash is None:
        raise InvalidInput("only a mainland China mobile number can be linked", code="invalid_phone")
    now = utcnow()
    with db.atomic():
        execute("INSERT INTO risk_user (user_id, phone_hash, phone_seg, updated_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (user_id) DO UPDATE SET phone_hash = excluded.phone_hash, "
                "phone_seg = excluded.phone_seg, updated_at = excluded.updated_at",
                (user_id, phone_hash, segment, now))
    return RiskUser(user_id=user_id, phone_hash=phone_hash, phone_seg=segment, updated_at=now)


# -- retention ------------------------------------------------------------------------------------

_DELETE_OLD = (
    "DELETE FROM risk_signal WHERE id IN (SELECT id FROM risk_signal WHERE at < %s LIMIT %s)",
    "DELETE FROM risk_user WHERE user_id IN (SELECT user_id FROM risk_user WHERE updated_at < %s LIMIT %s)",
)
# Raw IPs kept by other tables: (table, IP column). Walked in (created_at, id) order from a cursor,
# so each run reads every old row once (the order table's (created_at, id) index, migration 0010).
_RAW_IPS = (('"order"', "client_ip"), ("assist_help", "ip"))


def prune(retention_days: int, *, now: dt.datetime | None = None, batch: int = 5000) -> int:
    """Delete the signal rows older than `retention_days` (and the phones last authorized before
    then) and blank the raw client IPs of orders (and assist helps) created before that cutoff,
    `batch` rows per transaction; returns the rows touched. Safe to run twice or side by side
    (the second finds nothing left)."""
    if retention_days < 1 or batch < 1:
        raise InvalidInput("retention and batch must be positive", code="invalid_retention")
    cutoff = (now or utcnow()) - dt.timedelta(days=retention_days)
    touched = 0
    for delete in _DELETE_OLD:
        while True:
            with db.atomic():
                deleted = execute(delete, (cutoff, batch)).rowcount
            touched += deleted
            if deleted < batch:
                break
    for table, column in _RAW_IPS:
        touched += _blank_old(table, column, cutoff, batch)
    return touched


def _blank_old(table: str, column: str, cutoff: dt.datetime, batch: int) -> int:
    select = (f"SELECT id, created_at FROM {table} WHERE created_at < %s AND {column} <> '' "
              "AND (created_at, id) > (%s, %s) ORDER BY created_at, id LIMIT %s")
    after: tuple[dt.datetime, int] = (dt.datetime.min, 0)
    touched = 0
    while True:
        rows = execute(select, (cutoff, *after, batch)).fetchall()
        if not rows:
            return touched
        ids = [row[0] for row in rows]
        with db.atomic():
            touched += execute(f"UPDATE {table} SET {column} = '' WHERE id IN ({', '.join(['%s'] * len(ids))}) "
                               f"AND {column} <> ''", ids).rowcount
        if len(rows) < batch:
            return touched
        last = rows[-1]
        after = (_as_datetime(last[1]), last[0])


def _as_datetime(value: object) -> dt.datetime:
    """SQLite hands timestamps back as text."""
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))
