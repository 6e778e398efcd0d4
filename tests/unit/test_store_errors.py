"""Which store failures are the store being unavailable (answered 503) and which are bugs."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, OperationalError

from infrastructure.store_errors import unavailable


def sqlite_error(statement: str) -> Exception:
    """What SQLite raises for `statement` on a database that takes no writes."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a PRIMARY KEY)")
    conn.execute("PRAGMA query_only = ON")  # refuses writes as a read-only file does
    try:
        conn.execute(statement)
    except sqlite3.Error as e:
        return e
    finally:
        conn.close()
    raise AssertionError("no error")


def wrapped(error: Exception, wrapper: type[Exception]) -> Exception:
    """As the event store's library raises it: its own class, the driver's error as cause."""
    try:
        raise wrapper(str(error)) from error
    except wrapper as e:
        return e


def test_a_read_only_sqlite_store_is_unavailable_even_through_the_library() -> None:
    error = sqlite_error("INSERT INTO t VALUES (2)")

    assert unavailable(error) == "it is read-only"
    assert unavailable(wrapped(error, OperationalError)) == "it is read-only"


@pytest.mark.parametrize(
    "error",
    [
        sqlite_error("SELECT nonsense FROM t"),
        wrapped(sqlite_error("SELECT * FROM missing"), OperationalError),
        IntegrityError("a unique constraint"),
        ValueError("not a store error"),
    ],
)
def test_a_bad_statement_or_a_conflict_is_not_unavailability(error: Exception) -> None:
    assert unavailable(error) is None


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (psycopg.errors.DiskFull("could not extend file"), "disk is full"),
        (psycopg.errors.ReadOnlySqlTransaction("read-only transaction"), "read-only"),
        (psycopg.OperationalError("connection refused"), "cannot be reached"),
    ],
)
def test_postgresql_failures_that_pass_are_unavailability(error: Exception, reason: str) -> None:
    assert reason in (unavailable(wrapped(error, OperationalError)) or "")
