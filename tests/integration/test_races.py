"""Two processes racing for the same name or the same slot: the event store picks one winner."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from uuid import UUID

from application.jobs import Fire
from domain.errors import ExecutionAlreadyRecorded, NameTaken
from interfaces.composition import Core, Settings
from tests.integration.test_executions import SLOT
from tests.integration.test_job_lifecycle import nightly

TRIALS = 5


def _contender(database_url: str, data_dir: str, what: str, arg: str, barrier, results) -> None:  # type: ignore[no-untyped-def]
    try:
        core = Core(Settings(data_dir=Path(data_dir), database_url=database_url))
    except Exception as e:  # noqa: BLE001  # reported to the test, which fails with it
        for trial in range(TRIALS):
            results.put((trial, f"error: {e!r}"))
        return
    try:
        for trial in range(TRIALS):
            barrier.wait(timeout=300)  # a busy CI host may be slow to start a process
            try:
                if what == "name":
                    core.jobs.create_job("acme", nightly(f"{arg}-{trial}"), by="racer")
                else:
                    core.jobs.record_fire("acme", Fire(UUID(arg), SLOT.replace(minute=trial)))
                results.put((trial, "won"))
            except (NameTaken, ExecutionAlreadyRecorded):
                results.put((trial, "lost"))
            except Exception as e:  # noqa: BLE001  # reported to the test, which fails with it
                results.put((trial, f"error: {e!r}"))
    finally:
        core.close()


def race(database_url: str, tmp_path: Path, what: str, arg: str) -> dict[int, list[str]]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(
            target=_contender, args=(database_url, str(tmp_path), what, arg, barrier, results)
        )
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    outcomes: dict[int, list[str]] = {}
    for _ in range(2 * TRIALS):
        trial, outcome = results.get(timeout=600)
        outcomes.setdefault(trial, []).append(outcome)
    for p in procs:
        p.join(timeout=60)
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
