"""Whole-log work on the event store's table that the library has no call for: counting a
stretch of the log, and loading an export into an empty store with each event at the
position it had (webhook subscriptions and clients' cursors name log positions)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from eventsourcing.persistence import AggregateRecorder, Notification
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.sql import SQL, Identifier, Literal

from application.log_archive import StoreNotEmpty

NOT_EMPTY = (
    "the store already holds events (up to position {head}): import only into an empty "
    "store (a new CRONSOURCE_DATABASE_URL, or a new PostgreSQL schema)"
)


def count_events(recorder: AggregateRecorder, after: int, upto: int) -> int:
    """How many events lie at positions (after, upto]."""
    if isinstance(recorder, SQLiteApplicationRecorder):
        with recorder.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT COUNT(*) FROM {recorder.events_table_name} WHERE rowid>? AND rowid<=?",
                (after, upto),
            )
            return int(c.fetchone()[0])
    if isinstance(recorder, PostgresApplicationRecorder):
        statement = SQL(
            "SELECT COUNT(*) AS n FROM {} WHERE notification_id>%s AND notification_id<=%s"
        ).format(_table(recorder))
        with recorder.datastore.transaction(commit=False) as curs:
            curs.execute(statement, (after, upto))
            row: Any = curs.fetchone()
            return int(row["n"])
    raise TypeError(f"no event table for {type(recorder).__name__}")


class SqlLogLoader:
    """Loads an export into an empty SQLite or PostgreSQL event store in one transaction."""

    def __init__(self, recorder: AggregateRecorder) -> None:
        if not isinstance(recorder, SQLiteApplicationRecorder | PostgresApplicationRecorder):
            raise TypeError(f"no event table for {type(recorder).__name__}")
        self.recorder = recorder

    def load(self, batches: Iterable[Sequence[Notification]]) -> int:
        """Write every batch, then commit; anything raised on the way rolls it all back."""
        if isinstance(self.recorder, SQLiteApplicationRecorder):
            return self._sqlite(self.recorder, batches)
        return self._postgres(self.recorder, batches)

    @staticmethod
    def _sqlite(recorder: SQLiteApplicationRecorder, batches: Iterable[Sequence[Any]]) -> int:
        table, written = recorder.events_table_name, 0
        with recorder.datastore.transaction(commit=True) as c:
            c.execute(f"SELECT MAX(rowid) FROM {table}")
            head = c.fetchone()[0]
            if head is not None:
                raise StoreNotEmpty(NOT_EMPTY.format(head=head))
            for batch in batches:
                c.executemany(
                    f"INSERT INTO {table} (rowid, originator_id, originator_version, topic, "
                    "state) VALUES (?, ?, ?, ?, ?)",
                    [(n.id, n.originator_id.hex, n.originator_version, n.topic, n.state)
                     for n in batch],
                )  # fmt: skip
                written += len(batch)
        return written

    @staticmethod
    def _postgres(recorder: PostgresApplicationRecorder, batches: Iterable[Sequence[Any]]) -> int:
        table, written = _table(recorder), 0
        with recorder.datastore.transaction(commit=True) as curs:
            for statement in recorder.lock_table_statements:  # as every writer does
                curs.execute(statement)
            curs.execute(SQL("SELECT MAX(notification_id) AS head FROM {}").format(table))
            row: Any = curs.fetchone()
            if row["head"] is not None:
                raise StoreNotEmpty(NOT_EMPTY.format(head=row["head"]))
            columns = SQL(
                "COPY {} (notification_id, originator_id, originator_version, topic, state) "
                "FROM STDIN"
            ).format(table)
            head = 0
            for batch in batches:
                with curs.copy(columns) as copy:
                    for n in batch:
                        copy.write_row(
                            (n.id, n.originator_id, n.originator_version, n.topic, n.state)
                        )
                written += len(batch)
                head = batch[-1].id if batch else head
            if written:  # the next event written goes after the last one loaded
                name = Identifier(recorder.datastore.schema, recorder.events_table_name)
                curs.execute(
                    SQL("SELECT setval(pg_get_serial_sequence({}, 'notification_id'), %s)").format(
                        Literal(name.as_string(curs))
                    ),
                    (head,),
                )
        return written


def _table(recorder: PostgresApplicationRecorder) -> Any:
    return SQL("{}.{}").format(
        Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name)
    )
