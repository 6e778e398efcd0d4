"""Benchmarks of the event-sourced core, each figure beside a baseline measured in the same run.

    python -m bench.core --store sqlite --store postgres

Prints one JSON object per measurement (and a table at the end). Run on purpose, never in CI.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent

from domain.execution import Execution, Trigger
from infrastructure.transcoder import OrjsonTranscoder
from interfaces.composition import Core, Settings

PG_URL = os.environ.get(
    "CRONSOURCE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
JOB = {
    "name": "bench", "pattern": "* * * * * *",
    "taskConfig": {"url": "https://example.com/hook", "method": "POST", "body": {"day": "${T:YYYY-MM-DD}"}},
}  # fmt: skip


def emit(**fields: Any) -> None:
    sys.stdout.write(orjson.dumps(fields).decode() + "\n")
    sys.stdout.flush()


@contextmanager
def store(kind: str) -> Iterator[str]:
    """A fresh store URL: a SQLite file in a temp dir, or a fresh PostgreSQL database."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="cronsource-bench-") as d:
            yield f"sqlite:///{d}/cronsource.db"
        return
    name = f"cronsource_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname=%s", (name,)
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')  # type: ignore[arg-type]


def new_core(url: str) -> Core:
    return Core(Settings(data_dir=Path(tempfile.gettempdir()), database_url=url))


def executions(core: Core, count: int, start: int = 0) -> list[Execution]:
    """`count` executions of one job, each with its three events (scheduled, started, succeeded)."""
    job_id = uuid.uuid4()
    snapshot = {"application": {"id": "bench"}, **JOB, "version": 1}
    out = []
    for i in range(start, start + count):
        at = T0 + timedelta(seconds=i)
        e = Execution.schedule(
            job_id, "bench", 1, snapshot, at, Trigger.CRON, "bench-node", "scheduler"
        )
        e.start("bench-node", at)
        e.succeed({"status": 200, "data": {"ok": True}}, at + timedelta(milliseconds=5))
        out.append(e)
    return out


# -- raw driver baselines -------------------------------------------------------------------


def raw_sqlite_insert(rows: list[StoredEvent], per_txn: int, path: Path) -> float:
    """Insert the same stored rows with plain sqlite3 (the library's table shape, WAL, FULL)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE raw_events (notification_id INTEGER PRIMARY KEY AUTOINCREMENT, originator_id TEXT, "
        "originator_version INTEGER, topic TEXT, state BLOB, UNIQUE (originator_id, originator_version))"
    )
    started = time.perf_counter()
    for i in range(0, len(rows), per_txn):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO raw_events (originator_id, originator_version, topic, state) VALUES (?,?,?,?)",
            [
                (str(r.originator_id), r.originator_version, r.topic, r.state)
                for r in rows[i : i + per_txn]
            ],
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def raw_postgres_insert(rows: list[StoredEvent], per_txn: int, url: str) -> float:
    """Insert the same stored rows with plain psycopg (pipelined executemany per transaction)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE raw_events (notification_id BIGSERIAL PRIMARY KEY, originator_id UUID, "
            "originator_version INTEGER, topic TEXT, state BYTEA, UNIQUE (originator_id, originator_version))"
        )
        conn.commit()
        started = time.perf_counter()
        for i in range(0, len(rows), per_txn):
            with conn.transaction(), conn.cursor() as c:
                c.executemany(
                    "INSERT INTO raw_events (originator_id, originator_version, topic, state) VALUES (%s,%s,%s,%s)",
                    [
                        (r.originator_id, r.originator_version, r.topic, r.state)
                        for r in rows[i : i + per_txn]
                    ],
                )
        return time.perf_counter() - started


# -- measurements ---------------------------------------------------------------------------


def bench_saves(kind: str, total: int) -> None:
    """Library saves (1 and 100 executions per transaction) against raw inserts of the same rows."""
    for per_save in (1, 100):
        n = total if per_save == 100 else max(300, total // 10)
        with store(kind) as url:
            core = new_core(url)
            batches = [executions(core, per_save, i * per_save) for i in range(n // per_save)]
            events = sum(len(list(e.pending_events)) for b in batches for e in b)
            rows = [
                core.jobs.mapper.to_stored_event(ev)
                for b in batches
                for e in b
                for ev in e.pending_events
            ]
            started = time.perf_counter()
            for batch in batches:
                core.jobs.record(*batch)
            library = time.perf_counter() - started
            per_txn = per_save * 3
            if kind == "sqlite":
                raw = raw_sqlite_insert(
                    rows, per_txn, Path(url.removeprefix("sqlite:///")).with_name("raw.db")
                )
            else:
                raw = raw_postgres_insert(rows, per_txn, url)
            core.close()
        emit(
            bench="save", store=kind, aggregates_per_txn=per_save, events=events,
            library_events_per_s=round(events / library), raw_events_per_s=round(events / raw),
            ratio_library_to_raw_time=round(library / raw, 2),
        )  # fmt: skip


def fill(core: Core, total_events: int) -> int:
    """Write `total_events` (as executions of 3 events, 100 per transaction); return the head."""
    written = 0
    while written < total_events:
        batch = executions(core, 100, written // 3)
        core.jobs.record(*batch)
        written += 300
    return core.jobs.recorder.max_notification_id() or 0


def bench_replay(kind: str, total: int) -> None:
    """Read and decode the whole log; rebuild every read model from it."""
    with store(kind) as url:
        core = new_core(url)
        head = fill(core, total)
        recorder, mapper = core.jobs.recorder, core.jobs.mapper
        started, position, decoded = time.perf_counter(), 0, 0
        while position < head:
            notifications = recorder.select_notifications(
                start=position, limit=5000, inclusive_of_start=False
            )
            for n in notifications:
                mapper.to_domain_event(n)
            decoded += len(notifications)
            position = notifications[-1].id
        read = time.perf_counter() - started
        emit(bench="replay-read", store=kind, events=decoded, events_per_s=round(decoded / read))
        for name, runner in core.projections.runners.items():
            started = time.perf_counter()
            runner.rebuild()
            elapsed = time.perf_counter() - started
            emit(bench="projection-catch-up", store=kind, projection=name, events=head,
                 seconds=round(elapsed, 2), events_per_s=round(head / elapsed))  # fmt: skip
        started = time.perf_counter()
        core.projections.rebuild_all()
        elapsed = time.perf_counter() - started
        emit(bench="rebuild-all", store=kind, events=head, seconds=round(elapsed, 2),
             events_per_s=round(head / elapsed))  # fmt: skip
        core.close()


def bench_transcoder(count: int) -> None:
    """orjson (ours) against the library's default JSON transcoder, on the same events."""
    core_events = [ev for e in executions_without_core(count) for ev in e.pending_events]
    results = {}
    for name, transcoder in (
        ("orjson", OrjsonTranscoder()),
        ("default-json", _default_transcoder()),
    ):
        mapper: Mapper[Any] = Mapper(transcoder=transcoder)
        started = time.perf_counter()
        stored = [mapper.to_stored_event(e) for e in core_events]
        encode = time.perf_counter() - started
        started = time.perf_counter()
        for s in stored:
            mapper.to_domain_event(s)
        decode = time.perf_counter() - started
        results[name] = (encode, decode)
        emit(bench="transcoder", transcoder=name, events=len(core_events),
             encode_us=round(encode / len(core_events) * 1e6, 2), decode_us=round(decode / len(core_events) * 1e6, 2))  # fmt: skip
    (oe, od), (de, dd) = results["orjson"], results["default-json"]
    emit(
        bench="transcoder-ratio",
        encode_speedup=round(de / oe, 2),
        decode_speedup=round(dd / od, 2),
    )


def executions_without_core(count: int) -> list[Execution]:
    return executions(None, count)  # type: ignore[arg-type]


def _default_transcoder() -> JSONTranscoder:
    from eventsourcing.persistence import DatetimeAsISO, UUIDAsHex

    t = JSONTranscoder()
    t.register(UUIDAsHex())
    t.register(DatetimeAsISO())
    return t


def bench_visibility(kind: str, writes: int) -> None:
    """From a command's commit to its row in the read model, with projections following live."""
    with store(kind) as url:
        core = new_core(url)
        core.start()
        runner = core.projections["jobs"]
        latencies = []
        for i in range(writes):
            started = time.perf_counter()
            written = core.jobs.create_job("bench", {**JOB, "name": f"job-{i}"}, by="bench")
            committed = time.perf_counter()
            assert runner.wait_for(written.position, timeout=10)
            latencies.append((time.perf_counter() - committed) * 1000)
            _ = started
        core.close()
    latencies.sort()
    emit(bench="write-visible", store=kind, writes=writes,
         p50_ms=round(statistics.median(latencies), 2),
         p99_ms=round(latencies[int(len(latencies) * 0.99) - 1], 2), max_ms=round(latencies[-1], 2))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", action="append", choices=["sqlite", "postgres"], default=None)
    parser.add_argument(
        "--save-events", type=int, default=60_000, help="events for the save benchmark"
    )
    parser.add_argument(
        "--replay-events", type=int, default=300_000, help="events in the replayed log"
    )
    parser.add_argument("--writes", type=int, default=500, help="writes timed to visibility")
    parser.add_argument(
        "--only", choices=["save", "replay", "transcoder", "visibility"], action="append"
    )
    args = parser.parse_args()
    stores = args.store or ["sqlite", "postgres"]
    only = set(args.only or ["save", "replay", "transcoder", "visibility"])
    emit(
        bench="host",
        cpus=os.cpu_count(),
        load_1m=round(os.getloadavg()[0], 2),
        started=datetime.now(UTC).isoformat(),
    )
    if "transcoder" in only:
        bench_transcoder(20_000)
    for kind in stores:
        if "save" in only:
            bench_saves(kind, args.save_events // 3)
        if "visibility" in only:
            bench_visibility(kind, args.writes)
        if "replay" in only:
            bench_replay(kind, args.replay_events)


if __name__ == "__main__":
    main()
