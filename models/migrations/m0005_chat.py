"""Chat bots (issue 4): platform identities, durable inbound updates, outbound messages with
their attempts, and community-group rules and settings."""

from __future__ import annotations

import peewee as pw

from models.chat import BotUpdate, ChatIdentity, GroupConfig, GroupRule, OutboundAttempt, OutboundMessage

TABLES = [ChatIdentity, BotUpdate, OutboundMessage, OutboundAttempt, GroupRule, GroupConfig]


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
