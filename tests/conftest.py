"""Fixtures: each storage test runs on a SQLite file and on PostgreSQL (a fresh database per run)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

POSTGRES_URL = os.environ.get("CRONSOURCE_TEST_POSTGRES_URL", "")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database created for this test run and dropped after it; yields its URL."""
    if not POSTGRES_URL:
        if os.environ.get("CI") == "true":  # in CI the PostgreSQL tests must run, never skip
            pytest.fail("CRONSOURCE_TEST_POSTGRES_URL is not set in CI")
        pytest.skip("set CRONSOURCE_TEST_POSTGRES_URL to run the PostgreSQL tests")
    name = f"cronsource_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    url = urlsplit(POSTGRES_URL)._replace(path=f"/{name}").geturl()
    yield url
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store per test: a SQLite file in tmp_path, or a new schema in the run's database."""
    if request.param == "sqlite":
        return f"sqlite:///{(tmp_path / 'cronsource.db').as_posix()}"
    base = request.getfixturevalue("postgres_database")
    return f"{base}?schema=t_{uuid.uuid4().hex[:12]}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Soak tests run only when a marker expression names them (`pytest -m soak`): they take
    minutes and the whole machine, so neither a plain `pytest` nor `pytest -m postgres` runs
    them."""
    if "soak" in (config.getoption("markexpr") or ""):
        return
    soak = [item for item in items if item.get_closest_marker("soak")]
    if soak:
        items[:] = [item for item in items if not item.get_closest_marker("soak")]
        config.hook.pytest_deselected(items=soak)
