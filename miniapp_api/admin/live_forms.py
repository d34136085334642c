"""Reading the live-session admin forms into the services' arguments: a wall time typed in
LIVE_TIMEZONE, the pinned products as "SKU code[, ladder JSON]" lines, an optional lottery as
JSON. Each raises InvalidInput with a message for the operator; nothing here decides a rule
(models/live_planning.schedule and its parsers do)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from flask_babel import gettext as _

from models.errors import InvalidInput, NotFound
from models.live_planning import PinSpec
from models.live_rules import zone
from models.network import Creator

TIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")
MAX_PIN_LINES = 200  # the schedule's own LIVE_MAX_PINS check gives the precise limit


def local_start(text: str, tz: str) -> dt.datetime:
    """'2026-12-08 20:00' (or the datetime-local input's '2026-12-08T20:00') in `tz`, aware."""
    text = (text or "").strip()
    for fmt in TIME_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=zone(tz))
        except ValueError:
            continue
    raise InvalidInput(_("开播时间格式应为 2026-12-08 20:00（北京时间）"), code="invalid_start")


def creator_by_code(code: str) -> Creator:
    found = Creator.get_or_none(Creator.code == (code or "").strip())
    if found is None or not found.active:
        raise NotFound(_("没有邀请码为 %(code)s 的达人", code=code), code="unknown_creator")
    return found


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidInput(_("%(what)s 不是有效的 JSON", what=what), code="invalid_json") from None
    if not isinstance(value, dict):
        raise InvalidInput(_("%(what)s 必须是一个 JSON 对象", what=what), code="invalid_json")
    return value


def pin_lines(text: str) -> list[PinSpec]:
    """One product per line: `SKU code` or `SKU code, {"tiers": [...]}` (the ladder as
    models/live_prices.parse_ladder takes it). Blank lines are skipped."""
    pins = []
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if len(lines) > MAX_PIN_LINES:
        raise InvalidInput(_("商品最多 %(n)s 行", n=MAX_PIN_LINES), code="too_many_pins")
    for number, line in enumerate(lines, 1):
        code, _sep, rest = line.partition(",")
        ladder = _json_object(rest.strip(), _("第 %(n)s 行的价格阶梯", n=number)) if rest.strip() else None
        pins.append(PinSpec(sku_code=code.strip(), ladder=ladder))
    return pins


def lottery_spec(text: str) -> dict[str, Any] | None:
    return _json_object(text.strip(), _("预约抽奖")) if (text or "").strip() else None


def row_id(value: str | None) -> int | None:
    """A row id from a query argument (a keyset `before`): a positive int below 2**62, else None."""
    try:
        number = int(value or "")
    except ValueError:
        return None
    return number if 0 < number < 2**62 else None


def whole(text: str, what: str, default: int | None = None) -> int:
    text = (text or "").strip()
    if not text and default is not None:
        return default
    try:
        return int(text)
    except ValueError:
        raise InvalidInput(_("%(what)s 必须是整数", what=what), code="invalid_number") from None
