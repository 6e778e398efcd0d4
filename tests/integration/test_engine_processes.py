"""Engines as real `cronsource engine` processes: SIGKILL, SIGTERM, and three nodes on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from interfaces.composition import Core
from tests.engine_support import wait_for
from tests.target_server import Target, serving

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def engine_process(
    database_url: str, data_dir: Path, node: str
) -> Iterator[subprocess.Popen[str]]:
    """`cronsource engine` in its own process, ready when it says so."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CRONSOURCE_DATABASE_URL": database_url,
        "CRONSOURCE_DATA_DIR": str(data_dir),
        "CRONSOURCE_NODE": node,
        "CRONSOURCE_ALLOW_TARGETS": "127.0.0.0/8",
        "CRONSOURCE_PROJECTION_POLL_SECONDS": "0.1",
        "CRONSOURCE_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "interfaces.cli", "engine"],
        stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "running" in line, f"the engine did not start: {line!r}"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)


def events_of(core: Core, aggregate_id: Any) -> list[str]:
    return [type(e).__name__ for e in core.jobs.events.get(aggregate_id)]


def held_job(core: Core, target: Target, retries: int) -> Any:
    target.hold["/held"] = threading.Event()
    doc = {
        "name": "held", "pattern": "0 0 1 1 *",
        "taskConfig": {"url": target.url("/held"), "timeout": 60_000},
        "retry": {"maxRetries": retries, "retryDelaySeconds": 0},
    }  # fmt: skip
    return core.jobs.create_job("acme", doc, by="ana").id


@pytest.fixture
def target() -> Iterator[Target]:
    with serving() as t:
        yield t


@pytest.fixture
def core(make_core: Any) -> Core:
    return make_core(allow_targets="127.0.0.0/8")


def test_a_killed_engines_running_execution_is_interrupted_and_retried(
    core: Core, target: Target, database_url: str, tmp_path: Path
) -> None:
    job_id = held_job(core, target, retries=1)
    with engine_process(database_url, tmp_path, "node-a") as proc:
        execution_id = core.jobs.trigger_job("acme", job_id, by="ana").id
        wait_for(lambda: target.at("/held"), what="the call to arrive")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    target.hold["/held"].set()

    with engine_process(database_url, tmp_path, "node-a"):
        wait_for(lambda: events_of(core, execution_id)[-1] == "Succeeded", what="the retry")

    assert events_of(core, execution_id) == [
        "Scheduled", "Started", "AttemptFailed", "Started", "Succeeded",
    ]  # fmt: skip
    interrupted = list(core.jobs.events.get(execution_id))[2]
    assert interrupted.error["code"] == "INTERRUPTED"


def test_a_killed_engines_execution_without_retries_ends_interrupted(
    core: Core, target: Target, database_url: str, tmp_path: Path
) -> None:
    job_id = held_job(core, target, retries=0)
    with engine_process(database_url, tmp_path, "node-a") as proc:
        execution_id = core.jobs.trigger_job("acme", job_id, by="ana").id
        wait_for(lambda: target.at("/held"), what="the call to arrive")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    with engine_process(database_url, tmp_path, "node-a"):
        wait_for(lambda: events_of(core, execution_id)[-1] == "Failed", what="the failure")

    failed = list(core.jobs.events.get(execution_id))[-1]
    assert failed.error["code"] == "INTERRUPTED"


def test_sigterm_lets_a_running_execution_finish(
    core: Core, target: Target, database_url: str, tmp_path: Path
) -> None:
    job_id = held_job(core, target, retries=0)
    with engine_process(database_url, tmp_path, "node-a") as proc:
        execution_id = core.jobs.trigger_job("acme", job_id, by="ana").id
        wait_for(lambda: target.at("/held"), what="the call to arrive")
        proc.send_signal(signal.SIGTERM)
        target.hold["/held"].set()
        assert proc.wait(timeout=60) == 0

    assert events_of(core, execution_id)[-1] == "Succeeded"


@pytest.mark.postgres
@pytest.mark.slow
def test_three_engines_fire_every_slot_once_and_survive_a_killed_node(
    core: Core, target: Target, database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("several engines share one PostgreSQL store")
    ids = [
        core.jobs.create_job("acme", {
            "name": f"job-{i}", "pattern": "* * * * * *",
            "taskConfig": {"url": target.url(f"/job/{i}"), "method": "POST",
                           "body": {"slot": "${T:YYYY-MM-DDTHH:mm:ss}"}},
        }, by="ana").id
        for i in range(20)
    ]  # fmt: skip
    with (
        engine_process(database_url, tmp_path, "n1"),
        engine_process(database_url, tmp_path, "n2"),
    ):
        with engine_process(database_url, tmp_path, "n3") as doomed:
            started = time.time()
            wait_for(lambda: time.time() > started + 5, what="five seconds of firing")
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=30)
        with engine_process(database_url, tmp_path, "n3"):  # back, to finish what it left
            wait_for(lambda: time.time() > started + 10, what="ten seconds of firing", timeout=30)
        finished = time.time()

    core.projections.catch_up()
    window = (started + 1, finished - 2)
    for i, job_id in enumerate(ids):
        rows = core.queries.list_executions("acme", job_id=str(job_id), limit=500).items
        slots = Counter(r["scheduledFor"][:19] for r in rows)
        assert max(slots.values()) == 1, f"job {i}: a slot recorded twice"
        expected = {
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
            for t in range(int(window[0]) + 1, int(window[1]))
        }
        assert expected <= set(slots), f"job {i}: slots lost: {sorted(expected - set(slots))}"
        calls = Counter(r.body["slot"] for r in target.at(f"/job/{i}"))
        doubled = {s for s, n in calls.items() if n > 1}
        retried = {r["scheduledFor"][:19] for r in rows if r["attempt"] > 1}
        assert doubled <= retried, f"job {i}: called twice without an interrupted attempt"
