"""Hot topics (issue 16): imported hot-topic lists and the products paired with each topic.

- `HotTopicImport`: one import (an uploaded CSV, or a URL returning JSON that a job fetches).
  `key` is unique: the admin form's one-time token, so the same form sent twice is one import.
  State: queued -> running -> done | failed; a job claims `queued` with one UPDATE (`claim`),
  so a job that runs twice imports once. `error` is the operator-facing reason of a failure.
- `HotTopic`: a topic of an import (title, heat, rank = its position in the list); unique
  (import, title): storing the same rows again inserts nothing.
- `HotTopicPair`: a product (one SKU) suggested for a topic, with the cosine similarity in basis
  points, a short hook, where the hook came from (model | offline) and the embedder whose
  vectors were compared (vectors of two embedders are never compared with each other).

Parsing (CSV and JSON, liberal and bounded) is in models/hot_topic_lists.py.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

import peewee as pw

from models.catalog import Sku
from models.db import BaseModel, db, utcnow
from models.hot_topic_lists import TITLE_MAX, Parsed, clean_title

ERROR_MAX = 300  # characters of an import's error message
BAD_LINES_KEPT = 200  # bad lines reported per import
STORE_BATCH = 500  # topics per INSERT
STALE_RUN_S = 3600  # a run this old whose import is still "running" was abandoned (job timeout: 30 min)


class State(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Source(StrEnum):
    CSV = "csv"
    URL = "url"


class HotTopicImport(BaseModel):
    source = pw.CharField(max_length=8)
    url = pw.CharField(max_length=500, null=True)
    key = pw.CharField(max_length=64, unique=True)  # idempotency: the form's token
    state = pw.CharField(max_length=12, default=State.QUEUED.value, index=True)
    rows = pw.IntegerField(default=0)  # rows read from the file or the feed
    imported = pw.IntegerField(default=0)  # topics stored
    bad = pw.IntegerField(default=0)  # rows refused (bad line, duplicate, over the cap)
    paired = pw.IntegerField(default=0)  # pairs written by the last pairing
    bad_lines = pw.TextField(default="")  # JSON [[line, reason], ...], at most BAD_LINES_KEPT
    error = pw.CharField(max_length=ERROR_MAX, default="")
    operator = pw.CharField(max_length=64, default="")
    created_at = pw.DateTimeField(default=utcnow)
    fetched_at = pw.DateTimeField(null=True)  # the topics are in (a CSV's at once, a URL's after the fetch)
    started_at = pw.DateTimeField(null=True)
    finished_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "hot_topic_import"


class HotTopic(BaseModel):
    import_ = pw.ForeignKeyField(HotTopicImport, column_name="import_id", backref="topics", on_delete="CASCADE")
    title = pw.CharField(max_length=TITLE_MAX)
    heat = pw.BigIntegerField(default=0)
    rank = pw.IntegerField(default=0)
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "hot_topic"
        indexes = ((("import_", "title"), True),)


class HotTopicPair(BaseModel):
    topic = pw.ForeignKeyField(HotTopic, backref="pairs", on_delete="CASCADE")
    sku = pw.ForeignKeyField(Sku, backref="+", on_delete="CASCADE")
    score = pw.IntegerField()  # cosine similarity in basis points (8523 = 0.8523)
    hook = pw.CharField(max_length=200, default="")
    source = pw.CharField(max_length=8)  # model | offline
    embedder = pw.CharField(max_length=80)
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "hot_topic_pair"
        indexes = ((("topic", "sku"), True),)


TABLES: list[type[pw.Model]] = [HotTopicImport, HotTopic, HotTopicPair]


# ---- imports -----------------------------------------------------------------------------------

def create_import(source: Source, *, key: str, operator: str, url: str | None = None) -> HotTopicImport:
    """A queued import. The same `key` twice: the existing row (nothing new)."""
    with db.atomic():
        found = HotTopicImport.get_or_none(HotTopicImport.key == key)
        if found is not None:
            return found
        return HotTopicImport.create(source=source.value, url=url, key=key, operator=operator[:64])


def store(import_id: int, parsed: Parsed) -> int:
    """Store the parsed topics (batches of STORE_BATCH, a topic already stored is skipped) and
    the counts; returns how many were new. Marks the import as fetched."""
    inserted = 0
    now = utcnow()
    with db.atomic():
        for at in range(0, len(parsed.rows), STORE_BATCH):
            chunk = parsed.rows[at:at + STORE_BATCH]
            rows = [{"import_": import_id, "title": r.title, "heat": r.heat, "rank": at + i + 1, "created_at": now}
                    for i, r in enumerate(chunk)]
            before = HotTopic.select().where(HotTopic.import_ == import_id).count()
            HotTopic.insert_many(rows).on_conflict_ignore().execute()
            inserted += HotTopic.select().where(HotTopic.import_ == import_id).count() - before
        HotTopicImport.update(
            rows=parsed.read, imported=HotTopicImport.imported + inserted, bad=len(parsed.bad),
            bad_lines=json.dumps(parsed.bad[:BAD_LINES_KEPT], ensure_ascii=False), fetched_at=now,
        ).where(HotTopicImport.id == import_id).execute()
    return inserted


def claim(import_id: int) -> bool:
    """queued -> running; False when another run has it or it is finished (run once)."""
    with db.atomic():
        return bool(HotTopicImport.update(state=State.RUNNING.value, started_at=utcnow(), error="")
                    .where((HotTopicImport.id == import_id) & (HotTopicImport.state == State.QUEUED.value))
                    .execute())


def requeue(import_id: int, stale_after_s: int = STALE_RUN_S) -> bool:
    """An import whose topics are in, queued again to be paired again (re-pair): one that is
    done or failed, or one still "running" after `stale_after_s` (its worker died)."""
    stale = utcnow() - dt.timedelta(seconds=stale_after_s)
    finished = HotTopicImport.state.in_([State.DONE.value, State.FAILED.value])
    abandoned = (HotTopicImport.state == State.RUNNING.value) & (HotTopicImport.started_at < stale)
    with db.atomic():
        return bool(HotTopicImport.update(state=State.QUEUED.value, finished_at=None)
                    .where((HotTopicImport.id == import_id) & (finished | abandoned)
                           & HotTopicImport.fetched_at.is_null(False))
                    .execute())


def finish(import_id: int, paired: int) -> None:
    with db.atomic():
        HotTopicImport.update(state=State.DONE.value, paired=paired, finished_at=utcnow(), error="").where(
            HotTopicImport.id == import_id).execute()


def fail(import_id: int, message: str) -> None:
    with db.atomic():
        HotTopicImport.update(state=State.FAILED.value, error=clean_title(message)[:ERROR_MAX],
                              finished_at=utcnow()).where(HotTopicImport.id == import_id).execute()


def get_import(import_id: int) -> HotTopicImport | None:
    return HotTopicImport.get_or_none(HotTopicImport.id == import_id)


def recent_imports(limit: int = 50) -> list[HotTopicImport]:
    return list(HotTopicImport.select().order_by(HotTopicImport.id.desc()).limit(limit))


def bad_lines(row: HotTopicImport) -> list[tuple[int, str]]:
    try:
        return [(int(n), str(why)) for n, why in json.loads(row.bad_lines or "[]")]
    except (ValueError, TypeError):
        return []


# ---- pairing storage ---------------------------------------------------------------------------

def topic_batches(import_id: int, batch: int) -> Iterator[list[HotTopic]]:
    """The import's topics in rank order, `batch` at a time (keyset pages: bounded memory)."""
    after = 0
    while True:
        rows = list(HotTopic.select().where((HotTopic.import_ == import_id) & (HotTopic.rank > after))
                    .order_by(HotTopic.rank).limit(batch))
        if not rows:
            return
        yield rows
        after = rows[-1].rank


@dataclass(frozen=True)
class PairRow:
    topic_id: int
    sku_id: int
    score: int
    hook: str
    source: str
    embedder: str


def replace_pairs(topic_ids: list[int], pairs: list[PairRow]) -> int:
    """The topics' pairs become `pairs` (one transaction); returns how many were written."""
    with db.atomic():
        if topic_ids:
            HotTopicPair.delete().where(HotTopicPair.topic.in_(topic_ids)).execute()
        if pairs:
            now = utcnow()
            HotTopicPair.insert_many([
                {"topic": p.topic_id, "sku": p.sku_id, "score": p.score, "hook": p.hook[:200], "source": p.source,
                 "embedder": p.embedder[:80], "created_at": now} for p in pairs]).on_conflict_ignore().execute()
    return len(pairs)


@dataclass(frozen=True)
class CatalogRow:
    sku_id: int
    product_id: int
    code: str
    name: str
    price_fen: int
    title: str
    description: str

    @property
    def text(self) -> str:
        """What is embedded for the product: its line, its name and the start of its description."""
        return clean_title(f"{self.title} {self.name} {self.description[:200]}")


def catalog_rows(limit: int) -> list[CatalogRow]:
    """Active SKUs of active products (at most `limit`), at retail price."""
    from models.catalog import Product

    rows = (Sku.select(Sku.id, Sku.product, Sku.code, Sku.name, Sku.retail_price_fen, Product.title,
                       Product.description)
            .join(Product).where(Sku.active & Product.active).order_by(Sku.id).limit(limit).tuples())
    return [CatalogRow(*row) for row in rows]


def topics_with_pairs(import_id: int, limit: int = 500) -> list[tuple[HotTopic, list[HotTopicPair]]]:
    """The import's topics (rank order, at most `limit`) with their pairs, best first."""
    topics = list(HotTopic.select().where(HotTopic.import_ == import_id).order_by(HotTopic.rank).limit(limit))
    by_topic: dict[int, list[HotTopicPair]] = {t.id: [] for t in topics}
    if topics:
        from models.catalog import Product

        query = (HotTopicPair.select(HotTopicPair, Sku, Product).join(Sku).join(Product)
                 .where(HotTopicPair.topic.in_(list(by_topic))).order_by(HotTopicPair.score.desc()))
        for pair in query:
            by_topic[pair.topic_id].append(pair)
    return [(t, by_topic[t.id]) for t in topics]
