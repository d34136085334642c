"""Broadcasts from the admin: one message to an audience, sent through the one outbound sender.

A broadcast is a row (what to say, to whom, paid or not, how many recipients it had when it was
sent) written when an operator sends it. The job `tasks.broadcasts.send_broadcast(id)` then
streams the recipients in keyset order (`recipients_after`, CHUNK per statement, never the
whole audience in memory) and hands each chunk to the sender, which writes one outbox row per
recipient under `outbox.broadcast_key(outbox_id, chat)` and queues one drain job. That key is
unique, so a job that runs twice (RQ runs jobs at least once), or resumes after a crash between
a chunk and its `cursor`, never writes a second row for a recipient: `fan_out` is idempotent.

Audiences (`Audience`):
- `platform`: every chat user of a platform (telegram, wechat: the official account);
- `creators`: active creators at or above a star level, through their account on the platform;
- `group`: one configured Telegram group (its chat key, `telegram:-100123`).
On WeChat only users who wrote to the official account within WECHAT_WINDOW are recipients:
outside that window a customer-service message is refused (45015), so they are not counted.
`count` is the preview and `recipients_after` the stream: the same conditions, so the count
shown before sending is the number of rows the job writes (chat_identity (platform, id) and
creator (rank, user_id), migration 0012, keep both index scans).

Progress is read from the outbox rows of the broadcast (`progress`: queued, sent, failed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import peewee as pw

from models.catalog import get_sku
from models.chat import GroupConfig, Platform
from models.db import BaseModel, JSONText, execute, utcnow
from models.errors import InvalidInput, NotFound
from models.money import rmb

CHUNK = 1000  # recipients per statement and per outbox write
WECHAT_WINDOW = dt.timedelta(hours=48)  # WeChat's customer-service window after a user's last message
TEXT_MAX = 2000  # characters (a Telegram caption is split from its photo by the transport)
MAX_RANK = 100
PLATFORMS = (Platform.TELEGRAM.value, Platform.WECHAT.value)
AUDIENCES = ("platform", "creators", "group")


class Broadcast(BaseModel):
    text = pw.TextField()
    sku_code = pw.CharField(max_length=64, null=True)  # the product card, if any
    image_key = pw.CharField(max_length=64, null=True)  # the poster under POSTER_DIR, if any
    payload = JSONText()  # the message as the outbox stores it (bots.sender.payload_of's form)
    platform = pw.CharField(max_length=16)
    audience = pw.CharField(max_length=16)  # platform, creators, group
    min_rank = pw.IntegerField(null=True)  # creators: this star level or above
    group_key = pw.CharField(max_length=80, null=True)  # group: its chat key
    paid = pw.BooleanField(default=False)  # Telegram paid broadcast (allow_paid_broadcast)
    state = pw.CharField(max_length=12, default="queued")  # queued, writing, written
    recipients = pw.IntegerField(default=0)  # counted when it was sent
    written = pw.IntegerField(default=0)  # recipients handed to the outbox so far
    cursor = pw.BigIntegerField(default=0)  # the last chat_identity id handed over
    operator_id = pw.BigIntegerField(null=True)
    operator_name = pw.CharField(max_length=64, default="")
    created_at = pw.DateTimeField(default=utcnow)
    started_at = pw.DateTimeField(null=True)
    finished_at = pw.DateTimeField(null=True)

    @property
    def outbox_id(self) -> str:
        """The `broadcast_id` of its outbox rows."""
        return f"admin-{self.id}"

    @property
    def chat_kind(self) -> str:
        return "group" if self.audience == "group" else "private"

    def audience_of(self) -> Audience:
        return Audience(self.audience, self.platform, self.min_rank, self.group_key)


@dataclass(frozen=True)
class Audience:
    kind: str  # platform, creators, group
    platform: str
    min_rank: int | None = None
    group_key: str | None = None

    def describe(self) -> dict[str, Any]:
        found: dict[str, Any] = {"kind": self.kind, "platform": self.platform}
        if self.kind == "creators":
            found["min_rank"] = self.min_rank
        if self.kind == "group":
            found["group"] = self.group_key
        return found


def audience(kind: str, platform: str = "", min_rank: str | int | None = None,
             group_key: str | None = None) -> Audience:
    """An audience from a form's fields. Raises InvalidInput with the reason."""
    if kind not in AUDIENCES:
        raise InvalidInput("请选择收件人范围", code="invalid_audience")
    if kind == "group":
        key = (group_key or "").strip()
        group_platform, sep, chat_id = key.partition(":")
        if not sep or group_platform != Platform.TELEGRAM.value or not chat_id:
            raise InvalidInput("群发到群只支持 Telegram 群（如 telegram:-100123）", code="invalid_group")
        if GroupConfig.get_or_none(GroupConfig.chat_key == key) is None:
            raise InvalidInput(f"没有这个群的设置：{key}（先在群设置里添加它）", code="unknown_group")
        return Audience("group", group_platform, None, key)
    if platform not in PLATFORMS:
        raise InvalidInput("请选择平台：telegram 或 wechat", code="invalid_platform")
    if kind == "platform":
        return Audience("platform", platform)
    try:
        rank = int(str(min_rank if min_rank is not None else "").strip())
    except ValueError:
        raise InvalidInput("星级请填写 0 或以上的整数", code="invalid_rank") from None
    if not 0 <= rank <= MAX_RANK:
        raise InvalidInput("星级请填写 0 或以上的整数", code="invalid_rank")
    return Audience("creators", platform, rank)


# ---- recipients ------------------------------------------------------------------------------

_CREATORS = ("FROM chat_identity ci JOIN creator c ON c.user_id = ci.user_id "
             "WHERE ci.platform = %s AND c.rank >= %s AND c.active = %s")


def _reachable(aud: Audience) -> tuple[str, list[Any]]:
    """The extra condition on chat_identity `ci` for the platform (WeChat: the 48-hour window)."""
    if aud.platform == Platform.WECHAT.value:
        return " AND ci.last_inbound_at >= %s", [Broadcast.created_at.db_value(utcnow() - WECHAT_WINDOW)]
    return "", []


def count(aud: Audience) -> int:
    """How many recipients the audience has now (the preview): one indexed COUNT."""
    if aud.kind == "group":
        return 1
    extra, params = _reachable(aud)
    if aud.kind == "platform":
        row = execute(f"SELECT COUNT(*) FROM chat_identity ci WHERE ci.platform = %s{extra}",
                      [aud.platform, *params]).fetchone()
    else:
        row = execute(f"SELECT COUNT(*) {_CREATORS}{extra}",
                      [aud.platform, aud.min_rank or 0, True, *params]).fetchone()
    return int(row[0])


def recipients_after(aud: Audience, cursor: int, limit: int = CHUNK) -> list[tuple[int, str]]:
    """The next `limit` recipients after `cursor` as (chat_identity id, chat id), in id order."""
    if aud.kind == "group":
        return [(1, (aud.group_key or "").partition(":")[2])] if cursor < 1 else []
    extra, params = _reachable(aud)
    if aud.kind == "platform":
        rows = execute(f"SELECT ci.id, ci.chat_id FROM chat_identity ci WHERE ci.platform = %s{extra} "
                       "AND ci.id > %s ORDER BY ci.id LIMIT %s", [aud.platform, *params, cursor, limit]).fetchall()
    else:
        rows = execute(f"SELECT ci.id, ci.chat_id {_CREATORS}{extra} AND ci.id > %s ORDER BY ci.id LIMIT %s",
                       [aud.platform, aud.min_rank or 0, True, *params, cursor, limit]).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


# ---- composing and sending ---------------------------------------------------------------------


def compose(text: str, *, sku_code: str | None, image_key: str | None, share_base: str) -> dict[str, Any]:
    """The stored message: the text, a product card (the SKU's name and price, a button to its
    share page `<share_base>/p/<sku>`) and the poster image, if given."""
    text = (text or "").strip()
    if len(text) > TEXT_MAX:
        raise InvalidInput(f"内容最多 {TEXT_MAX} 个字", code="invalid_text")
    if not text and not image_key:
        raise InvalidInput("请填写群发内容", code="invalid_text")
    payload: dict[str, Any] = {"text": text}
    if sku_code:
        try:
            sku = get_sku(sku_code.strip()[:64])
        except NotFound:
            raise InvalidInput(f"没有这个在售商品：{sku_code.strip()[:64]}", code="unknown_sku") from None
        title = sku.product.title if sku.product.title == sku.name else f"{sku.product.title} · {sku.name}"
        card = f"🛒 {title} {rmb(sku.retail_price_fen)}"
        payload["text"] = f"{text}\n\n{card}" if text else card
        payload["buttons"] = [[{"text": "查看商品", "url": f"{share_base.rstrip('/')}/p/{sku.code}"}]]
    if image_key:
        payload["image_key"] = image_key
    return payload


def create(aud: Audience, text: str, *, sku_code: str | None = None, image_key: str | None = None,
           paid: bool = False, share_base: str, operator: tuple[int | None, str] = (None, "")) -> Broadcast:
    """A broadcast ready for its job, with its recipients counted now. Raises InvalidInput
    (invalid_text, unknown_sku, paid_not_telegram, no_recipients); nothing is written then."""
    if paid and aud.platform != Platform.TELEGRAM.value:
        raise InvalidInput("付费广播只适用于 Telegram", code="paid_not_telegram")
    sku_code = (sku_code or "").strip() or None
    payload = compose(text, sku_code=sku_code, image_key=image_key, share_base=share_base)
    recipients = count(aud)
    if recipients == 0:
        raise InvalidInput("这个范围内没有收件人", code="no_recipients")
    return Broadcast.create(text=(text or "").strip(), sku_code=sku_code, image_key=image_key, payload=payload,
                            platform=aud.platform, audience=aud.kind, min_rank=aud.min_rank,
                            group_key=aud.group_key, paid=bool(paid), recipients=recipients,
                            operator_id=operator[0], operator_name=operator[1][:64])


def get(broadcast_id: int) -> Broadcast:
    found = Broadcast.get_or_none(Broadcast.id == broadcast_id)
    if found is None:
        raise NotFound(f"没有群发 {broadcast_id}", code="broadcast_not_found")
    return found


def fan_out(broadcast_id: int, write: Callable[[Sequence[str]], int], *, chunk: int = CHUNK) -> Broadcast:
    """Hand the broadcast's recipients to `write` (the sender's `broadcast`: one outbox row per
    chat under a unique key, committed) a chunk at a time, from where an earlier run stopped.
    Each chunk advances `cursor` and `written` by compare-and-set, so two runs at once neither
    skip nor count a recipient twice; the rows themselves are unique by key."""
    b = get(broadcast_id)
    now = utcnow()
    Broadcast.update(state="writing", started_at=pw.fn.COALESCE(Broadcast.started_at, now)).where(
        (Broadcast.id == b.id) & (Broadcast.state != "written")).execute()
    aud, cursor = b.audience_of(), b.cursor
    while True:
        rows = recipients_after(aud, cursor, chunk)
        if not rows:
            break
        write([chat for _, chat in rows])
        last = rows[-1][0]
        Broadcast.update(cursor=last, written=Broadcast.written + len(rows)).where(
            (Broadcast.id == b.id) & (Broadcast.cursor == cursor)).execute()
        cursor = last
    Broadcast.update(state="written", finished_at=pw.fn.COALESCE(Broadcast.finished_at, utcnow())).where(
        Broadcast.id == b.id).execute()
    return get(b.id)


# ---- reading ----------------------------------------------------------------------------------


def progress(b: Broadcast) -> dict[str, int]:
    """Its outbox rows by state: queued (pending or being sent), sent, failed, and all."""
    rows = execute("SELECT state, COUNT(*) FROM outbound_message WHERE broadcast_id = %s GROUP BY state",
                   (b.outbox_id,)).fetchall()
    by_state = {str(state): int(n) for state, n in rows}
    queued = by_state.get("pending", 0) + by_state.get("sending", 0)
    return {"queued": queued, "sent": by_state.get("sent", 0), "failed": by_state.get("failed", 0),
            "rows": sum(by_state.values())}


def recent(limit: int = 50, before_id: int | None = None) -> list[Broadcast]:
    query = Broadcast.select()
    if before_id is not None:
        query = query.where(Broadcast.id < before_id)
    return list(query.order_by(Broadcast.id.desc()).limit(limit))

