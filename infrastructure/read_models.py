"""The `jobs` and `executions` read models on SQLite or PostgreSQL (the same SQL for both)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from eventsourcing.persistence import Tracking, TrackingRecorder

from infrastructure.sql import Database, schema_change

Row = dict[str, Any]
TRACKING_TABLE = "cronsource_projections"
CHUNK = 400  # rows per statement: well under SQLite's 32,766 bound variables


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass(frozen=True, slots=True)
class Column:
    """A column copied out of the row document, so queries can filter and sort on it."""

    name: str
    sql_type: str
    value: Callable[[Row], Any]


_ID = Column("id", "TEXT", lambda r: r["id"])
_DOC = Column("doc", "TEXT", lambda r: r)


class SqlProjectionStore(TrackingRecorder):
    """Rows of one projection (a JSON document plus indexed columns) and its position."""

    table: str
    columns: tuple[Column, ...]
    indexes: tuple[str, ...] = ()
    #: PostgreSQL: the planner's statistics are first refreshed after this many rows written
    ANALYZE_AFTER_ROWS = 1_000

    def __init__(self, db: Database, name: str, application_name: str = "cronsource") -> None:
        self.db, self.name, self.application_name = db, name, application_name
        self._names = ", ".join(["id", *(c.name for c in self.columns), "doc"])
        self._marks = "(" + ", ".join("?" * (len(self.columns) + 2)) + ")"
        updates = ", ".join(f"{c}=excluded.{c}" for c in [*(c.name for c in self.columns), "doc"])
        self._on_conflict = f"ON CONFLICT (id) DO UPDATE SET {updates}"
        # PostgreSQL: a batch's rows as one array per column, one statement whatever their
        # number (row by row, even pipelined, the server parsed and ran one INSERT per row);
        # binary (`%b`): psycopg escapes text arrays with a regular expression per element
        arrays = ", ".join(
            f"%b::{c.sql_type.split()[0].lower()}[]" for c in (_ID, *self.columns, _DOC)
        )
        self._upsert_arrays = (
            f"INSERT INTO {self.table} ({self._names}) SELECT * FROM unnest({arrays}) "
            f"{self._on_conflict}"
        )
        self._changed = 0  # rows written since the planner's statistics were last refreshed
        self._analyzed_at = 0  # rows written in all when they were
        self.create_tables()

    def create_tables(self) -> None:
        """Create the table, its indexes and its tracking row if missing."""
        columns = ", ".join(f"{c.name} {c.sql_type}" for c in self.columns)
        with schema_change(self.db) as c:
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} (projection TEXT PRIMARY KEY, "
                "application_name TEXT NOT NULL, position BIGINT NOT NULL)"
            )
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} "
                f"(id TEXT PRIMARY KEY, {columns}, doc TEXT NOT NULL)"
            )
            for i, index in enumerate(self.indexes):
                c.execute(
                    f"CREATE INDEX IF NOT EXISTS {self.table}_i{i} ON {self.table} ({index})"
                )
        # apart from the DDL: `CREATE INDEX` locks the table even when the index exists, and a
        # projection committing in another process holds its tracking row while it waits for
        # that table; waiting here for the row under the same transaction was a deadlock
        with self.db.write() as c:
            c.execute(
                f"INSERT INTO {TRACKING_TABLE} (projection, application_name, position) "
                "VALUES (?, ?, 0) ON CONFLICT (projection) DO NOTHING",
                (self.name, self.application_name),
            )

    # -- ProjectionStore -----------------------------------------------------------------

    def position(self) -> int:
        with self.db.read() as c:
            c.execute(f"SELECT position FROM {TRACKING_TABLE} WHERE projection=?", (self.name,))
            row = c.fetchone()
        return int(row[0]) if row else 0

    def load(self, keys: Iterable[str]) -> dict[str, Row]:
        rows: dict[str, Row] = {}
        with self.db.read() as c:
            for chunk in _chunks(list(keys), CHUNK):
                marks = ", ".join("?" * len(chunk))
                c.execute(f"SELECT id, doc FROM {self.table} WHERE id IN ({marks})", chunk)
                rows.update((key, orjson.loads(doc)) for key, doc in c.fetchall())
        return rows

    def commit(self, changes: Mapping[str, Row | None], expected: int, position: int) -> bool:
        upserts = [self._values(k, r) for k, r in changes.items() if r is not None]
        deletes = [k for k, r in changes.items() if r is None]
        try:
            with self.db.write() as c:
                c.execute(
                    f"UPDATE {TRACKING_TABLE} SET position=? WHERE projection=? AND position=?",
                    (position, self.name, expected),
                )
                if c.rowcount != 1:  # another process got here first: apply nothing
                    raise _Lost
                if getattr(self.db, "pipelines_executemany", False):
                    if upserts:
                        c.execute(
                            self._upsert_arrays, [list(col) for col in zip(*upserts, strict=True)]
                        )
                else:  # SQLite: many rows per statement, one step per chunk
                    for chunk in _chunks(upserts, CHUNK):
                        c.execute(
                            f"INSERT INTO {self.table} ({self._names}) VALUES "
                            f"{', '.join([self._marks] * len(chunk))} {self._on_conflict}",
                            [value for row in chunk for value in row],
                        )
                touched = self._touched(c, upserts, deletes)
                for chunk in _chunks(deletes, CHUNK):
                    marks = ", ".join("?" * len(chunk))
                    c.execute(f"DELETE FROM {self.table} WHERE id IN ({marks})", chunk)
                self._after_write(c, touched)
        except _Lost:
            return False
        self._refresh_statistics(len(upserts) + len(deletes))
        return True

    def _refresh_statistics(self, written: int) -> None:
        """PostgreSQL plans with the statistics of its last `ANALYZE`; autovacuum takes up to a
        minute to notice a bulk load (a catch-up, a rebuild), and until it does, a fresh table
        is planned as if empty: deep pages took 0.6 s instead of 5 ms. Refresh them after the
        first 1,000 rows and then every time the rows written grow by a quarter."""
        if not getattr(self.db, "analyze_after_bulk_writes", False):
            return
        self._changed += written
        if self._changed < max(self.ANALYZE_AFTER_ROWS, self._analyzed_at // 4):
            return
        self._analyzed_at += self._changed
        self._changed = 0
        with self.db.write() as c:
            c.execute(f"ANALYZE {self.table}")

    def _touched(self, c: Any, upserts: list[tuple[Any, ...]], deletes: list[str]) -> Any:
        """Called in a batch's transaction before its deletes: what `_after_write` needs."""
        return None

    def _after_write(self, c: Any, touched: Any) -> None:
        """Called at the end of a batch's transaction (derived tables of a read model)."""

    def reset(self) -> None:
        with self.db.write() as c:
            c.execute(f"DELETE FROM {self.table}")
            c.execute(f"UPDATE {TRACKING_TABLE} SET position=0 WHERE projection=?", (self.name,))
            self._after_reset(c)

    def _after_reset(self, c: Any) -> None:
        """Called in `reset`'s transaction."""

    def dump(self) -> tuple[int, dict[str, Row]]:
        with self.db.read() as c:
            c.execute(f"SELECT position FROM {TRACKING_TABLE} WHERE projection=?", (self.name,))
            row = c.fetchone()
            c.execute(f"SELECT id, doc FROM {self.table}")
            rows = {key: orjson.loads(doc) for key, doc in c.fetchall()}
        return (int(row[0]) if row else 0), rows

    def _values(self, key: str, row: Row) -> tuple[Any, ...]:
        return (key, *(c.value(row) for c in self.columns), orjson.dumps(row).decode())

    # -- TrackingRecorder (the library's interface to the same position) -----------------

    def insert_tracking(self, tracking: Tracking) -> None:
        with self.db.write() as c:
            c.execute(
                f"UPDATE {TRACKING_TABLE} SET position=? WHERE projection=? AND position<?",
                (tracking.notification_id, self.name, tracking.notification_id),
            )

    def max_tracking_id(self, application_name: str) -> int | None:
        if application_name != self.application_name:
            return None
        return self.position() or None

    # -- queries -------------------------------------------------------------------------

    def _page(
        self, where: list[str], params: list[Any], order: str, offset: int, limit: int
    ) -> tuple[list[Row], int]:
        clause = " AND ".join(where)
        with self.db.read() as c:
            c.execute(f"SELECT COUNT(*) FROM {self.table} WHERE {clause}", params)
            total = int(c.fetchone()[0])
            c.execute(
                f"SELECT doc FROM {self.table} WHERE {clause} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
            rows = [orjson.loads(doc) for (doc,) in c.fetchall()]
        return rows, total

    def _one(self, tenant: str, key: str) -> Row | None:
        with self.db.read() as c:
            c.execute(f"SELECT doc FROM {self.table} WHERE id=? AND tenant=?", (key, tenant))
            row = c.fetchone()
        return orjson.loads(row[0]) if row else None


class _Lost(Exception):
    """The tracking position moved under a batch: roll the batch back."""


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class SqlJobsView(SqlProjectionStore):
    """The `jobs` read model."""

    table = "cronsource_jobs"
    columns = (
        Column("tenant", "TEXT NOT NULL", lambda r: r["tenant"]),
        Column("application_id", "TEXT NOT NULL", lambda r: r["application"]["id"]),
        Column("name", "TEXT NOT NULL", lambda r: r["name"]),
        Column("description", "TEXT", lambda r: r.get("description")),
        Column("enabled", "INTEGER NOT NULL", lambda r: 1 if r["enabled"] else 0),
        Column("task_type", "TEXT NOT NULL", lambda r: r["taskType"]),
        Column("created_at", "TEXT NOT NULL", lambda r: r["createdAt"]),
    )
    indexes = ("tenant, created_at, id", "tenant, application_id, name")

    #: each tenant's total and enabled jobs, kept with the rows (a list's total and the stats
    #: read it instead of counting thousands of rows per request)
    counts_table = "cronsource_job_counts"

    def __init__(self, db: Database, name: str = "jobs") -> None:
        super().__init__(db, name)

    def create_tables(self) -> None:
        super().create_tables()
        with schema_change(self.db) as c:
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {self.counts_table} (tenant TEXT PRIMARY KEY, "
                "total BIGINT NOT NULL, enabled BIGINT NOT NULL)"
            )
            c.execute(f"SELECT 1 FROM {self.counts_table} LIMIT 1")
            if c.fetchone() is None:  # new, or a store from before the counts were kept
                c.execute(
                    f"INSERT INTO {self.counts_table} (tenant, total, enabled) "
                    f"SELECT tenant, COUNT(*), COALESCE(SUM(enabled), 0) FROM {self.table} "
                    "GROUP BY tenant"
                )

    def _touched(self, c: Any, upserts: list[tuple[Any, ...]], deletes: list[str]) -> set[str]:
        tenants = {row[1] for row in upserts}  # (id, tenant, ...): see `columns`
        for chunk in _chunks(deletes, CHUNK):
            marks = ", ".join("?" * len(chunk))
            c.execute(f"SELECT DISTINCT tenant FROM {self.table} WHERE id IN ({marks})", chunk)
            tenants.update(tenant for (tenant,) in c.fetchall())
        return tenants

    def _after_write(self, c: Any, touched: set[str]) -> None:
        for chunk in _chunks(sorted(touched), CHUNK):
            marks = ", ".join("?" * len(chunk))
            c.execute(f"DELETE FROM {self.counts_table} WHERE tenant IN ({marks})", chunk)
            c.execute(
                f"INSERT INTO {self.counts_table} (tenant, total, enabled) "
                f"SELECT tenant, COUNT(*), COALESCE(SUM(enabled), 0) FROM {self.table} "
                f"WHERE tenant IN ({marks}) GROUP BY tenant",
                chunk,
            )

    def _after_reset(self, c: Any) -> None:
        c.execute(f"DELETE FROM {self.counts_table}")

    def get_job(self, tenant: str, job_id: str) -> Row | None:
        return self._one(tenant, job_id)

    def counts(self, tenant: str) -> tuple[int, int]:
        """The tenant's jobs: total and enabled."""
        with self.db.read() as c:
            return self._counts(c, tenant)

    def _counts(self, c: Any, tenant: str) -> tuple[int, int]:
        c.execute(f"SELECT total, enabled FROM {self.counts_table} WHERE tenant=?", (tenant,))
        row = c.fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def enabled_job_ids(self) -> list[str]:
        """Every enabled job of every tenant (for an engine starting up)."""
        with self.db.read() as c:
            c.execute(f"SELECT id FROM {self.table} WHERE enabled=1")
            return [key for (key,) in c.fetchall()]

    def list_jobs(
        self,
        tenant: str,
        *,
        enabled: bool | None = None,
        task_type: str | None = None,
        application_id: str | None = None,
        q: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[Row], int]:
        where, params = ["tenant=?"], [tenant]
        if enabled is not None:
            where.append("enabled=?")
            params.append(1 if enabled else 0)
        if task_type is not None:
            where.append("task_type=?")
            params.append(task_type)
        if application_id is not None:
            where.append("application_id=?")
            params.append(application_id)
        if q:
            where.append(
                "(LOWER(name) LIKE ? ESCAPE '\\' OR LOWER(COALESCE(description, '')) LIKE ? ESCAPE '\\')"
            )
            params += [_like(q), _like(q)]
        if len(where) > 1:
            return self._page(where, params, "created_at, id", offset, limit)
        with self.db.read() as c:  # unfiltered: the kept count, rows and count in one snapshot
            total, _ = self._counts(c, tenant)
            c.execute(
                f"SELECT doc FROM {self.table} WHERE tenant=? ORDER BY created_at, id "
                "LIMIT ? OFFSET ?",
                (tenant, limit, offset),
            )
            return [orjson.loads(doc) for (doc,) in c.fetchall()], total


class SqlExecutionsView(SqlProjectionStore):
    """The `executions` read model."""

    table = "cronsource_executions"
    columns = (
        Column("tenant", "TEXT NOT NULL", lambda r: r["tenant"]),
        Column("job_id", "TEXT NOT NULL", lambda r: r["jobId"]),
        Column("status", "TEXT NOT NULL", lambda r: r["status"]),
        Column("scheduled_for", "TEXT NOT NULL", lambda r: r["scheduledFor"]),
        Column("finished_at", "TEXT", lambda r: r.get("finishedAt")),
        Column("duration_ms", "BIGINT", lambda r: r.get("durationMs")),
    )
    # every index costs each write: a job's history, the recent list, and unfinished runs
    indexes = (
        "tenant, job_id, scheduled_for",
        "tenant, scheduled_for",
        "status",
        "tenant, finished_at",
    )

    def __init__(self, db: Database, name: str = "executions") -> None:
        super().__init__(db, name)

    def get_execution(self, tenant: str, execution_id: str) -> Row | None:
        return self._one(tenant, execution_id)

    def window_stats(self, tenant: str, since: str) -> dict[str, Any]:
        """Outcomes of executions finished since `since`, and their duration percentiles."""
        where = "tenant=? AND finished_at>=?"
        with self.db.read() as c:
            c.execute(
                f"SELECT status, COUNT(*) FROM {self.table} WHERE {where} GROUP BY status",
                (tenant, since),
            )
            counts = dict(c.fetchall())
            c.execute(
                f"SELECT COUNT(*) FROM {self.table} WHERE {where} AND duration_ms IS NOT NULL",
                (tenant, since),
            )
            timed = int(c.fetchone()[0])
            percentiles: dict[str, int | None] = {}
            for name, p in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
                if not timed:
                    percentiles[name] = None
                    continue
                c.execute(
                    f"SELECT duration_ms FROM {self.table} WHERE {where} AND duration_ms IS NOT NULL "
                    "ORDER BY duration_ms LIMIT 1 OFFSET ?",
                    (tenant, since, max(0, min(timed - 1, int(p * timed + 0.5) - 1))),
                )
                percentiles[name] = int(c.fetchone()[0])
        return {
            "succeeded": int(counts.get("succeeded", 0)),
            "failed": int(counts.get("failed", 0)),
            "durationMs": percentiles,
        }

    def count_status(self, tenant: str | None, status: str) -> int:
        """Executions now in `status` (all tenants when `tenant` is None)."""
        with self.db.read() as c:
            if tenant is None:
                c.execute(f"SELECT COUNT(*) FROM {self.table} WHERE status=?", (status,))
            else:
                c.execute(
                    f"SELECT COUNT(*) FROM {self.table} WHERE tenant=? AND status=?",
                    (tenant, status),
                )
            return int(c.fetchone()[0])

    def prune(self, cutoffs: Mapping[str, str | None]) -> int:
        """Delete finished rows older than their status's cutoff; the log keeps them."""
        deleted = 0
        with self.db.write() as c:
            for status, cutoff in cutoffs.items():
                if cutoff is None:
                    continue
                c.execute(
                    f"DELETE FROM {self.table} WHERE status=? AND finished_at<?", (status, cutoff)
                )
                deleted += max(0, c.rowcount)
        return deleted

    def unfinished(self) -> list[Row]:
        """Executions of every tenant still pending or running."""
        with self.db.read() as c:
            c.execute(f"SELECT doc FROM {self.table} WHERE status IN ('pending', 'running')")
            return [orjson.loads(doc) for (doc,) in c.fetchall()]

    def list_executions(
        self,
        tenant: str,
        *,
        job_id: str | None = None,
        status: str | None = None,
        since: str | None = None,
        until: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[Row], int]:
        where, params = ["tenant=?"], [tenant]
        for column, op, value in (
            ("job_id", "=", job_id),
            ("status", "=", status),
            ("scheduled_for", ">=", since),
            ("scheduled_for", "<", until),
        ):
            if value is not None:
                where.append(f"{column}{op}?")
                params.append(value)
        return self._page(where, params, "scheduled_for DESC, id DESC", offset, limit)


class SqlLedgerView(SqlProjectionStore):
    """The `ledger` read model: per job, the last slot decided."""

    table = "cronsource_ledger"
    columns = (Column("tenant", "TEXT NOT NULL", lambda r: r["tenant"]),)

    def __init__(self, db: Database, name: str = "ledger") -> None:
        super().__init__(db, name)

    def decided_until(self) -> dict[str, str]:
        """Every job's last decided slot (ISO text), by job id."""
        with self.db.read() as c:
            c.execute(f"SELECT id, doc FROM {self.table}")
            return {key: orjson.loads(doc)["decidedUntil"] for key, doc in c.fetchall()}


class SqlSkipsView(SqlProjectionStore):
    """The `skips` read model: runs of skipped slots."""

    table = "cronsource_skips"
    columns = (
        Column("tenant", "TEXT NOT NULL", lambda r: r["tenant"]),
        Column("job_id", "TEXT NOT NULL", lambda r: r["jobId"]),
        Column("first_slot", "TEXT NOT NULL", lambda r: r["from"]),
        Column("last_slot", "TEXT NOT NULL", lambda r: r["to"]),
    )
    indexes = ("tenant, job_id, last_slot",)

    def __init__(self, db: Database, name: str = "skips") -> None:
        super().__init__(db, name)

    def skips_between(self, tenant: str, job_id: str, since: str, until: str) -> list[Row]:
        """Skip runs of a job that overlap [since, until), oldest first."""
        with self.db.read() as c:
            c.execute(
                f"SELECT doc FROM {self.table} WHERE tenant=? AND job_id=? AND last_slot>=? "
                "AND first_slot<? ORDER BY first_slot",
                (tenant, job_id, since, until),
            )
            return [orjson.loads(doc) for (doc,) in c.fetchall()]
