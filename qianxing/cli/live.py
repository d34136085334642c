"""`qianxing live`: live sessions from the operator shell (issue 13)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import click
import requests

from qianxing.cli import boot

Fetch = Callable[[str, dict[str, Any]], dict[str, Any]]


@click.group()
def live() -> None:
    """Live sessions: the reservation lottery's public check, and more."""


def http_fetch(base_url: str, timeout_s: float = 30.0) -> Fetch:
    """GET `base_url + path` with query `params`, the JSON answer; a clean CLI error otherwise."""
    http = requests.Session()

    def fetch(path: str, params: dict[str, Any]) -> dict[str, Any]:
        url = base_url.rstrip("/") + path
        try:
            resp = http.get(url, params=params, timeout=timeout_s)
        except requests.RequestException as exc:
            raise click.ClickException(f"{url}: {type(exc).__name__}") from None
        if resp.status_code != 200:
            try:
                message = resp.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = resp.text[:200]
            raise click.ClickException(f"{url}: HTTP {resp.status_code} {message}")
        return resp.json()

    return fetch


class PublicIds:
    """The public reservation list of a session, paged through the API on each iteration."""

    def __init__(self, fetch: Fetch, session_id: int, page: int = 1000) -> None:
        self.fetch, self.session_id, self.page = fetch, session_id, page

    def __iter__(self) -> Iterator[int]:
        after: int | None = 0
        while after is not None:
            answer = self.fetch(f"/api/v1/live/sessions/{self.session_id}/lottery/reservations",
                                {"after": after, "limit": self.page})
            yield from answer["ids"]
            after = answer.get("next_after")


def verify(session_id: int, fetch: Fetch) -> tuple[dict[str, Any], list[str]]:
    """The published lottery and what does not match when it is recomputed from public data
    only ([]: everything matches)."""
    from models.lottery_draw import check_public

    public = fetch(f"/api/v1/live/sessions/{session_id}/lottery", {})
    try:
        return public, check_public(public, session_id, PublicIds(fetch, session_id))
    except ValueError as exc:  # the published list is not ascending, or changed while read
        return public, [str(exc)]


@live.command("verify-draw")
@click.argument("session_id", type=click.IntRange(1))
@click.option("--url", default=None, help="the service's public base URL (default: PUBLIC_BASE_URL)")
def verify_draw(session_id: int, url: str | None) -> None:
    """Recompute a session's lottery from its public API only: sha256(seed) against the hash
    published at scheduling, the reservation list's hash, the winners. Prints OK, or MISMATCH
    and what differs (exit status 1)."""
    public, problems = verify(session_id, http_fetch(url or boot.settings().PUBLIC_BASE_URL))
    if problems:
        click.echo(f"MISMATCH: lottery of live session {session_id}")
        for problem in problems:
            click.echo(f"  - {problem}")
        raise SystemExit(1)
    winners = ", ".join(str(w) for w in public.get("winners") or []) or "none"
    click.echo(f"OK: lottery of live session {session_id} ({public['state']}, {public['reservations']} "
               f"reservations, winners: {winners})")


@live.command("reconcile-dashboard")
@click.argument("session_id", type=click.IntRange(1))
def reconcile_dashboard(session_id: int) -> None:
    """Recompute an ended session's dashboard figures from the database now (the periodic
    sweep does it LIVE_DASHBOARD_RECONCILE_DELAY_S after the end) and overwrite its counters."""
    from models import live_reconcile
    from models.db import connection
    from models.errors import DomainError
    from qianxing.wiring import runtime

    boot.boot()
    try:
        with connection():
            stats = live_reconcile.reconcile(session_id, runtime().redis)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"live session {session_id}: {stats.orders} paid orders, GMV {stats.gmv_fen} fen, "
               f"{stats.buyers} buyers, {stats.orders_placed} placed")
