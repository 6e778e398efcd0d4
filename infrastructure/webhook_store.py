"""Webhook read models in SQL (SQLite or PostgreSQL): the subscriptions, and delivery state.

Delivery state is one cursor per subscription (the log position up to which every matching
event has been delivered or given up on, plus the run of failures and the next retry) and
one row per delivery with its latest attempts. A batch's rows and the cursor's move commit
in one transaction, guarded by the position the batch started from and the lease (held by
one process, and not lapsed): a crash repeats a delivery at worst, it never skips one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from application.webhooks import Cursor
from infrastructure.read_models import Column, SqlProjectionStore
from infrastructure.sql import Database, SQLiteDatabase, add_column, schema_change

Row = dict[str, Any]
CURSORS = "cronsource_webhook_cursors"
DELIVERIES = "cronsource_webhook_deliveries"


class SqlWebhooksView(SqlProjectionStore):
    """The `webhooks` read model: one row per live subscription (no secret)."""

    table = "cronsource_webhooks"
    columns = (
        Column("tenant", "TEXT NOT NULL", lambda r: r["tenant"]),
        Column("enabled", "INTEGER NOT NULL", lambda r: 1 if r["enabled"] else 0),
        Column("created_at", "TEXT NOT NULL", lambda r: r["createdAt"]),
    )
    indexes = ("tenant, created_at, id",)

    def __init__(self, db: Database, name: str = "webhooks") -> None:
        super().__init__(db, name)

    def get_webhook(self, tenant: str, webhook_id: str) -> Row | None:
        """One subscription of the tenant."""
        return self._one(tenant, webhook_id)

    def list_webhooks(self, tenant: str, offset: int, limit: int) -> tuple[list[Row], int]:
        """The tenant's subscriptions, oldest first."""
        return self._page(["tenant=?"], [tenant], "created_at, id", offset, limit)

    def enabled_versions(self) -> dict[str, int]:
        """Every enabled subscription of every tenant and its version (for the dispatcher)."""
        with self.db.read() as c:
            c.execute(f"SELECT id, doc FROM {self.table} WHERE enabled=1")
            return {key: int(orjson.loads(doc)["version"]) for key, doc in c.fetchall()}


class SqlDeliveryStore:
    """Cursors and delivery records of every subscription."""

    def __init__(self, db: Database) -> None:
        self.db = db
        with schema_change(db) as c:
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {CURSORS} (subscription_id TEXT PRIMARY KEY, "
                "tenant TEXT NOT NULL, position BIGINT NOT NULL, seq BIGINT NOT NULL, "
                "failures INTEGER NOT NULL, next_attempt_at TEXT, owner TEXT, lease_until TEXT)"
            )
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {DELIVERIES} (id TEXT PRIMARY KEY, "
                "subscription_id TEXT NOT NULL, tenant TEXT NOT NULL, seq BIGINT NOT NULL, "
                "position BIGINT NOT NULL, status TEXT NOT NULL, redelivery INTEGER NOT NULL, "
                "doc TEXT NOT NULL, updated_at TEXT)"
            )
            _add_updated_at(db, c)
            c.execute(f"CREATE INDEX IF NOT EXISTS {DELIVERIES}_i2 ON {DELIVERIES} (updated_at)")
            c.execute(
                f"CREATE INDEX IF NOT EXISTS {DELIVERIES}_i0 ON {DELIVERIES} "
                "(subscription_id, seq)"
            )
            c.execute(
                f"CREATE INDEX IF NOT EXISTS {DELIVERIES}_i1 ON {DELIVERIES} "
                "(subscription_id, redelivery, status, seq)"
            )

    # -- the dispatcher --------------------------------------------------------------------

    def claim(
        self, subscription_id: str, tenant: str, start_after: int, owner: str, now: str,
        until: str,
    ) -> Cursor | None:  # fmt: skip
        """Take or renew the subscription's lease; its cursor (made at `start_after` if new),
        or None while another node holds the lease."""
        with self.db.write() as c:
            _ensure_cursor(c, subscription_id, tenant, start_after)
            c.execute(
                f"UPDATE {CURSORS} SET owner=?, lease_until=? WHERE subscription_id=? AND "
                "(owner IS NULL OR owner=? OR lease_until IS NULL OR lease_until<?)",
                (owner, until, subscription_id, owner, now),
            )
            if c.rowcount != 1:
                return None
            c.execute(
                f"SELECT position, failures, next_attempt_at FROM {CURSORS} "
                "WHERE subscription_id=?",
                (subscription_id,),
            )
            position, failures, next_attempt_at = c.fetchone()
        return Cursor(int(position), int(failures), next_attempt_at)

    def renew(self, subscription_id: str, owner: str, now: str, until: str) -> bool:
        """Extend the lease `owner` holds, if it still holds it (it has not lapsed)."""
        with self.db.write() as c:
            c.execute(
                f"UPDATE {CURSORS} SET lease_until=? WHERE subscription_id=? AND owner=? AND "
                "lease_until>=?",
                (until, subscription_id, owner, now),
            )
            return bool(c.rowcount == 1)

    def load(self, ids: Iterable[str]) -> dict[str, Row]:
        """Delivery rows by id."""
        ids = list(ids)
        if not ids:
            return {}
        with self.db.read() as c:
            marks = ", ".join("?" * len(ids))
            c.execute(f"SELECT id, doc FROM {DELIVERIES} WHERE id IN ({marks})", ids)
            return {key: orjson.loads(doc) for key, doc in c.fetchall()}

    def commit(
        self, subscription_id: str, tenant: str, owner: str, expected: int, cursor: Cursor,
        rows: list[Row], now: str, lease_until: str,
    ) -> bool:  # fmt: skip
        """Write delivery rows and move the cursor from `expected`, in one transaction, if
        `owner` still holds a valid lease (renewed to `lease_until`); False (writing nothing)
        when another node moved the cursor or the lease lapsed."""
        with self.db.write() as c:
            c.execute(
                f"UPDATE {CURSORS} SET position=?, failures=?, next_attempt_at=?, "
                "lease_until=?, seq=seq+? WHERE subscription_id=? AND position=? AND owner=? "
                "AND lease_until>=? RETURNING seq",
                (cursor.position, cursor.failures, cursor.next_attempt_at, lease_until,
                 len(rows), subscription_id, expected, owner, now),
            )  # fmt: skip
            returned = c.fetchone()
            if returned is None:
                return False
            self._upsert(c, subscription_id, tenant, int(returned[0]) - len(rows), rows)
        return True

    def _upsert(
        self, c: Any, subscription_id: str, tenant: str, base: int, rows: list[Row]
    ) -> None:
        for i, row in enumerate(rows, start=1):
            row.setdefault("seq", base + i)  # a retried delivery keeps its place
            c.execute(
                f"INSERT INTO {DELIVERIES} (id, subscription_id, tenant, seq, position, status, "
                "redelivery, doc, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET status=excluded.status, doc=excluded.doc, "
                "updated_at=excluded.updated_at",
                (row["id"], subscription_id, tenant, row["seq"], row["position"], row["status"],
                 1 if row["redelivery"] else 0, orjson.dumps(row).decode(), row["updatedAt"]),
            )  # fmt: skip

    def add(self, subscription_id: str, tenant: str, start_after: int, rows: list[Row]) -> None:
        """Queue redeliveries (the cursor is made if the dispatcher has not yet)."""
        with self.db.write() as c:
            _ensure_cursor(c, subscription_id, tenant, start_after)
            c.execute(
                f"UPDATE {CURSORS} SET seq=seq+? WHERE subscription_id=? RETURNING seq",
                (len(rows), subscription_id),
            )
            top = int(c.fetchone()[0])
            self._upsert(c, subscription_id, tenant, top - len(rows), rows)

    def save(self, subscription_id: str, tenant: str, row: Row) -> None:
        """Write one delivery row as it now is (a redelivery's attempt)."""
        with self.db.write() as c:
            self._upsert(c, subscription_id, tenant, 0, [row])

    def pending_redeliveries(self, subscription_id: str, limit: int) -> list[Row]:
        """Queued redeliveries, oldest first."""
        with self.db.read() as c:
            c.execute(
                f"SELECT doc FROM {DELIVERIES} WHERE subscription_id=? AND redelivery=1 AND "
                "status='pending' ORDER BY seq LIMIT ?",
                (subscription_id, limit),
            )
            return [orjson.loads(doc) for (doc,) in c.fetchall()]

    def start_all_at(self, position: int) -> int:
        """Give every subscription without a cursor one at `position` (after an import, so
        events an earlier store delivered are not sent again); the cursors made."""
        with self.db.write() as c:
            c.execute(
                f"INSERT INTO {CURSORS} (subscription_id, tenant, position, seq, failures) "
                f"SELECT id, tenant, ?, 0, 0 FROM {SqlWebhooksView.table} WHERE true "
                "ON CONFLICT (subscription_id) DO NOTHING",
                (position,),
            )
            return int(c.rowcount)

    def prune(self, before: str) -> int:
        """Delete finished deliveries (succeeded or failed) last changed before `before`;
        the number deleted. Pending and retrying ones stay, whatever their age."""
        with self.db.write() as c:
            c.execute(
                f"DELETE FROM {DELIVERIES} WHERE updated_at<? AND status IN ('succeeded', "
                "'failed')",
                (before,),
            )
            return int(c.rowcount)

    # -- queries ---------------------------------------------------------------------------

    def state(self, subscription_id: str) -> Row | None:
        """Where delivery of a subscription stands."""
        with self.db.read() as c:
            c.execute(
                f"SELECT position, failures, next_attempt_at FROM {CURSORS} "
                "WHERE subscription_id=?",
                (subscription_id,),
            )
            row = c.fetchone()
        if row is None:
            return None
        return {"position": int(row[0]), "consecutiveFailures": int(row[1]),
                "nextAttemptAt": row[2]}  # fmt: skip

    def list_deliveries(
        self, tenant: str, subscription_id: str, status: str | None, offset: int, limit: int
    ) -> tuple[list[Row], int]:
        """A subscription's deliveries, newest first."""
        where, params = "tenant=? AND subscription_id=?", [tenant, subscription_id]
        if status is not None:
            where += " AND status=?"
            params.append(status)
        with self.db.read() as c:
            c.execute(f"SELECT COUNT(*) FROM {DELIVERIES} WHERE {where}", params)
            total = int(c.fetchone()[0])
            c.execute(
                f"SELECT doc FROM {DELIVERIES} WHERE {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
            return [orjson.loads(doc) for (doc,) in c.fetchall()], total

    def get_delivery(self, tenant: str, subscription_id: str, delivery_id: str) -> Row | None:
        """One delivery of the tenant's subscription."""
        with self.db.read() as c:
            c.execute(
                f"SELECT doc FROM {DELIVERIES} WHERE id=? AND tenant=? AND subscription_id=?",
                (delivery_id, tenant, subscription_id),
            )
            row = c.fetchone()
        return orjson.loads(row[0]) if row else None


def _add_updated_at(db: Database, c: Any) -> None:
    """Add the `updated_at` column to a deliveries table made before it existed (filled from
    each row's document), so retention can prune it."""
    if add_column(db, c, DELIVERIES, "updated_at", "TEXT"):
        updated_at = (
            "json_extract(doc, '$.updatedAt')"
            if isinstance(db, SQLiteDatabase)
            else "doc::json->>'updatedAt'"
        )
        c.execute(f"UPDATE {DELIVERIES} SET updated_at={updated_at}")


def _ensure_cursor(c: Any, subscription_id: str, tenant: str, start_after: int) -> None:
    """The subscription's cursor row, made at `start_after` if it has none yet."""
    c.execute(
        f"INSERT INTO {CURSORS} (subscription_id, tenant, position, seq, failures) "
        "VALUES (?, ?, ?, 0, 0) ON CONFLICT (subscription_id) DO NOTHING",
        (subscription_id, tenant, start_after),
    )
