"""Issue 16: hot topics. New tables (models/hot_topics.py): hot_topic_import (unique key: an
import is made once per form), hot_topic (unique per import and title) and hot_topic_pair
(unique per topic and SKU)."""

from __future__ import annotations

import peewee as pw

from models import hot_topics

TABLES: list[type[pw.Model]] = list(hot_topics.TABLES)


def up(db: pw.Database) -> None:
    db.create_tables(TABLES, safe=True)
