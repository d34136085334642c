"""DATABASE_URL query parameters: on PostgreSQL they reach psycopg2; a SQLite URL refuses them
(its pragmas are fixed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models.db import db, open_database


@pytest.fixture
def keep_binding() -> Iterator[None]:
    """open_database binds the global proxy: put back whatever the other tests use."""
    before = db.obj
    yield
    if before is not None:
        db.initialize(before)


def test_postgres_query_parameters_reach_the_driver(database_url: str, keep_binding: None) -> None:
    if not database_url.startswith(("postgres://", "postgresql://")):
        pytest.skip("PostgreSQL only")
    # given a URL with libpq connection parameters in its query string
    url = f"{database_url}?connect_timeout=3&application_name=qx-test"
    # when the service opens it
    opened = open_database(url)
    try:
        with opened.connection_context():
            name = opened.execute_sql("SHOW application_name").fetchone()[0]
            params = opened.connect_params
    finally:
        opened.close_all()
    # then psycopg2 connected with them, and the pool is still the service's own
    assert name == "qx-test"
    assert params["connect_timeout"] == 3
    assert type(opened).__name__ == "FastPooledPostgres"


def test_sqlite_refuses_query_parameters(tmp_path: Path, keep_binding: None) -> None:
    with pytest.raises(ValueError, match="takes no query parameters .*cache_size"):
        open_database(f"sqlite:///{tmp_path / 'x.db'}?cache_size=1")


def test_sqlite_without_parameters_keeps_its_pragmas(tmp_path: Path, keep_binding: None) -> None:
    opened = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert opened.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert opened.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        opened.close()
