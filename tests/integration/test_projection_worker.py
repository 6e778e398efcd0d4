"""`CRONSOURCE_PROJECTIONS=process`: the read models folded by a worker process.

What a node promises does not change: a write is visible to the next read once `wait_for` its
position returns, every event is applied once, a worker that dies is replaced and catches up,
and closing the node ends its worker.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from application.jobs import Written
from application.verify import verify_projection
from infrastructure.store import StoreConfigError
from interfaces.cli import _drop_scratch, _scratch_database
from interfaces.composition import Core, Settings

JOB = {
    "pattern": "0 0 * * *",
    "taskType": "FunctionTask",
    "taskConfig": {"function": "noop"},
}


def _create(core: Core, name: str) -> Written:
    return core.jobs.create_job("acme", {**JOB, "name": name}, "ana")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie (exited, not yet reaped) is not alive
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def _worker_pid(core: Core) -> int:
    assert core.projection_worker is not None
    pid = core.projection_worker.pid
    assert pid is not None and pid != os.getpid()
    return pid


def test_a_write_is_readable_once_the_worker_applied_it(make_core: Callable[..., Core]) -> None:
    core = make_core(projections="process")
    core.start()
    _worker_pid(core)
    for i in range(20):
        written = _create(core, f"job-{i}")
        assert core.projections.wait_for(written.position, timeout=30)
        # read-your-writes: the row is there as soon as the wait returns
        assert core.jobs_view.get_job("acme", str(written.id)) is not None
    head = core.jobs.recorder.max_notification_id()
    assert all(state["lag"] == 0 for state in core.projections.lag(head).values())


def test_a_killed_worker_is_replaced_and_catches_up(make_core: Callable[..., Core]) -> None:
    core = make_core(projections="process")
    core.start()
    assert core.projections.wait_for(_create(core, "before").position, timeout=30)
    first = _worker_pid(core)
    os.kill(first, signal.SIGKILL)
    written = _create(core, "while-it-died")  # written while no worker may be running
    assert core.projections.wait_for(written.position, timeout=60)
    assert _worker_pid(core) != first
    assert core.jobs_view.get_job("acme", str(written.id)) is not None


def test_closing_the_node_ends_its_worker(make_core: Callable[..., Core]) -> None:
    core = make_core(projections="process")
    core.start()
    pid = _worker_pid(core)
    assert _alive(pid)
    core.close()
    assert not _alive(pid)


def test_a_catch_up_in_the_node_and_the_worker_apply_each_event_once(
    make_core: Callable[..., Core], tmp_path: Path
) -> None:
    """The node catches up itself (as at start) while its worker follows the same log."""
    core = make_core(projections="process")
    core.start()
    written = [_create(core, f"job-{i}") for i in range(30)]
    core.projections.catch_up()
    assert core.projections.wait_for(written[-1].position, timeout=30)
    assert core.jobs_view.counts("acme") == (30, 30)  # counted once each
    # what the two processes applied between them is what one applying alone makes
    scratch_db = _scratch_database(core, tmp_path)
    try:
        scratch = core.scratch_views(scratch_db)
        for runner in core.projections.runners.values():
            _, differences = verify_projection(
                core.jobs.recorder, core.jobs.mapper, runner.projection,
                runner.store, scratch[runner.name],
            )  # fmt: skip
            assert differences == [], runner.name
    finally:
        _drop_scratch(scratch_db)


@pytest.mark.parametrize("value", ["threads", "subprocess", "1"])
def test_an_unknown_mode_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(StoreConfigError, match="CRONSOURCE_PROJECTIONS"):
        Settings.from_env({"CRONSOURCE_PROJECTIONS": value})


def test_the_mode_is_read_from_the_environment() -> None:
    assert Settings.from_env({"CRONSOURCE_PROJECTIONS": "Process"}).projections == "process"
    assert Settings.from_env({}).projections == "thread"
