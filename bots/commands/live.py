"""Chat commands: live (issue 13)."""

from __future__ import annotations
