"""Where the event log and the read models live: a SQLite file by default, or PostgreSQL."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from infrastructure.read_models import (
    SqlExecutionsView,
    SqlJobsView,
    SqlLedgerView,
    SqlProjectionStore,
    SqlSkipsView,
)
from infrastructure.sql import Database, PostgresDatabase, SQLiteDatabase
from infrastructure.webhook_store import SqlWebhooksView

TRANSCODER = "infrastructure.transcoder:OrjsonTranscoder"
FAST_CIPHER = "eventsourcing.cryptography:AESCipher"  # on `cryptography`, not pycryptodome


class StoreConfigError(ValueError):
    """The configured store cannot be used; the message says which setting and why."""


@dataclass(frozen=True, slots=True)
class StoreUrl:
    """A parsed `CRONSOURCE_DATABASE_URL`: `sqlite:///path` or `postgresql://…[?schema=s]`."""

    kind: str
    sqlite_path: Path | None = None
    conninfo: str | None = None
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""
    dbname: str = "postgres"
    schema: str | None = None

    @classmethod
    def parse(cls, url: str) -> StoreUrl:
        """Read a store URL, refusing anything else with a message naming the setting."""
        parts = urlsplit(url)
        if parts.scheme == "sqlite":
            path = unquote(parts.path)
            if parts.netloc or not path or path == "/":
                raise StoreConfigError(
                    f"CRONSOURCE_DATABASE_URL: {url!r} must look like sqlite:///relative/file.db "
                    "or sqlite:////absolute/file.db"
                )
            return cls(
                "sqlite", sqlite_path=Path(path[1:]) if path.startswith("/") else Path(path)
            )
        if parts.scheme in ("postgresql", "postgres"):
            query = parse_qs(parts.query)
            schema = query.pop("schema", [None])[0]
            if schema is not None and not schema.replace("_", "").isalnum():
                raise StoreConfigError(
                    f"CRONSOURCE_DATABASE_URL: schema {schema!r} must be a plain name"
                )
            conninfo = parts._replace(scheme="postgresql", query="").geturl()
            return cls(
                "postgres",
                conninfo=conninfo,
                host=parts.hostname or "127.0.0.1",
                port=parts.port or 5432,
                user=unquote(parts.username or "postgres"),
                password=unquote(parts.password or ""),
                dbname=(parts.path or "/postgres")[1:] or "postgres",
                schema=schema,
            )
        raise StoreConfigError(
            f"CRONSOURCE_DATABASE_URL: {url!r} is neither sqlite:///… nor postgresql://…"
        )

    @property
    def views_path(self) -> Path:
        """SQLite keeps read models in a file of their own beside the log."""
        assert self.sqlite_path is not None
        return self.sqlite_path.with_name(self.sqlite_path.stem + "-views.db")

    def event_store_env(self, cipher_key: str | None = None) -> dict[str, str]:
        """The eventsourcing library's settings for this store."""
        env = {"TRANSCODER_TOPIC": TRANSCODER}
        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            env.update(
                PERSISTENCE_MODULE="eventsourcing.sqlite",
                SQLITE_DBNAME=str(self.sqlite_path),
                SQLITE_LOCK_TIMEOUT="30",
            )
        else:
            env.update(
                PERSISTENCE_MODULE="eventsourcing.postgres",
                POSTGRES_DBNAME=self.dbname,
                POSTGRES_HOST=self.host,
                POSTGRES_PORT=str(self.port),
                POSTGRES_USER=self.user,
                POSTGRES_PASSWORD=self.password,
                POSTGRES_SCHEMA=self.schema or "",
                POSTGRES_CONNECT_TIMEOUT="10",
                POSTGRES_LOCK_TIMEOUT="5",
            )
        if cipher_key:
            check_cipher_key(cipher_key)
            env.update(CIPHER_TOPIC=FAST_CIPHER, CIPHER_KEY=cipher_key)
        # the application's name prefixes the library's keys, and prefixed keys win over
        # plain ones: set both forms, so a stray CRONSOURCE_* variable cannot redirect the log
        return {**env, **{f"CRONSOURCE_{k}": v for k, v in env.items()}}

    def views_database(self) -> Database:
        """The database that holds the read models."""
        if self.kind == "sqlite":
            return SQLiteDatabase(self.views_path)
        assert self.conninfo is not None
        return PostgresDatabase(self.conninfo, self.schema)


def check_cipher_key(key: str) -> None:
    """An AES key: 16, 24 or 32 random bytes, base64-encoded."""
    try:
        raw = base64.b64decode(key.encode(), validate=True)
    except (binascii.Error, ValueError):
        raise StoreConfigError(
            "CRONSOURCE_CIPHER_KEY: must be base64 (e.g. 32 random bytes)"
        ) from None
    if len(raw) not in (16, 24, 32):
        raise StoreConfigError("CRONSOURCE_CIPHER_KEY: must decode to 16, 24 or 32 bytes")


def read_models(db: Database) -> dict[str, SqlProjectionStore]:
    """The read models this release keeps, by projection name, created if missing."""
    return {
        "jobs": SqlJobsView(db),
        "executions": SqlExecutionsView(db),
        "ledger": SqlLedgerView(db),
        "skips": SqlSkipsView(db),
        "webhooks": SqlWebhooksView(db),
    }
