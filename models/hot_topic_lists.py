"""Hot-topic lists as operators bring them (issue 16): a CSV file or a JSON feed, parsed
liberally and bounded.

- `parse_csv`: one topic per line, `title[,heat]`; UTF-8 with or without BOM, else GB18030 (a
  superset of GBK, what Excel saves on a Chinese Windows); a header line is optional.
- `parse_json`: a list of strings, or of objects with a title (title, name, word, keyword, ...)
  and an optional heat (heat, hot, hot_value, score, ...), at the top or under "data", "list",
  "items", ... a few levels deep.

Both keep at most `max_rows` topics (of at most TITLE_MAX characters; duplicates dropped) and
report every bad line or item by its number instead of refusing the file; InvalidInput only
when nothing can be imported (or the file is too large or not text).
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from models.errors import InvalidInput

TITLE_MAX = 40  # characters of a topic title (hot-search titles are short)
HEAT_MAX = 10**15  # a heat figure above this is not one
HEADER_WORDS = {"title", "topic", "name", "keyword", "word", "标题", "话题", "热点", "热搜", "关键词", "名称"}
TITLE_KEYS = ("title", "topic", "name", "word", "keyword", "query", "desc", "标题", "话题", "热点", "关键词")
HEAT_KEYS = ("heat", "hot", "hot_value", "hotValue", "score", "value", "num", "count", "热度")
_UNITS = {"万": 10_000, "w": 10_000, "W": 10_000, "亿": 100_000_000, "k": 1000, "K": 1000}
LIST_KEYS = ("data", "list", "items", "topics", "result", "results", "realtime", "cards", "hot", "rows")


@dataclass(frozen=True)
class TopicRow:
    title: str
    heat: int = 0


@dataclass
class Parsed:
    rows: list[TopicRow] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line or item number, reason)
    read: int = 0  # rows or items seen (blank lines not counted)


def clean_title(text: Any) -> str:
    """NFKC, control characters dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", str(text or ""))
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return re.sub(r"\s+", " ", text).strip()


def parse_heat(value: Any) -> int | None:
    """A heat figure: an integer, "1,234", "12.5万", "3亿"; None when it is not one."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value) if 0 <= value < HEAT_MAX else None  # NaN fails both
    text = unicodedata.normalize("NFKC", str(value)).strip().replace(",", "")
    found = re.fullmatch(r"(\d{1,15}(?:\.\d+)?)\s*(万|亿|w|W|k|K)?", text)
    if not found:
        return None
    value = int(float(found.group(1)) * _UNITS.get(found.group(2) or "", 1))
    return value if value < HEAT_MAX else None


def _add(parsed: Parsed, seen: set[str], where: int, title: Any, heat: Any, max_rows: int) -> None:
    parsed.read += 1
    text = clean_title(title)
    if not text:
        parsed.bad.append((where, "标题为空"))
    elif len(text) > TITLE_MAX:
        parsed.bad.append((where, f"标题超过 {TITLE_MAX} 个字"))
    elif (value := parse_heat(heat)) is None:
        parsed.bad.append((where, f"热度不是数字：{clean_title(heat)[:20]}"))
    elif text in seen:
        parsed.bad.append((where, "标题重复"))
    elif len(parsed.rows) >= max_rows:
        parsed.bad.append((where, f"超过 {max_rows} 条上限，未导入"))
    else:
        seen.add(text)
        parsed.rows.append(TopicRow(text, value))


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM), else GB18030 (a superset of GBK, what Excel saves on a
    Chinese Windows); InvalidInput when it is neither."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InvalidInput("文件编码无法识别：请保存为 UTF-8 或 GBK 编码的 CSV", code="bad_encoding")


def parse_csv(data: bytes, *, max_rows: int, max_bytes: int) -> Parsed:
    """Topics of a CSV file: one per line, `title[,heat]`, an optional header line. Blank lines
    are skipped; bad lines are reported by line number. InvalidInput for a file that is too
    large, not text, or has no topic at all."""
    if len(data) > max_bytes:
        raise InvalidInput(f"文件超过 {max_bytes // 1024} KB 上限", code="too_large")
    text = decode(data)
    if "\x00" in text:
        raise InvalidInput("文件不是文本 CSV", code="not_csv")
    parsed, seen = Parsed(), set()
    try:
        for number, cells in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
            if not any(c.strip() for c in cells):
                continue
            if number == 1 and clean_title(cells[0]).lower() in HEADER_WORDS:
                continue
            if len(cells) > 2 and any(c.strip() for c in cells[2:]):
                parsed.read += 1
                parsed.bad.append((number, "列数过多：每行为 标题[,热度]"))
                continue
            _add(parsed, seen, number, cells[0], cells[1] if len(cells) > 1 else "", max_rows)
    except csv.Error as exc:
        raise InvalidInput(f"CSV 格式错误：{str(exc)[:100]}", code="not_csv") from None
    if not parsed.rows:
        raise InvalidInput(_no_rows(parsed), code="no_topics")
    return parsed


def _no_rows(parsed: Parsed) -> str:
    if not parsed.bad:
        return "文件里没有话题"
    first = "；".join(f"第 {n} 行：{why}" for n, why in parsed.bad[:3])
    return f"没有可导入的话题（{first}）"


def _find_list(value: Any, depth: int = 0) -> list[Any] | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and depth < 4:
        for key in LIST_KEYS:
            if key in value:
                found = _find_list(value[key], depth + 1)
                if found is not None:
                    return found
        lists = [v for v in value.values() if isinstance(v, list | dict)]
        if len(lists) == 1:
            return _find_list(lists[0], depth + 1)
    return None


def _pick(item: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in item and item[key] not in (None, ""):
            return item[key]
    return None


def parse_json(data: bytes | str, *, max_rows: int) -> Parsed:
    """Topics of a JSON document: a list of strings, or of objects with a title (title, name,
    word, keyword, ...) and an optional heat (heat, hot, hot_value, score, ...), found at the top
    or under "data", "list", "items", ... Bad items are reported by their position (from 1).
    InvalidInput when it is not JSON, holds no list, or no topic at all."""
    try:
        doc = json.loads(data.decode("utf-8-sig") if isinstance(data, bytes) else data)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("返回的内容不是 JSON", code="not_json") from None
    items = _find_list(doc)
    if items is None:
        raise InvalidInput("JSON 里没有话题列表（需要字符串列表，或 {title, heat} 对象列表）", code="no_list")
    parsed, seen = Parsed(), set()
    for number, item in enumerate(items, start=1):
        if number > max_rows * 2 + 100:  # a huge list: the rest is counted, not examined
            parsed.read += len(items) - number + 1
            parsed.bad.append((number, f"超过 {max_rows} 条上限，其余未导入"))
            break
        if isinstance(item, str | int | float) and not isinstance(item, bool):
            _add(parsed, seen, number, item, "", max_rows)
        elif isinstance(item, dict):
            _add(parsed, seen, number, _pick(item, TITLE_KEYS), _pick(item, HEAT_KEYS), max_rows)
        else:
            parsed.read += 1
            parsed.bad.append((number, "不是字符串或对象"))
    if not parsed.rows:
        raise InvalidInput(_no_rows(parsed).replace("行", "项"), code="no_topics")
    return parsed
