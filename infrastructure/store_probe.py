"""Whether a store can be reached and holds cronsource's tables, found out without creating
anything (opening a `Core` would make what is missing): for `cronsource doctor`."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from infrastructure import nodes, read_models, webhook_store
from infrastructure.store import StoreUrl

SQLITE_EVENTS = "stored_events"  # the library's fixed name on SQLite
POSTGRES_EVENTS = "cronsource_events"  # the application's name + "_events"
VIEW_TABLES = (
    read_models.TRACKING_TABLE,
    read_models.SqlJobsView.table,
    read_models.SqlJobsView.counts_table,
    read_models.SqlExecutionsView.table,
    read_models.SqlLedgerView.table,
    read_models.SqlSkipsView.table,
    webhook_store.SqlWebhooksView.table,
    webhook_store.CURSORS,
    webhook_store.DELIVERIES,
    nodes.TABLE,
)
CONNECT_TIMEOUT_SECONDS = 5


@dataclass(frozen=True, slots=True)
class StoreProbe:
    """What was found: the error if the store could not be read, the tables it lacks, and
    (PostgreSQL) the server's clock with the round trip it was read in."""

    error: str | None = None
    exists: bool = True  # False: nothing of cronsource's there yet
    missing: tuple[str, ...] = ()
    database_now: datetime | None = None
    local_now: datetime | None = None  # this host's clock at the middle of that round trip
    round_trip_seconds: float = 0.0


def probe_store(store: StoreUrl) -> StoreProbe:
    """Read the store's catalogue (and clock), writing nothing."""
    if store.kind == "sqlite":
        return _sqlite(store)
    return _postgres(store)


def _sqlite(store: StoreUrl) -> StoreProbe:
    assert store.sqlite_path is not None
    if not store.sqlite_path.exists():
        return StoreProbe(exists=False, missing=(str(store.sqlite_path),))
    missing: list[str] = []
    try:
        for path, tables in ((store.sqlite_path, (SQLITE_EVENTS,)),
                             (store.views_path, VIEW_TABLES)):  # fmt: skip
            if not path.exists():
                missing += [f"{path.name}: {t}" for t in tables]
                continue
            conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, timeout=CONNECT_TIMEOUT_SECONDS
            )
            try:
                found = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            finally:
                conn.close()
            missing += [f"{path.name}: {t}" for t in tables if t not in found]
    except sqlite3.Error as e:
        return StoreProbe(error=f"{store.sqlite_path}: {e}")
    return StoreProbe(missing=tuple(missing))


def _postgres(store: StoreUrl) -> StoreProbe:
    assert store.conninfo is not None
    schema = store.schema or "public"
    try:
        with psycopg.connect(store.conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
            tables = (POSTGRES_EVENTS, *VIEW_TABLES)
            rows = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema=%s",
                (schema,),
            ).fetchall()
            found = {r[0] for r in rows}
            before = time.monotonic()
            local = datetime.now(UTC)
            row = conn.execute("SELECT clock_timestamp()").fetchone()
            round_trip = time.monotonic() - before
    except psycopg.Error as e:
        return StoreProbe(error=str(e).strip().splitlines()[0] if str(e).strip() else repr(e))
    assert row is not None
    missing = tuple(f"{schema}.{t}" for t in tables if t not in found)
    return StoreProbe(
        exists=len(missing) < len(tables), missing=missing, database_now=row[0],
        local_now=local + timedelta(seconds=round_trip / 2), round_trip_seconds=round_trip,
    )  # fmt: skip
