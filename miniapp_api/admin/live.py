"""Admin pages: live (issue 13)."""

from __future__ import annotations

from flask_admin import Admin


def register(admin: Admin) -> None:
    """Nothing yet."""
