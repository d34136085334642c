"""CSV that a spreadsheet opens safely, written as a stream.

A cell starting with `= + - @`, a tab or a carriage return is read by Excel, WPS and LibreOffice
as a formula (CSV injection); such a cell is prefixed with a single quote, which every one of
them shows as text. Numbers stay numbers: an int (a negative amount in fen) is never text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def stream(header: list[str], rows: Iterable[Iterable[Any]], *, bom: bool = True) -> Iterator[str]:
    """Lines of CSV, one chunk per row (for a streamed response); a UTF-8 BOM first so Excel
    reads the Chinese right."""
    buf = io.StringIO()
    writer = csv.writer(buf)

    def take() -> str:
        out = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return out

    writer.writerow([safe_cell(h) for h in header])
    yield ("\ufeff" if bom else "") + take()
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
        yield take()
