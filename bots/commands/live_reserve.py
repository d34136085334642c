"""Chat commands: live_reserve (issue 13)."""

from __future__ import annotations
