"""Which engine nodes are alive: each writes when it was last seen; an execution left by a
node not seen for a while is taken over by the others. Operational state, not history: it
lives beside the read models and is never part of the event log."""

from __future__ import annotations

from infrastructure.sql import Database, schema_change

TABLE = "cronsource_nodes"


class SqlNodes:
    """The last heartbeat of every engine node (instants as ISO text, UTC)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        with schema_change(db) as c:
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (node TEXT PRIMARY KEY, seen_at TEXT NOT NULL)"
            )

    def beat(self, node: str, at: str) -> None:
        """`node` is alive at `at`."""
        with self.db.write() as c:
            c.execute(
                f"INSERT INTO {TABLE} (node, seen_at) VALUES (?, ?) "
                "ON CONFLICT (node) DO UPDATE SET seen_at=excluded.seen_at",
                (node, at),
            )

    def last_seen(self) -> dict[str, str]:
        """Every node's last heartbeat."""
        with self.db.read() as c:
            c.execute(f"SELECT node, seen_at FROM {TABLE}")
            return dict(c.fetchall())
