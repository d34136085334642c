"""Scratch databases for benchmarks: a PostgreSQL database created next to DATABASE_URL (so the
named one is never touched), or a throwaway SQLite file under var/bench/."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from qianxing.settings import VAR_DIR, Settings

BENCH_DIR = VAR_DIR / "bench"


def pg_admin(url: str, *statements: str) -> None:
    """Run statements outside a transaction (CREATE/DROP DATABASE) on the server of `url`."""
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


class ScratchDatabase:
    """One benchmark run's database: its URL, `create()` and `remove()`."""

    def __init__(self, settings: Settings, label: str) -> None:
        self.postgres = settings.DATABASE_URL.startswith(("postgres://", "postgresql://"))
        self.admin_url = settings.DATABASE_URL
        self.path: Path | None = None
        if self.postgres:
            self.name = f"qx_bench_{label}_{os.getpid()}"
            self.url = with_database(settings.DATABASE_URL, self.name)
        else:
            BENCH_DIR.mkdir(parents=True, exist_ok=True)
            self.name = f"{label}-{os.getpid()}.db"
            self.path = BENCH_DIR / self.name
            self.url = f"sqlite:///{self.path}"

    def create(self) -> None:
        if self.postgres:
            pg_admin(self.admin_url, f'DROP DATABASE IF EXISTS "{self.name}"', f'CREATE DATABASE "{self.name}"')
        else:
            self.remove()

    def remove(self) -> None:
        from models.db import db

        if db.obj is not None:
            if not db.is_closed():
                db.close()
            if hasattr(db.obj, "close_all"):
                db.obj.close_all()
        if self.postgres:
            pg_admin(self.admin_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        elif self.path is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
