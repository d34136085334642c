"""`qianxing live`: live sessions from the operator shell (issue 13)."""

from __future__ import annotations

import click


@click.group()
def live() -> None:
    """Live sessions: the reservation lottery's public check, and more."""
