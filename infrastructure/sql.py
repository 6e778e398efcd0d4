"""One small SQL surface over sqlite3 and psycopg, so read models are written once for both."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import psycopg
import psycopg_pool


class Cursor(Protocol):
    """The part of a DB-API cursor the read models use."""

    rowcount: int

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Database(Protocol):
    """Transactions on one database; SQL is written with `?` placeholders."""

    schema_lock: str  # a statement that serialises schema creation, or ""

    def write(self) -> Any:
        """A context manager: a write transaction, committed on success."""
        ...

    def read(self) -> Any:
        """A context manager: a read transaction that sees one snapshot."""
        ...

    def startup_lock(self) -> Any:
        """A context manager held while a process creates or checks its tables."""
        ...

    def close(self) -> None: ...


class SQLiteDatabase:
    """A SQLite file in WAL mode; one connection per thread."""

    schema_lock = ""  # BEGIN IMMEDIATE already lets one writer in at a time

    @contextmanager
    def startup_lock(self) -> Iterator[None]:
        """SQLite's own locking serialises table creation: nothing to add."""
        yield

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # this process's writers queue here: SQLite's own busy handler makes a writer that
        # finds the file locked sleep 1, 2, 5, 10… ms before it looks again
        self._writing = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.execute("PRAGMA journal_mode=WAL")
            # a read model is rebuilt from the log, so it may lose its last commit on power
            # loss (its tracking position goes with it); it is never left inconsistent
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Cursor]:
        conn = self._connection()
        cursor = conn.cursor()
        with self._writing:
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Cursor]:
        conn = self._connection()
        cursor = conn.cursor()
        cursor.execute("BEGIN")
        try:
            yield cursor
        finally:
            conn.rollback()

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


_QMARK = re.compile(r"\?")


class _PgCursor:
    """psycopg with `?` placeholders."""

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cursor.execute(_QMARK.sub("%s", sql), params)  # type: ignore[call-overload]

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        return self._cursor.executemany(_QMARK.sub("%s", sql), params)  # type: ignore[arg-type]

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()


class PostgresDatabase:
    """A PostgreSQL database (optionally one schema of it) through a connection pool."""

    pipelines_executemany = True
    #: the planner's statistics lag behind bulk writes until autovacuum's next round
    analyze_after_bulk_writes = True
    #: taken (to the end of the transaction) by whoever creates or checks the read models
    schema_lock = "SELECT pg_advisory_xact_lock(7263114950112)"

    def __init__(self, conninfo: str, schema: str | None = None, pool_size: int = 12) -> None:
        kwargs: dict[str, Any] = {"autocommit": False}
        if schema:
            kwargs["options"] = f"-c search_path={schema}"
        self.schema, self.conninfo = schema, conninfo
        if schema:  # under the startup lock: IF NOT EXISTS is not race-safe either
            with self.startup_lock(), psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')  # type: ignore[arg-type]
        self.pool = psycopg_pool.ConnectionPool(
            conninfo, min_size=1, max_size=pool_size, kwargs=kwargs, open=True
        )

    @contextmanager
    def write(self) -> Iterator[_PgCursor]:
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            yield _PgCursor(cursor)

    @contextmanager
    def read(self) -> Iterator[_PgCursor]:
        with self.pool.connection() as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            try:
                with conn.transaction(), conn.cursor() as cursor:
                    yield _PgCursor(cursor)
            finally:
                conn.isolation_level = None

    @contextmanager
    def startup_lock(self) -> Iterator[None]:
        """Held while a process creates or checks its tables (the event store's too): two
        processes starting together on a fresh database would otherwise collide."""
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(7263114950113)")
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(7263114950113)")

    def close(self) -> None:
        self.pool.close()


@contextmanager
def schema_change(db: Database) -> Iterator[Any]:
    """A write transaction for creating tables: processes starting together take turns
    (concurrent `IF NOT EXISTS` statements collide on PostgreSQL)."""
    with db.write() as c:
        if db.schema_lock:
            c.execute(db.schema_lock)
        yield c


def add_column(db: Database, c: Any, table: str, column: str, sql_type: str) -> bool:
    """Add `column` to a table made before it existed (inside `schema_change`); whether it
    was missing."""
    if isinstance(db, SQLiteDatabase):
        c.execute(f"SELECT name FROM pragma_table_info('{table}')")
        present = column in {name for (name,) in c.fetchall()}
    else:
        c.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema=current_schema() AND "
            "table_name=? AND column_name=?",
            (table, column),
        )
        present = c.fetchone() is not None
    if not present:
        c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
    return not present
