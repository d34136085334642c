"""Lua scripts registered once per Redis client (the live sold-out gate and the risk edge checks).

The Redis client is passed in: models/ never builds one. A script object remembers its SHA and
falls back to EVAL when the server lost it (a restarted Redis), so caching it is safe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_scripts: dict[tuple[int, str], Any] = {}


def script(redis: Any, source: str) -> Callable[..., Any]:
    """The registered script of `source` for this client (registered on first use; the cache is
    emptied when it grows past 64, which only many short-lived clients would cause)."""
    key = (id(redis), source)
    found = _scripts.get(key)
    if found is None:
        if len(_scripts) > 64:
            _scripts.clear()
        found = _scripts[key] = redis.register_script(source)
    return found
