"""Which failures of a store mean it cannot be used right now (its disk full or read-only, the
server away or busy) rather than a bug: callers answer those "try again later", without a
stack. The event store's library wraps the driver's error, so the cause chain is read."""

from __future__ import annotations

import sqlite3

import psycopg
from eventsourcing.persistence import PersistenceError

#: every error a store can raise; `unavailable` tells which of them are the store's state
STORE_ERRORS: tuple[type[Exception], ...] = (PersistenceError, sqlite3.Error, psycopg.Error)

_SQLITE = (  # by the extended result code's name (Python 3.11+ exposes it)
    ("SQLITE_FULL", "its disk is full"),
    ("SQLITE_READONLY", "it is read-only"),
    ("SQLITE_IOERR", "its disk failed a read or write (I/O error; a file system the kernel "
                     "remounted read-only fails so)"),
    ("SQLITE_BUSY", "it is locked by another writer"),
    ("SQLITE_LOCKED", "it is locked by another writer"),
    ("SQLITE_CANTOPEN", "its files cannot be opened"),
    ("SQLITE_NOMEM", "it is out of memory"),
)  # fmt: skip


def unavailable(error: BaseException) -> str | None:
    """Why the store cannot be used now, if that is what `error` says; None for anything
    else (a constraint, a bad statement: a bug)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, sqlite3.Error):
            name = getattr(seen, "sqlite_errorname", "") or ""
            return next((why for prefix, why in _SQLITE if name.startswith(prefix)), None)
        if isinstance(seen, psycopg.errors.DiskFull):
            return "the database server's disk is full"
        if isinstance(seen, psycopg.errors.ReadOnlySqlTransaction):
            return "the database is read-only (a standby?)"
        if isinstance(seen, psycopg.OperationalError):  # the pool's timeout is one too
            return "the database server cannot be reached or is overloaded"
        seen = seen.__cause__
    return None
