"""Two processes racing for the same name or the same slot: the event store picks one winner."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

from interfaces.composition import Core
from tests.integration.test_job_lifecycle import nightly

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 5

# A contender: for each trial, say it is ready, wait until the other one is too (a file
# barrier: both processes see the same folder), then race once and print the outcome.
CONTENDER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from uuid import UUID
    from datetime import datetime, UTC
    from application.jobs import Fire
    from domain.errors import ExecutionAlreadyRecorded, NameTaken
    from interfaces.composition import Core, Settings
    from tests.integration.test_job_lifecycle import nightly

    url, data_dir, what, arg, gate, trials = sys.argv[1:7]
    gate = Path(gate)
    core = Core(Settings(data_dir=Path(data_dir), database_url=url))
    slot = datetime(2026, 2, 4, 2, 0, tzinfo=UTC)
    for trial in range(int(trials)):
        (gate / f"{trial}-{os.getpid()}").touch()
        deadline = time.monotonic() + 120
        while len(list(gate.glob(f"{trial}-*"))) < 2:
            if time.monotonic() > deadline:
                sys.exit(f"trial {trial}: the other contender never came")
            time.sleep(0.001)
        try:
            if what == "name":
                core.jobs.create_job("acme", nightly(f"{arg}-{trial}"), by="racer")
            else:
                core.jobs.record_fire("acme", Fire(UUID(arg), slot.replace(minute=trial)))
            print(trial, "won", flush=True)
        except (NameTaken, ExecutionAlreadyRecorded):
            print(trial, "lost", flush=True)
    core.close()
    """
)


def race(database_url: str, tmp_path: Path, what: str, arg: str) -> dict[int, list[str]]:
    gate = tmp_path / f"gate-{what}"
    gate.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [database_url, str(tmp_path), what, arg, str(gate), str(TRIALS)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    outcomes: dict[int, list[str]] = defaultdict(list)
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        for line in out.split("\n"):
            if line.strip():
                trial, outcome = line.split()
                outcomes[int(trial)].append(outcome)
    return {trial: sorted(o) for trial, o in outcomes.items()}


def test_two_processes_creating_the_same_name_leave_exactly_one_job(
    core: Core, database_url: str, tmp_path: Path
) -> None:
    outcomes = race(database_url, tmp_path, "name", "contested")

    assert outcomes == {trial: ["lost", "won"] for trial in range(TRIALS)}
    core.projections.catch_up()
    assert core.queries.list_jobs("acme").total == TRIALS


def test_two_processes_recording_the_same_slot_store_one_execution(
    core: Core, database_url: str, tmp_path: Path
) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id

    outcomes = race(database_url, tmp_path, "slot", str(job_id))

    assert outcomes == {trial: ["lost", "won"] for trial in range(TRIALS)}
    core.projections.catch_up()
    assert core.queries.list_executions("acme", job_id=str(job_id)).total == TRIALS
