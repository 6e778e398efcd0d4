"""Which engine nodes are alive: each writes when it was last seen; an execution left by a
node not seen for a while is taken over by the others. Operational state, not history: it
lives beside the read models and is never part of the event log."""

from __future__ import annotations

from infrastructure.sql import Database, SQLiteDatabase, add_column, schema_change

TABLE = "cronsource_nodes"
# the database's own clock, as ISO text (UTC, milliseconds) like `seen_at`
SQLITE_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
POSTGRES_NOW = "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"


class SqlNodes:
    """The last heartbeat of every engine node (instants as ISO text, UTC): by the node's
    clock, and by the database's at the same write, so skewed clocks can be found."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.now_sql = SQLITE_NOW if isinstance(db, SQLiteDatabase) else POSTGRES_NOW
        with schema_change(db) as c:
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (node TEXT PRIMARY KEY, seen_at TEXT NOT NULL, "
                "db_seen_at TEXT)"
            )
            add_column(db, c, TABLE, "db_seen_at", "TEXT")

    def beat(self, node: str, at: str) -> None:
        """`node` is alive at `at`."""
        with self.db.write() as c:
            c.execute(
                f"INSERT INTO {TABLE} (node, seen_at, db_seen_at) VALUES (?, ?, {self.now_sql}) "
                "ON CONFLICT (node) DO UPDATE SET seen_at=excluded.seen_at, "
                "db_seen_at=excluded.db_seen_at",
                (node, at),
            )

    def last_seen(self) -> dict[str, str]:
        """Every node's last heartbeat."""
        with self.db.read() as c:
            c.execute(f"SELECT node, seen_at FROM {TABLE}")
            return dict(c.fetchall())

    def clocks(self) -> tuple[str, dict[str, tuple[str, str | None]]]:
        """The database's time now, and each node's last heartbeat by its own clock and by
        the database's (None for a beat written before the database's time was kept)."""
        with self.db.read() as c:
            c.execute(f"SELECT {self.now_sql}")
            now = c.fetchone()[0]
            c.execute(f"SELECT node, seen_at, db_seen_at FROM {TABLE}")
            return now, {node: (seen, db_seen) for node, seen, db_seen in c.fetchall()}
