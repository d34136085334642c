"""A script variant's timing: where each part sits in a 15 / 30 / 60 s video, the timed subtitle
lines cut from its text, and those lines as an SRT file.

The timing is ours, never the model's: each part (hook, pain point, selling points, proof, call
to action) has a fixed slot per duration (`SLOTS`), and its text is cut at punctuation into lines
of at most LINE_MAX characters, sharing the slot by length. The numbers of the slots are the only
numbers a script may hold besides the catalog's (`allowed_numbers`, for content_ai.guard).

SRT: cues numbered from 1, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, the text, a blank line; CRLF-free
UTF-8 as most editors (剪映, Premiere, ffmpeg) read it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DURATIONS = (15, 30, 60)
PARTS = ("hook", "pain_point", "selling_points", "proof", "call_to_action")
PART_LABELS = {"hook": "开场钩子", "pain_point": "痛点", "selling_points": "卖点", "proof": "信任背书",
               "call_to_action": "行动号召"}
# (start, end) second of each part, per duration
SLOTS: dict[int, dict[str, tuple[int, int]]] = {
    15: {"hook": (0, 3), "pain_point": (3, 5), "selling_points": (5, 10), "proof": (10, 12),
         "call_to_action": (12, 15)},
    30: {"hook": (0, 3), "pain_point": (3, 8), "selling_points": (8, 20), "proof": (20, 25),
         "call_to_action": (25, 30)},
    60: {"hook": (0, 5), "pain_point": (5, 15), "selling_points": (15, 40), "proof": (40, 50),
         "call_to_action": (50, 60)},
}
LINE_MAX = 16  # characters on one subtitle line (a phone screen's width in Chinese)
AD_LABEL = "【广告】"
# after Chinese punctuation, or after , . : not inside a number ("¥19.90" stays whole)
_NUMBERISH = re.compile(r"[0-9.,¥%]")
_BREAK = re.compile(r"(?<=[，。！？；、!?;：])|(?<=[,.:])(?!\d)|\s+")


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    text: str


def allowed_numbers() -> set[int]:
    """Every number the timing itself puts in a script: the durations and the slots' seconds."""
    found = set(DURATIONS)
    for slots in SLOTS.values():
        for start, end in slots.values():
            found.update((start, end))
    return found


def _cut(piece: str, limit: int) -> int:
    """Where to cut a clause longer than `limit`: at `limit`, moved back out of a number."""
    cut = limit
    while cut > 1 and _NUMBERISH.match(piece[cut - 1]) and _NUMBERISH.match(piece[cut]):
        cut -= 1
    return cut if cut > 1 else limit


def _join(left: str, right: str) -> str:
    return f"{left} {right}" if left and left[-1].isascii() and left[-1].isalnum() and right[:1].isascii() \
        and right[:1].isalnum() else left + right


def split_lines(text: str, limit: int = LINE_MAX) -> list[str]:
    """The text cut into subtitle lines of at most `limit` characters, at punctuation or spaces
    where it can, elsewhere (never inside a number) where a clause is longer."""
    pieces = [p.strip() for p in _BREAK.split(text or "") if p and p.strip()]
    lines: list[str] = []
    current = ""
    for piece in pieces:
        while len(piece) > limit:
            if current:
                lines.append(current)
                current = ""
            cut = _cut(piece, limit)
            lines.append(piece[:cut])
            piece = piece[cut:]
        if current and len(_join(current, piece)) > limit:
            lines.append(current)
            current = piece
        else:
            current = _join(current, piece)
    if current:
        lines.append(current)
    return lines


def cues(parts: dict[str, str | list[str]], duration: int, *, label: bool = True) -> list[Cue]:
    """The timed subtitle lines of one variant: each part's lines share its slot by length (at
    least 300 ms each); the first cue carries the 【广告】 label."""
    slots = SLOTS[duration]
    out: list[Cue] = []
    for part in PARTS:
        value = parts.get(part) or ""
        text = "，".join(value) if isinstance(value, list) else value
        lines = split_lines(text)
        if not lines:
            continue
        start, end = slots[part][0] * 1000, slots[part][1] * 1000
        total = sum(len(line) for line in lines)
        at = start
        for i, line in enumerate(lines):
            stop = end if i == len(lines) - 1 else max(at + 300, start + (end - start) * sum(
                len(x) for x in lines[:i + 1]) // total)
            stop = min(stop, end)
            if stop <= at:  # too many lines for the slot: the rest join the last cue
                out[-1] = Cue(out[-1].start_ms, end, out[-1].text + line)
                continue
            out.append(Cue(at, stop, line))
            at = stop
    if label and out:
        out[0] = Cue(out[0].start_ms, out[0].end_ms, f"{AD_LABEL}\n{out[0].text}")
    return out


def timestamp(ms: int) -> str:
    hours, rest = divmod(max(0, int(ms)), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d},{millis:03d}"


def render(lines: Iterable[Cue | dict]) -> str:
    """SRT text of the cues (dicts with start_ms, end_ms, text are taken too)."""
    blocks = []
    for index, cue in enumerate(lines, 1):
        if isinstance(cue, dict):
            cue = Cue(int(cue["start_ms"]), int(cue["end_ms"]), str(cue["text"]))
        text = "\n".join(line for line in cue.text.replace("\r", "").split("\n") if line.strip()) or " "
        blocks.append(f"{index}\n{timestamp(cue.start_ms)} --> {timestamp(cue.end_ms)}\n{text}\n")
    return "\n".join(blocks)
