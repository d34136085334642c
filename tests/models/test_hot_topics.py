"""Hot-topic lists: CSV and JSON parsing (bad lines named, BOM, GBK, caps), storing and claiming once."""

from __future__ import annotations

import json

import pytest

from models import hot_topic_lists, hot_topics
from models.errors import InvalidInput
from models.hot_topic_lists import TopicRow
from models.hot_topics import HotTopic, Source

BIG = 1_000_000


@pytest.fixture
def topics_db(conn):  # noqa: ANN001, ANN201
    yield


def test_csv_with_header_bom_and_heat():
    # given a UTF-8 CSV with a BOM, a header, heat figures in several forms and a blank line
    data = "\ufefftitle,heat\n周末宅家追剧,98000\n打工人续命咖啡,12.5万\n\n王者荣耀新赛季,\n".encode()
    # when parsed
    parsed = hot_topic_lists.parse_csv(data, max_rows=100, max_bytes=BIG)
    # then every topic is read with its heat, the header and the blank line skipped
    assert parsed.rows == [TopicRow("周末宅家追剧", 98000), TopicRow("打工人续命咖啡", 125000),
                           TopicRow("王者荣耀新赛季", 0)]
    assert parsed.bad == []


def test_csv_without_header_in_gbk():
    # given a GBK file without a header (Excel on a Chinese Windows)
    data = "高考成绩公布\n台风登陆浙江,3亿\n".encode("gbk")
    # when parsed / then both topics are read
    parsed = hot_topic_lists.parse_csv(data, max_rows=100, max_bytes=BIG)
    assert [r.title for r in parsed.rows] == ["高考成绩公布", "台风登陆浙江"]
    assert parsed.rows[1].heat == 300_000_000


def test_csv_bad_lines_are_named_and_skipped():
    # given good lines among bad ones: a heat that is not a number, an empty title, a title too
    # long, a duplicate, too many columns, control characters in a title
    long = "长" * (hot_topic_lists.TITLE_MAX + 1)
    data = (f"追剧,很多\n,5\n{long}\n咖啡\n咖啡,3\n新歌,1,2\n周杰伦\x07新歌,10\n").encode()
    # when parsed
    parsed = hot_topic_lists.parse_csv(data, max_rows=100, max_bytes=BIG)
    # then the good lines are kept (the control character cleaned) and each bad one is named
    assert [r.title for r in parsed.rows] == ["咖啡", "周杰伦 新歌"]
    reasons = dict(parsed.bad)
    assert set(reasons) == {1, 2, 3, 5, 6}
    assert "热度不是数字" in reasons[1] and "标题为空" in reasons[2] and "超过" in reasons[3]
    assert "重复" in reasons[5] and "列数" in reasons[6]


@pytest.mark.parametrize(("value", "heat"), [
    ("12", 12), ("1,234", 1234), ("1.5w", 15000), ("3亿", 300_000_000), ("", 0), (7.9, 7),
    ("-5", None), ("abc", None), ("99999999999亿", None), (float("nan"), None), (True, None), (-1, None),
])
def test_heat_figures(value, heat):
    assert hot_topic_lists.parse_heat(value) == heat


def test_csv_row_cap_keeps_the_first_rows():
    # given more rows than the cap
    data = "\n".join(f"话题{i}" for i in range(1, 8)).encode()
    # when parsed with a cap of 5
    parsed = hot_topic_lists.parse_csv(data, max_rows=5, max_bytes=BIG)
    # then the first 5 are kept and the rest are reported by line
    assert [r.title for r in parsed.rows] == [f"话题{i}" for i in range(1, 6)]
    assert [n for n, _ in parsed.bad] == [6, 7]


@pytest.mark.parametrize(("data", "code"), [
    (b"", "no_topics"),
    (b"title\n\n", "no_topics"),
    (b",1\n,2\n", "no_topics"),
    (b"\x00\x01\x02binary", "not_csv"),
    (bytes([0xff, 0xfe, 0xfd, 0x81]), "bad_encoding"),
    ("话题\n".encode() * 100, "too_large"),
])
def test_csv_that_cannot_be_imported(data, code):
    # given an empty, header-only, all-bad, binary, undecodable or too large file
    # when parsed / then a clear error, nothing returned
    with pytest.raises(InvalidInput) as caught:
        hot_topic_lists.parse_csv(data, max_rows=100, max_bytes=200)
    assert caught.value.code == code
    assert caught.value.message


def test_all_bad_csv_names_the_first_lines():
    with pytest.raises(InvalidInput) as caught:
        hot_topic_lists.parse_csv(b"a,x\nb,y\n", max_rows=10, max_bytes=BIG)
    assert "第 1 行" in caught.value.message and "热度不是数字" in caught.value.message


@pytest.mark.parametrize("doc", [
    ["追剧", "新歌"],
    [{"title": "追剧", "heat": 5}, {"word": "新歌", "hot_value": "1.2万"}],
    {"data": [{"name": "追剧"}, {"keyword": "新歌"}]},
    {"code": 0, "data": {"realtime": [{"desc": "追剧"}, {"query": "新歌"}]}},
])
def test_json_shapes_are_read_liberally(doc):
    # given a feed in one of the shapes hot-search APIs use
    # when parsed
    parsed = hot_topic_lists.parse_json(json.dumps(doc, ensure_ascii=False).encode(), max_rows=10)
    # then both topics are found
    assert [r.title for r in parsed.rows] == ["追剧", "新歌"]


def test_json_bad_items_and_cap():
    # given a list with a number, a nested list, an object without a title, a bool, and more
    # good items than the cap
    doc = [123, ["x"], {"heat": 1}, True, "a", "b", "c"]
    # when parsed with a cap of 2
    parsed = hot_topic_lists.parse_json(json.dumps(doc).encode(), max_rows=2)
    # then the number counts as a title, the bad items are named by position, the cap is reported
    assert [r.title for r in parsed.rows] == ["123", "a"]
    assert [n for n, _ in parsed.bad] == [2, 3, 4, 6, 7]


@pytest.mark.parametrize(("body", "code"), [
    (b"<html>", "not_json"), (b'{"msg": "ok"}', "no_list"), (b"[]", "no_topics"), (b"\xff\xfe", "not_json"),
])
def test_json_that_holds_no_topics(body, code):
    with pytest.raises(InvalidInput) as caught:
        hot_topic_lists.parse_json(body, max_rows=10)
    assert caught.value.code == code


def test_store_twice_inserts_once(topics_db):
    # given an import and its parsed topics
    row = hot_topics.create_import(Source.CSV, key="k" * 20, operator="ops")
    parsed = hot_topic_lists.parse_csv("追剧,5\n新歌,3\n".encode(), max_rows=10, max_bytes=BIG)
    # when stored twice, and the import created again with the same key
    assert hot_topics.store(row.id, parsed) == 2
    assert hot_topics.store(row.id, parsed) == 0
    again = hot_topics.create_import(Source.CSV, key="k" * 20, operator="ops")
    # then the topics are there once, ranked in file order, and the import is the same row
    assert again.id == row.id
    assert [(t.title, t.rank, t.heat) for t in HotTopic.select().order_by(HotTopic.rank)] == [
        ("追剧", 1, 5), ("新歌", 2, 3)]


def test_claim_runs_an_import_once(topics_db):
    # given a queued import
    row = hot_topics.create_import(Source.URL, key="c" * 20, operator="ops", url="http://127.0.0.1:9/x")
    # when claimed twice / then only the first claim wins
    assert hot_topics.claim(row.id) is True
    assert hot_topics.claim(row.id) is False
    # and a failed import whose topics never came in cannot be re-paired
    hot_topics.fail(row.id, "服务器返回 HTTP 500")
    assert hot_topics.requeue(row.id) is False
    assert hot_topics.get_import(row.id).error == "服务器返回 HTTP 500"


def test_an_abandoned_run_may_be_re_paired(topics_db):
    # given a CSV import whose worker died while pairing it
    row = hot_topics.create_import(Source.CSV, key="s" * 20, operator="ops")
    hot_topics.store(row.id, hot_topic_lists.parse_csv("追剧\n".encode(), max_rows=10, max_bytes=BIG))
    assert hot_topics.claim(row.id) is True
    # when re-paired while it may still be running / after the stale bound
    # then only the second is allowed
    assert hot_topics.requeue(row.id) is False
    assert hot_topics.requeue(row.id, stale_after_s=-1) is True
    assert hot_topics.claim(row.id) is True
