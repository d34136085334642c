"""Hot-topic jobs (RQ, issue 16): fetch a URL's topics, store them, pair them with products.

- `queue_url(url, key=, operator=)`: checks the URL (http or https, a host, at most 500
  characters), makes the queued import (its `key` unique: the same form twice is one import)
  and enqueues `run_import`.
- `queue_csv(data, key=, operator=)`: parses the upload at once (a bad file is the caller's
  InvalidInput, nothing stored), stores the topics and enqueues `run_import` to pair them.
- `queue_repair(import_id)`: a finished import queued again; its topics are paired again.
- `run_import(import_id)`, the job: claims the import (queued -> running, one UPDATE: a job
  that runs twice does nothing the second time), fetches the URL if its topics are not in yet,
  pairs every topic in batches, and ends done or failed with a message for the operator. No
  exception escapes: a failed fetch is a failed import, not a failed job.

The fetch: `requests` with a connect and a read timeout (HOT_TOPIC_FETCH_TIMEOUT_S) and the
same bound on the whole transfer (checked after each read of what has arrived, so a server that
drips bytes is cut off too), streamed and cut at HOT_TOPIC_MAX_BYTES, http/https only, at most
3 redirects, no proxy from the environment.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from redis.exceptions import RedisError

from content_ai.hot_topics import Pairer, write_hook
from models import hot_topic_lists, hot_topics
from models.db import connection
from models.errors import InvalidInput
from models.hot_topics import PairRow, Source, State
from tasks.context import runtime

log = logging.getLogger(__name__)

JOB = "tasks.hot_topics.run_import"
PAIR_BATCH = 32  # topics ranked and written per transaction
MAX_PRODUCTS = 5000  # active SKUs compared (the catalog is embedded once per run)
URL_MAX = 500
CHUNK = 16 * 1024


class FetchError(Exception):
    """The feed could not be read; the message is for the operator."""


def check_url(url: str) -> str:
    url = (url or "").strip()
    if not url:
        raise InvalidInput("请填写网址", code="no_url")
    if len(url) > URL_MAX:
        raise InvalidInput(f"网址超过 {URL_MAX} 个字符", code="bad_url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("网址必须以 http:// 或 https:// 开头", code="bad_url")
    return url


def _enqueue(import_id: int) -> None:
    """Queue the job; if Redis refuses, the import is failed with a message (a CSV import may
    then be re-paired, a URL one submitted again)."""
    try:
        runtime().queue.enqueue(JOB, import_id, job_id=f"hot-topics-{import_id}-{time.time_ns()}",
                                job_timeout=1800)
    except RedisError as exc:
        log.error("hot topics: could not queue import %s (%s)", import_id, type(exc).__name__)
        hot_topics.fail(import_id, "任务队列暂时不可用，请稍后重试")


def queue_url(url: str, *, key: str, operator: str) -> int:
    """(In the caller's connection, outside a transaction: the rows commit before the job is queued.)"""
    url = check_url(url)
    row = hot_topics.create_import(Source.URL, key=key, operator=operator, url=url)
    if row.state == State.QUEUED.value:
        _enqueue(row.id)
    return row.id


def queue_csv(data: bytes, *, key: str, operator: str) -> tuple[int, hot_topic_lists.Parsed]:
    s = runtime().settings
    parsed = hot_topic_lists.parse_csv(data, max_rows=s.HOT_TOPIC_MAX_ROWS, max_bytes=s.HOT_TOPIC_MAX_BYTES)
    row = hot_topics.create_import(Source.CSV, key=key, operator=operator)
    if row.fetched_at is None:
        hot_topics.store(row.id, parsed)
    if row.state == State.QUEUED.value:
        _enqueue(row.id)
    return row.id, parsed


def queue_repair(import_id: int) -> bool:
    again = hot_topics.requeue(import_id)
    if again:
        _enqueue(import_id)
    return again


# ---- the job ------------------------------------------------------------------------------------

def run_import(import_id: int) -> dict[str, Any]:
    """The job. Never raises: what went wrong is on the import row."""
    try:
        with connection():
            if not hot_topics.claim(import_id):
                return {"import": import_id, "skipped": True}
            row = hot_topics.get_import(import_id)
            assert row is not None
        if row.fetched_at is None:
            s = runtime().settings
            body = fetch(row.url or "", timeout_s=s.HOT_TOPIC_FETCH_TIMEOUT_S, max_bytes=s.HOT_TOPIC_MAX_BYTES)
            parsed = hot_topic_lists.parse_json(body, max_rows=s.HOT_TOPIC_MAX_ROWS)
            with connection():
                hot_topics.store(import_id, parsed)
        paired = pair_import(import_id)
        with connection():
            hot_topics.finish(import_id, paired)
        return {"import": import_id, "paired": paired}
    except (FetchError, InvalidInput) as exc:
        message = exc.message if isinstance(exc, InvalidInput) else str(exc)
    except Exception as exc:  # a bug or an outage: the row says so, the worker goes on
        log.exception("hot topics: import %s failed", import_id)
        message = f"内部错误（{type(exc).__name__}），请稍后重试"
    try:
        with connection():
            hot_topics.fail(import_id, message)
    except Exception:
        log.exception("hot topics: could not mark import %s failed", import_id)
    return {"import": import_id, "failed": message}


def fetch(url: str, *, timeout_s: float, max_bytes: int) -> bytes:
    """The body of a GET to `url`, at most `max_bytes`; FetchError with a message otherwise."""
    url = check_url(url)
    deadline = time.monotonic() + timeout_s
    session = requests.Session()
    session.max_redirects = 3
    session.trust_env = False  # no proxy from the environment: the operator's URL is fetched as given
    try:
        with session.get(url, timeout=(timeout_s, timeout_s), stream=True,
                         headers={"Accept": "application/json"}) as res:
            if urlsplit(res.url).scheme not in ("http", "https"):
                raise FetchError("重定向到了不支持的网址")
            if res.status_code != 200:
                raise FetchError(f"服务器返回 HTTP {res.status_code}")
            declared = res.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"内容超过 {max_bytes // 1024} KB 上限")
            body = bytearray()
            while True:  # read1: what has arrived, so a server that drips bytes meets the deadline
                chunk = res.raw.read1(CHUNK, decode_content=True)
                if not chunk:
                    break
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise FetchError(f"内容超过 {max_bytes // 1024} KB 上限")
                if time.monotonic() > deadline:
                    raise FetchError(f"读取超时（{timeout_s:g} 秒）")
            return bytes(body)
    except requests.Timeout:
        raise FetchError(f"连接或读取超时（{timeout_s:g} 秒）") from None
    except requests.TooManyRedirects:
        raise FetchError("重定向次数过多") from None
    except requests.RequestException as exc:
        raise FetchError(f"无法访问网址（{type(exc).__name__}）") from None
    finally:
        session.close()


def pair_import(import_id: int) -> int:
    """Pair every topic of the import with products (batches of PAIR_BATCH topics, each batch's
    pairs replacing the old ones in one transaction); returns the pairs written."""
    rt = runtime()
    s = rt.settings
    with connection():
        products = hot_topics.catalog_rows(MAX_PRODUCTS)
    pairer = Pairer(rt.ai, products, per_topic=s.HOT_TOPIC_PAIRS_PER_TOPIC,
                    offline_min_bp=s.HOT_TOPIC_MIN_SCORE_BP, model_min_bp=s.HOT_TOPIC_MODEL_MIN_SCORE_BP)
    written = 0
    with connection():
        batches = list(_batch_ids(import_id))
    for ids in batches:
        with connection():
            topics = list(hot_topics.HotTopic.select().where(hot_topics.HotTopic.id.in_(ids))
                          .order_by(hot_topics.HotTopic.rank))
        ranked = pairer.rank([t.title for t in topics])
        rows: list[PairRow] = []
        with connection():  # moderation may read its word lists and log its decisions
            for topic, matches in zip(topics, ranked, strict=True):
                for match in matches:
                    hook = write_hook(rt.ai, topic.title, match.product, settings=s)
                    rows.append(PairRow(topic.id, match.product.sku_id, match.score_bp, hook.text, hook.source,
                                        pairer.embedder))
            written += hot_topics.replace_pairs([t.id for t in topics], rows)
    return written


def _batch_ids(import_id: int) -> Any:
    """The topic ids in batches (ids only are held for the whole run: bounded memory)."""
    for batch in hot_topics.topic_batches(import_id, PAIR_BATCH):
        yield [t.id for t in batch]
