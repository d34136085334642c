"""Chat platforms as the domain sees them, the tables: who a platform account is, which updates
arrived, every outbound message with its attempts, and community-group rules kept as data.

The conversation logic lives in bots/ (it formats replies); these tables are what makes it
safe: an update is stored under a unique (platform, update_key) before it is acknowledged, and
an outbound message under a unique idempotency key before it is sent, so a retry or a crash
neither loses nor repeats anything. Their service functions: models/identities.py
(`ChatIdentity`), models/inbox.py (`BotUpdate`: store, claim, finish, retry, recover) and
models/outbox.py (`OutboundMessage`, `OutboundAttempt`: write, claim, record); group rules and
settings are read and written by bots/groups.py.
"""

from __future__ import annotations

from enum import StrEnum

import peewee as pw

from models.db import BaseModel, JSONText, utcnow
from models.users import User


class Platform(StrEnum):
    TELEGRAM = "telegram"
    WECHAT = "wechat"  # the official account
    CONSOLE = "console"


class ChatIdentity(BaseModel):
    """A platform account of a user. `last_inbound_at` opens WeChat's 48-hour window for
    customer-service messages."""

    platform = pw.CharField(max_length=16)
    external_id = pw.CharField(max_length=64)  # Telegram user id, WeChat openid, console name
    user = pw.ForeignKeyField(User, backref="identities", on_delete="RESTRICT")
    chat_id = pw.CharField(max_length=64)  # where private messages to this user go
    display_name = pw.CharField(max_length=64, default="")
    last_inbound_at = pw.DateTimeField(null=True)
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("platform", "external_id"), True),)


class BotUpdate(BaseModel):
    """An inbound update stored before it is acknowledged: the durable queue and the dedupe."""

    platform = pw.CharField(max_length=16)
    update_key = pw.CharField(max_length=64)  # Telegram update_id, WeChat MsgId or event key
    payload = JSONText()
    state = pw.CharField(max_length=8, default="queued")  # queued, done, failed
    attempts = pw.IntegerField(default=0)
    last_error = pw.CharField(max_length=200, null=True)
    received_at = pw.DateTimeField(default=utcnow)
    processed_at = pw.DateTimeField(null=True)

    class Meta:
        indexes = ((("platform", "update_key"), True), (("state", "id"), False))


class OutboundMessage(BaseModel):
    """One logical message to one chat. `key` is the idempotency key (message and recipient):
    inserting it twice is refused, and a sent row is never sent again."""

    key = pw.CharField(max_length=128, unique=True)
    platform = pw.CharField(max_length=16)
    chat_id = pw.CharField(max_length=64)
    chat_kind = pw.CharField(max_length=8, default="private")  # private, group
    payload = JSONText()  # text, image reference, buttons
    paid_broadcast = pw.BooleanField(default=False)
    broadcast_id = pw.CharField(max_length=64, null=True)
    state = pw.CharField(max_length=8, default="pending")  # pending, sending, sent, failed
    attempts = pw.IntegerField(default=0)
    not_before = pw.DateTimeField(default=utcnow)  # retry_after / backoff
    claimed_at = pw.DateTimeField(null=True)
    last_error = pw.CharField(max_length=200, null=True)
    created_at = pw.DateTimeField(default=utcnow)
    sent_at = pw.DateTimeField(null=True)

    class Meta:
        indexes = ((("state", "not_before"), False), (("broadcast_id",), False))


class OutboundAttempt(BaseModel):
    message = pw.ForeignKeyField(OutboundMessage, backref="attempt_rows", on_delete="RESTRICT")
    number = pw.IntegerField()
    ok = pw.BooleanField()
    status = pw.CharField(max_length=32, default="")  # e.g. 200, 429, timeout, errcode 45015
    error = pw.CharField(max_length=200, null=True)
    retry_after_s = pw.FloatField(null=True)
    created_at = pw.DateTimeField(default=utcnow)


class MatchType(StrEnum):
    EXACT = "exact"
    CONTAINS = "contains"
    REGEX = "regex"


class GroupRule(BaseModel):
    """An auto-reply rule. `scope` is a group's chat key (`telegram:-100123`) or `*` for all
    groups; the highest priority matching rule answers."""

    scope = pw.CharField(max_length=80, default="*")
    match = pw.CharField(max_length=8)
    pattern = pw.CharField(max_length=200)
    reply = pw.TextField()
    priority = pw.IntegerField(default=0)
    active = pw.BooleanField(default=True)
    created_at = pw.DateTimeField(default=utcnow)


class GroupConfig(BaseModel):
    chat_key = pw.CharField(max_length=80, unique=True)  # platform:chat_id
    title = pw.CharField(max_length=120, default="")
    welcome_text = pw.TextField(default="")
    promo_ref = pw.CharField(max_length=32, null=True)  # a creator code for the welcome link
    coupon_text = pw.CharField(max_length=200, default="")
    banned_words = JSONText(default=list)
    replies_per_minute = pw.IntegerField(null=True)  # None: the per-group sender limit
    ai_fallback = pw.BooleanField(default=False)
    active = pw.BooleanField(default=True)
