"""Several processes starting at once on a fresh store: each one starts (no DDL collision)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
START = (
    "import sys; from pathlib import Path; from interfaces.composition import Core, Settings; "
    "Core(Settings(data_dir=Path(sys.argv[2]), database_url=sys.argv[1])).close(); print('started')"
)


def test_processes_starting_together_on_a_fresh_store_all_start(
    database_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", START, database_url, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) for p in procs]

    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0 and out.strip() == "started", err


def test_a_node_starts_while_the_other_nodes_writers_hold_the_event_table(
    make_core: Any, database_url: str
) -> None:
    """A node joining a busy store creates no tables: it must not wait for the lock that the
    other nodes' group commits take on the event table (its wait ran past the 5 s lock
    timeout, and the node exited)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the event table's lock is PostgreSQL's (SQLite locks the whole file)")
    first = make_core()
    doc = {"name": "j", "pattern": "0 0 * * *", "taskConfig": {"url": "https://example.com/"}}
    first.jobs.create_job("acme", doc, by="ana")
    conninfo, _, query = database_url.partition("?")
    schema = query.removeprefix("schema=")
    with psycopg.connect(conninfo, options=f"-c search_path={schema}") as writer:
        writer.execute("LOCK TABLE cronsource_events IN EXCLUSIVE MODE")  # held: no commit
        pool = ThreadPoolExecutor(1)  # a hang guard: it waited for the writer's lock
        try:
            joining = pool.submit(make_core).result(timeout=60)
        finally:
            pool.shutdown(wait=False)  # (the lock goes with the writer, below)
        assert (
            joining.jobs.recorder.max_notification_id()
            == first.jobs.recorder.max_notification_id()
        )
        writer.rollback()
