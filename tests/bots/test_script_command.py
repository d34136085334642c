"""/script (文案) and /style (风格) through the conversation core: the structured 30 s script as the
chat text, the other variants and the SRT by buttons or commands, the remembered style, polite
answers to bad input, and a model answer that invents a price never reaching the chat."""

from __future__ import annotations

import re

import pytest

from bots.commands.registry import KEYWORDS
from models import scripts
from models.db import db
from qianxing import wiring
from tests.bots.conftest import join, press, say, text_of
from tests.factories import described_sku, online_ai, script_json

SRT_CUE = re.compile(r"^\d+\n\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d\n", re.M)


@pytest.fixture
def ann(rt, shop):  # noqa: ANN001, ANN201
    described_sku(shop)
    return join("ann")


def test_a_creator_gets_the_30s_script_kept_with_buttons(ann):
    # when Ann asks for a script for a SKU and a topic
    replies = say("/script VIP-M 夏日追剧")
    body = text_of(replies)
    # then the 30 s variant: labeled, every part with its seconds, the catalog price, her link
    assert body.startswith("【广告】夏日追剧·视频会员月卡（30秒版）")
    for part in ("【0-3秒 开场钩子】", "【3-8秒 痛点】", "【8-20秒 卖点】", "【20-25秒 信任背书】",
                 "【25-30秒 行动号召】"):
        assert part in body
    assert "¥19.90" in body and f"ref={ann.code}" in body and "配乐：#" in body
    # and it is kept as her draft, numbered in the reply
    with db.connection_context():
        (row,) = scripts.list_for(ann)
    assert f"#{row.id}" in body and row.state == "draft"
    # when she presses the 15 s button / then the 15 s variant of the same script
    fifteen = text_of(press(replies, "15秒版"))
    assert "（15秒版）" in fifteen and "【12-15秒 行动号召】" in fifteen
    # and the subtitles button gives the SRT of the variant shown
    srt = text_of(press(replies, "字幕"))
    assert "SRT，30秒版" in srt and len(SRT_CUE.findall(srt)) >= 5 and "00:00:30,000" in srt
    # and the typed forms give the same
    assert "（60秒版）" in text_of(say(f"文案 60 #{row.id}"))
    assert "00:00:15,000" in text_of(say(f"/script 字幕 15 #{row.id}"))


def test_anyone_gets_a_script_without_keeping_it(ann):
    # a shopper (no creator) and a script without a product
    body = text_of(say("/script 60 VIP-M", who="li", name="小李"))
    assert body.startswith("【广告】") and "（60秒版）" in body and "小李" in body
    assert "/script 15 VIP-M" in body
    plain = text_of(say("文案 好物分享", who="li", name="小李"))
    assert plain.startswith("【广告】好物分享") and "¥" not in plain
    with db.connection_context():
        assert scripts.ContentScript.select().count() == 0


@pytest.mark.parametrize("typed, expected", [
    ("/script 45 VIP-M", "时长只能是 15、30 或 60 秒"),
    ("/script VIP-M " + "很长的主题" * 10, "主题太长了"),
    ("/script 字幕", "请发送：/script 字幕 #编号"),
    ("/script 字幕 #999", "没有找到这个文案"),
])
def test_bad_input_gets_a_polite_reply(ann, typed, expected):
    assert expected in text_of(say(typed))


def test_someone_elses_script_is_not_found(ann):
    say("/script VIP-M")
    with db.connection_context():
        (row,) = scripts.list_for(ann)
    join("ben")
    assert "没有找到这个文案" in text_of(say(f"/script 15 #{row.id}", who="ben"))
    assert "没有找到这个文案" in text_of(say(f"/script 字幕 #{row.id}", who="li"))


def test_style_is_set_once_and_used(ann):
    # before: none set
    assert "还没有设置文案风格" in text_of(say("/style"))
    # when Ann sets a style (keyword form) / then it is remembered and shown
    assert "文案风格已设为「搞笑」" in text_of(say("风格 搞笑"))
    assert "「搞笑」" in text_of(say("/style"))
    # and her next script is in that style
    assert "#搞笑音效" in text_of(say("/script VIP-M"))
    # bad input is refused politely and changes nothing
    assert "风格最多 20 个字" in text_of(say("/style " + "风" * 21))
    with db.connection_context():
        assert scripts.style_of(ann) == "搞笑"
    # a blank style clears it
    assert "文案风格已清除" in text_of(say("/style \u200b"))
    # and a shopper is asked to join first
    assert "/join" in text_of(say("/style 亲切", who="li"))


def test_the_keyword_talk_track_is_no_longer_a_script():
    assert KEYWORDS.get("文案") == "script" and KEYWORDS.get("风格") == "style"
    assert KEYWORDS.get("话术") != "script"


def test_a_model_that_invents_a_price_never_reaches_the_chat(ann, rt, fake_openai, monkeypatch):
    # given the runtime's model answers a script quoting a price the catalog does not have
    fake_openai.reset()
    monkeypatch.setattr(wiring.runtime(), "ai", online_ai(rt, fake_openai))
    fake_openai.answer(script_json(price="¥9.90"))
    try:
        # when Ann asks / then the offline script with the catalog's price
        body = text_of(say("/script VIP-M 夏日"))
        assert len(fake_openai.chat_calls) == 1
        assert "¥19.90" in body and not re.search(r"(?<![\d.])9\.90", body)
        # and a grounded answer is used
        fake_openai.answer(script_json(price="¥19.90"))
        assert "夏日追剧必备" in text_of(say("/script VIP-M 追剧"))
    finally:
        fake_openai.reset()
