"""Chat commands: live_stats (issue 13)."""

from __future__ import annotations
