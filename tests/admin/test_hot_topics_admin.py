"""The hot-topics admin: a CSV upload and a URL import (queued, run by the worker), the topics
with their products, scores and hooks, re-pair, bad files and URLs as messages on the form,
the form sent twice, role refusals, every action audited."""

from __future__ import annotations

import io

import pytest

from models.audit import AuditEntry
from models.db import db
from models.hot_topics import HotTopic, HotTopicImport
from tests.factories import TopicFeed, topic_catalog

PAGE = "/admin/content/hot-topics/"
CSV = "title,heat\n周末宅家追剧,98000\n王者荣耀新赛季,5000\n追剧,很多\n".encode()


@pytest.fixture
def topics(rt):  # noqa: ANN001, ANN201
    made = topic_catalog()
    yield made


def upload(who, data: bytes, name: str = "topics.csv", page: str = PAGE, **extra):  # noqa: ANN001, ANN003, ANN201
    return who.post(PAGE + "upload", {"file": (io.BytesIO(data), name), **extra}, page=page,
                    content_type="multipart/form-data")


def imports() -> list[HotTopicImport]:
    with db.connection_context():
        return list(HotTopicImport.select().order_by(HotTopicImport.id))


def audits(action: str) -> list[AuditEntry]:
    with db.connection_context():
        return list(AuditEntry.select().where(AuditEntry.action == action))


def test_csv_upload_pairs_and_shows_the_suggestions(admin, topics, run_jobs):
    # given an ops operator on the page
    ops = admin("ops")
    assert ops.get(PAGE).status_code == 200
    # when they upload a CSV with two topics and a bad line
    answer = upload(ops, CSV, reason="本周热点")
    # then the import is stored and queued, and they land on its page
    assert answer.status_code == 302
    (row,) = imports()
    assert answer.headers["Location"].endswith(f"{PAGE}{row.id}")
    assert (row.source, row.state, row.imported, row.bad, row.operator) == ("csv", "queued", 2, 1, ops.op.name)
    # and the action is audited with its counts
    (entry,) = audits("hot_topics.import_csv")
    assert entry.after["topics"] == 2 and entry.after["bad"] == 1 and entry.reason == "本周热点"
    # when the worker pairs it
    run_jobs()
    # then the page shows each topic with its product, score and hook, and the bad line
    body = ops.get(f"{PAGE}{row.id}").get_data(as_text=True)
    assert 'data-state="done"' in body
    assert 'data-topic="周末宅家追剧" data-sku="VIP-VIDEO"' in body
    assert 'data-topic="王者荣耀新赛季" data-sku="GAME"' in body
    assert "¥19.90" in body and "¥30.00" in body  # the hooks, with the real prices
    assert "热度不是数字" in body
    # and the list shows the import done
    assert f'data-import="{row.id}" data-state="done"' in ops.get(PAGE).get_data(as_text=True)


def test_url_import_is_queued_then_fetched(admin, topics, run_jobs, rt):
    ops = admin("ops")
    with TopicFeed() as feed:
        # when an operator gives a feed URL
        answer = ops.post(PAGE + "url", {"url": feed.url("/ok")}, page=PAGE)
        # then an import is queued (nothing fetched yet) and audited
        assert answer.status_code == 302
        (row,) = imports()
        assert (row.source, row.state, row.url) == ("url", "queued", feed.url("/ok"))
        assert rt.queue.count == 1 and feed.hits == {}
        assert audits("hot_topics.import_url")[0].after["url"] == feed.url("/ok")
        # when the worker runs
        run_jobs()
    # then its topics and pairs are on the page
    body = ops.get(f"{PAGE}{row.id}").get_data(as_text=True)
    assert 'data-state="done"' in body and 'data-topic="打工人续命咖啡" data-sku="COFFEE"' in body


def test_a_failing_feed_shows_its_reason(admin, topics, run_jobs, rt, monkeypatch):
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update={"HOT_TOPIC_FETCH_TIMEOUT_S": 1.0}))
    ops = admin("ops")
    with TopicFeed() as feed:
        ops.post(PAGE + "url", {"url": feed.url("/500")}, page=PAGE)
        run_jobs()
    (row,) = imports()
    body = ops.get(f"{PAGE}{row.id}").get_data(as_text=True)
    assert 'data-state="failed"' in body and "服务器返回 HTTP 500" in body
    assert "服务器返回 HTTP 500" in ops.get(PAGE).get_data(as_text=True)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "文件是空的"),
    (b",1\n,2\n", "第 1 行：标题为空"),
    (bytes([0xff, 0xfe, 0xfd, 0x81]), "文件编码无法识别"),
    (b"a,b,c\n", "列数过多"),
])
def test_a_bad_csv_is_a_message_on_the_form(admin, topics, data, message):
    ops = admin("ops")
    # when an unusable file is uploaded
    answer = upload(ops, data)
    # then the form comes back with the message, and nothing is stored or audited
    assert answer.status_code == 400
    assert message in answer.get_data(as_text=True)
    assert 'id="hot-topics-upload"' in answer.get_data(as_text=True)
    assert imports() == [] and audits("hot_topics.import_csv") == []


@pytest.mark.parametrize("url", ["ftp://example.com/x.json", "javascript:alert(1)", "", "http://" + "x" * 600])
def test_a_bad_url_is_a_message_on_the_form(admin, topics, url, rt):
    ops = admin("ops")
    answer = ops.post(PAGE + "url", {"url": url}, page=PAGE)
    assert answer.status_code == 400
    body = answer.get_data(as_text=True)
    assert "网址" in body and 'id="hot-topics-url"' in body
    assert imports() == [] and rt.queue.count == 0


def test_the_same_form_sent_twice_is_one_import(admin, topics, rt):
    ops = admin("ops")
    token = "hot-topics-form-token-000001"
    first = upload(ops, CSV, action_token=token)
    second = upload(ops, CSV, action_token=token)
    assert first.status_code == 302 and second.status_code == 302
    assert len(imports()) == 1 and rt.queue.count == 1
    with db.connection_context():
        assert HotTopic.select().count() == 2


def test_repair_queues_the_import_again(admin, topics, run_jobs, rt):
    # given a paired import
    ops = admin("ops")
    upload(ops, CSV)
    run_jobs()
    (row,) = imports()
    page = f"{PAGE}{row.id}"
    assert 'id="repair"' in ops.get(page).get_data(as_text=True)
    # when re-paired
    answer = ops.post(f"{page}/repair", {"reason": "新品上架"}, page=page)
    # then it is queued again, audited, and done again after the worker runs
    assert answer.status_code == 302
    assert imports()[0].state == "queued" and rt.queue.count == 1
    assert audits("hot_topics.repair")[0].after == {"queued": True}
    run_jobs()
    assert imports()[0].state == "done"
    # and re-pairing a queued import is refused politely
    with db.connection_context():
        HotTopicImport.update(state="queued").execute()
    ops.post(f"{page}/repair", {}, page=page)
    assert "不能重新配对" in ops.get(page).get_data(as_text=True)
    assert ops.post(f"{PAGE}999/repair", {}, page=page).status_code == 404


@pytest.mark.parametrize("role", ["finance", "readonly", "support"])
def test_roles_without_content_manage_are_refused(admin, topics, role, rt):
    who = admin(role)
    # readers see the page without the forms; support does not see it at all
    page = who.get(PAGE)
    if role == "support":
        assert page.status_code == 403
    else:
        assert page.status_code == 200 and 'id="hot-topics-upload"' not in page.get_data(as_text=True)
    # and every action is refused, nothing stored
    assert upload(who, CSV, page="/admin/").status_code == 403
    assert who.post(PAGE + "url", {"url": "http://127.0.0.1:9/x"}, page="/admin/").status_code == 403
    assert who.post(PAGE + "1/repair", {}, page="/admin/").status_code == 403
    assert imports() == [] and rt.queue.count == 0


def test_english(admin, topics):
    ops = admin("ops")
    ops.post("/admin/lang", {"lang": "en", "next": "/admin/"}, action=False)
    body = ops.get(PAGE).get_data(as_text=True)
    assert "Hot topics" in body and "Upload CSV" in body
