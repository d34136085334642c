"""The creator's script routes through the real HTTP API with the creator's bearer: generate (all
three variants, tags, id), list, one, subtitles as an SRT download, submit for review, the style;
bad input as 4xx JSON errors; another creator's script is a 404."""

from __future__ import annotations

import re

import pytest

from tests.factories import described_sku, online_ai, script_json
from tests.miniapp_api.asserts import assert_error

C = "/api/v1/creator"
SRT_CUE = re.compile(r"^\d+\n\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d\n", re.M)


@pytest.fixture
def ann(client, login, shop):  # noqa: ANN001, ANN201
    """Ann, a creator, and the VIP-M SKU; her auth headers."""
    described_sku(shop)
    auth = login("ann")
    assert client.post(f"{C}/join", json={"name": "Ann"}, headers=auth).status_code == 200
    return auth


def make(client, auth, **body) -> dict:  # noqa: ANN001, ANN003
    resp = client.post(f"{C}/scripts", json={"sku": "VIP-M", **body}, headers=auth)
    assert resp.status_code == 201, resp.json
    return resp.json


def test_generate_list_get_and_download(client, ann):
    # when Ann asks for a script
    made = make(client, ann, topic="夏日追剧")
    # then all three variants with subtitles, tags, the 【广告】 label and the catalog price, as a draft
    assert made["state"] == "draft" and made["source"] == "offline" and made["label"] == "【广告】"
    assert [v["duration"] for v in made["variants"]] == [15, 30, 60]
    assert all(v["subtitles"] and v["hook"] and v["selling_points"] for v in made["variants"])
    assert made["price_fen"] == 1990 and made["sku"] == "VIP-M" and made["music"] and made["cover"]
    assert made["submitted_at"] is None and made["reviewed_at"] is None
    # and it is listed and readable
    assert client.get(f"{C}/scripts/{made['id']}", headers=ann).json == made
    listed = client.get(f"{C}/scripts", headers=ann).json
    assert listed == {"scripts": [made], "next_before_id": None}
    # and the 15 s subtitles download as a named SRT file
    resp = client.get(f"{C}/scripts/{made['id']}/subtitles.srt?duration=15", headers=ann)
    assert resp.status_code == 200 and resp.mimetype == "application/x-subrip"
    assert f'filename="script-{made["id"]}-15s.srt"' in resp.headers["Content-Disposition"]
    body = resp.data.decode()
    assert body.startswith("1\n00:00:00,000 --> ") and "【广告】" in body and "00:00:15,000" in body
    assert len(SRT_CUE.findall(body)) == len(made["variants"][0]["subtitles"])
    # and 30 s by default
    assert "00:00:30,000" in client.get(f"{C}/scripts/{made['id']}/subtitles.srt", headers=ann).data.decode()


def test_paging(client, ann):
    ids = [make(client, ann, topic=f"主题{i}")["id"] for i in range(3)]
    first = client.get(f"{C}/scripts?limit=2", headers=ann).json
    assert [s["id"] for s in first["scripts"]] == ids[::-1][:2] and first["next_before_id"] == ids[1]
    rest = client.get(f"{C}/scripts?limit=2&before_id={first['next_before_id']}", headers=ann).json
    assert [s["id"] for s in rest["scripts"]] == [ids[0]] and rest["next_before_id"] is None


def test_style_is_set_and_used(client, ann):
    resp = client.put(f"{C}/style", json={"style": "搞笑"}, headers=ann)
    assert resp.status_code == 200 and resp.json == {"style": "搞笑"}
    made = make(client, ann)
    assert made["style"] == "搞笑" and "搞笑音效" in made["music"]
    # a style given with the request wins for that script
    assert make(client, ann, style="专业")["style"] == "专业"
    assert_error(client.put(f"{C}/style", json={"style": "风" * 21}, headers=ann), 400, "invalid_request")
    # a blank style (controls only) clears it
    cleared = client.put(f"{C}/style", json={"style": " \x01 "}, headers=ann)
    assert cleared.status_code == 200 and cleared.json == {"style": ""}
    assert make(client, ann)["style"] == ""


def test_submit_puts_it_in_the_review_queue_once(client, ann):
    made = make(client, ann)
    resp = client.post(f"{C}/scripts/{made['id']}/submit", headers=ann)
    assert resp.status_code == 200 and resp.json["state"] == "submitted" and resp.json["submitted_at"]
    assert_error(client.post(f"{C}/scripts/{made['id']}/submit", headers=ann), 409, "script_not_draft")


@pytest.mark.parametrize("body, status, code", [
    ({"sku": "NOPE"}, 404, "unknown_sku"),
    ({"sku": "VIP-M", "topic": "话题" * 30}, 400, "invalid_request"),
    ({"sku": "VIP-M", "topic": "a\x00b"}, 400, "invalid_request"),
    ({"sku": "VIP-M", "extra": 1}, 400, "invalid_request"),
    ({"topic": "夏日"}, 400, "invalid_request"),
    ({"sku": "VIP-M", "style": "风" * 21}, 400, "invalid_request"),
])
def test_bad_requests_are_4xx_json(client, ann, body, status, code):
    assert_error(client.post(f"{C}/scripts", json=body, headers=ann), status, code)


def test_bad_duration_and_other_peoples_scripts(client, ann, login):
    made = make(client, ann)
    for bad in ("45", "abc", "-15", "99999999999999999999"):
        assert_error(client.get(f"{C}/scripts/{made['id']}/subtitles.srt?duration={bad}", headers=ann), 400,
                     "invalid_request")
    # Ben, another creator, cannot see, download or submit Ann's script
    ben = login("ben")
    client.post(f"{C}/join", json={"name": "Ben"}, headers=ben)
    for resp in (client.get(f"{C}/scripts/{made['id']}", headers=ben),
                 client.get(f"{C}/scripts/{made['id']}/subtitles.srt", headers=ben),
                 client.post(f"{C}/scripts/{made['id']}/submit", headers=ben)):
        assert_error(resp, 404, "script_not_found")
    assert client.get(f"{C}/scripts", headers=ben).json["scripts"] == []
    assert_error(client.get(f"{C}/scripts/999999", headers=ann), 404, "script_not_found")
    # a shopper who never joined, and nobody at all
    assert_error(client.get(f"{C}/scripts", headers=login("cat")), 404, "not_a_creator")
    assert client.post(f"{C}/scripts", json={"sku": "VIP-M"}).status_code == 401


def test_with_a_model_the_guarded_answer_is_served(client, ann, rt, app, fake_openai, monkeypatch):
    # given the app's runtime with a model on the fake server
    fake_openai.reset()
    monkeypatch.setattr(rt, "ai", online_ai(rt, fake_openai))
    try:
        fake_openai.answer(script_json(price="¥19.90"))
        good = make(client, ann, topic="夏日")
        assert good["source"] == "model" and good["title"] == "夏日追剧必备"
        # an invented price: the offline script, with the catalog's price
        fake_openai.answer(script_json(price="¥1.00"))
        bad = make(client, ann, topic="追剧")
        assert bad["source"] == "offline" and "1.00" not in str(bad["variants"])
    finally:
        fake_openai.reset()
