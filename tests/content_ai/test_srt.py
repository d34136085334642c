"""Subtitle timing and SRT (content_ai/srt.py): lines cut at punctuation and never inside a
number, cues that tile each part's slot, and a proper SRT file."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from content_ai import srt

CUE = re.compile(r"^(\d+)\n(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n(.+)$", re.S)
PARTS = {"hook": "家人们，今天给大家挖到宝了！", "pain_point": "想追的剧总要会员，片头广告又长又多？",
         "selling_points": ["海量热门剧集抢先看", "蓝光画质，手机、平板、电视多端通用"],
         "proof": "我自己一直在用。", "call_to_action": "「视频会员月卡」到手价¥19.90，点我主页链接就能下单。"}


def ms(stamp: str) -> int:
    h, m, rest = stamp.split(":")
    s, milli = rest.split(",")
    return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(milli)


@pytest.mark.parametrize("value, expected", [(0, "00:00:00,000"), (3000, "00:00:03,000"), (61_005, "00:01:01,005"),
                                             (3_723_456, "01:02:03,456"), (-5, "00:00:00,000")])
def test_timestamps(value, expected):
    assert srt.timestamp(value) == expected


def test_lines_break_at_punctuation_and_keep_numbers_whole():
    lines = srt.split_lines("「视频会员月卡」到手价¥19.90，点我主页链接就能下单。")
    assert all(len(line) <= srt.LINE_MAX for line in lines)
    assert any("¥19.90" in line for line in lines)  # not "¥19." and "90"
    assert srt.split_lines("") == [] and srt.split_lines("   ") == []
    assert srt.split_lines("ok fine") == ["ok fine"]


@given(st.text(max_size=300))
def test_lines_never_exceed_the_width_and_lose_no_text(text):
    lines = srt.split_lines(text)
    assert all(0 < len(line) <= srt.LINE_MAX for line in lines)
    assert "".join(lines).replace(" ", "") == "".join(text.split())


@pytest.mark.parametrize("duration", [15, 30, 60])
def test_a_variant_renders_as_a_proper_srt(duration):
    # given a variant's parts
    cues = srt.cues(PARTS, duration)
    # when rendered
    body = srt.render(cues)
    blocks = body.rstrip("\n").split("\n\n")
    # then numbered cues from 1, each "start --> end" then text, separated by blank lines
    parsed = [CUE.match(block) for block in blocks]
    assert all(parsed), blocks
    assert [int(m.group(1)) for m in parsed] == list(range(1, len(blocks) + 1))
    # tiling the whole video in order, the first cue labeled 【广告】 on its own line
    spans = [(ms(m.group(2)), ms(m.group(3))) for m in parsed]
    assert spans[0][0] == 0 and spans[-1][1] == duration * 1000
    assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))
    assert parsed[0].group(4).startswith("【广告】\n")
    # and each part within its slot
    hook_end = srt.SLOTS[duration]["hook"][1] * 1000
    assert any(end == hook_end for _start, end in spans)


def test_render_takes_stored_cues_and_never_writes_an_empty_cue():
    body = srt.render([{"start_ms": 0, "end_ms": 1500, "text": "第一句"},
                       {"start_ms": 1500, "end_ms": 3000, "text": "\r\n"}])
    assert body == "1\n00:00:00,000 --> 00:00:01,500\n第一句\n\n2\n00:00:01,500 --> 00:00:03,000\n \n"


def test_many_lines_in_a_short_slot_still_tile_it():
    parts = {"hook": "啊，" * 40}
    cues = srt.cues(parts, 15, label=False)
    assert cues[0].start_ms == 0 and cues[-1].end_ms == 3000
    assert all(a.end_ms == b.start_ms and a.start_ms < a.end_ms for a, b in zip(cues, cues[1:], strict=False))
