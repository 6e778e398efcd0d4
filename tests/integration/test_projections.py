"""Read models: exactly once, rebuildable, read-your-writes, crash-safe, on each store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from application.jobs import Fire
from application.projection_runner import ProjectionRunner
from application.projections import JobsProjection
from application.verify import verify_projection
from interfaces.composition import Core
from tests.integration.test_job_lifecycle import nightly

SLOT = datetime(2026, 2, 4, 2, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def populate(core: Core, jobs: int = 5, fires: int = 4) -> None:
    for i in range(jobs):
        job_id = core.jobs.create_job("acme", nightly(f"job-{i}"), by="ana").id
        core.jobs.update_job("acme", job_id, {"description": f"v2 of {i}"}, by="bo")
        if i % 2:
            core.jobs.disable_job("acme", job_id, by="bo")
        job = core.jobs.get_job("acme", job_id)
        core.jobs.record_fires(
            [job], [Fire(job_id, SLOT + timedelta(minutes=m)) for m in range(fires)]
        )
    doomed = core.jobs.create_job("acme", nightly("doomed"), by="ana").id
    core.jobs.delete_job("acme", doomed, by="ana")


def test_a_rebuilt_projection_equals_the_live_one(core: Core) -> None:
    populate(core)
    core.projections.catch_up()
    before = {name: r.store.dump() for name, r in core.projections.runners.items()}

    for runner in core.projections.runners.values():
        runner.rebuild()

    after = {name: r.store.dump() for name, r in core.projections.runners.items()}
    assert after == before
    assert len(after["jobs"][1]) == 5
    assert len(after["executions"][1]) == 20


def test_a_rebuild_of_every_read_model_tells_how_far_it_got(core: Core) -> None:
    populate(core)
    head = core.jobs.recorder.max_notification_id()
    told: list[tuple[int, int]] = []

    core.projections.rebuild_all(batch_size=10, progress=lambda at, of: told.append((at, of)))

    assert len(told) > 1 and told[-1] == (head, head)
    assert [at for at, _ in told] == sorted({at for at, _ in told})


def test_a_batch_lost_to_another_process_is_not_applied_twice(core: Core, make_core) -> None:  # type: ignore[no-untyped-def]
    populate(core, jobs=2, fires=0)
    other = make_core()
    slow = ProjectionRunner(core.jobs.recorder, core.jobs.mapper, JobsProjection(), core.jobs_view)
    assert slow.position == 0

    other.projections["jobs"].catch_up()  # the other process applies everything first
    applied = slow.step()

    assert applied is True
    assert slow.position == other.projections["jobs"].position
    _, rows = core.jobs_view.dump()
    assert {r["version"] for r in rows.values()} == {2, 3}


def test_job_counts_are_kept_with_the_rows_and_survive_a_rebuild(core: Core, make_core) -> None:  # type: ignore[no-untyped-def]
    populate(core)  # acme: 5 jobs (2 disabled), one created and deleted
    core.jobs.create_job("globex", nightly("other"), by="gus")
    core.projections.catch_up()

    assert core.jobs_view.counts("acme") == (5, 3)
    assert core.jobs_view.counts("globex") == (1, 1)
    assert core.jobs_view.counts("nobody") == (0, 0)
    rows, total = core.jobs_view.list_jobs("acme", offset=4, limit=50)
    assert (len(rows), total) == (1, 5)
    assert core.jobs_view.list_jobs("acme", enabled=False)[1] == 2

    core.projections["jobs"].rebuild()
    assert core.jobs_view.counts("acme") == (5, 3)

    with core.jobs_view.db.write() as c:  # a store from before the counts were kept
        c.execute(f"DROP TABLE {core.jobs_view.counts_table}")
    assert make_core().jobs_view.counts("acme") == (5, 3)


def test_postgresql_statistics_are_refreshed_after_a_bulk_catch_up(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not getattr(core.views_db, "analyze_after_bulk_writes", False):
        pytest.skip("only PostgreSQL plans from statistics that lag behind bulk writes")
    monkeypatch.setattr(type(core.jobs_view), "ANALYZE_AFTER_ROWS", 5)  # 1,000 in service
    for i in range(6):
        core.jobs.create_job("acme", nightly(f"job-{i}"), by="ana")

    core.projections["jobs"].catch_up()

    with core.views_db.read() as c:
        c.execute("SELECT reltuples FROM pg_class WHERE oid = 'cronsource_jobs'::regclass")
        (estimated,) = c.fetchone()
    assert estimated == 6  # -1 (never analysed) until then; autovacuum waits a minute


def test_read_your_writes_when_projections_follow_in_threads(core: Core) -> None:
    core.start()

    written = core.jobs.create_job("acme", nightly(), by="ana")
    visible = core.projections.wait_for(written.position, timeout=10)

    assert visible
    assert core.queries.get_job("acme", str(written.id))["name"] == "nightly-sync"


def test_a_failing_projection_does_not_hold_the_others_back(core: Core, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def broken(*args: object, **kwargs: object) -> bool:
        raise OSError("the executions table is unwritable")

    monkeypatch.setattr(core.executions_view, "commit", broken)
    core.start()

    job = core.jobs.create_job("acme", nightly(), by="ana")
    fired = core.jobs.trigger_job("acme", job.id, by="ana")

    assert core.projections["jobs"].wait_for(fired.position, timeout=10)
    assert not core.projections["executions"].wait_for(fired.position, timeout=0.2)
    monkeypatch.undo()  # repaired: it catches up on its own
    assert core.projections["executions"].wait_for(fired.position, timeout=10)


def test_a_catch_up_asked_for_while_the_follower_runs_applies_each_event_once(
    core: Core, tmp_path: Path
) -> None:
    core.start()  # the follower thread applies as events come
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    job = core.jobs.get_job("acme", job_id)
    done = threading.Event()

    def write() -> None:
        for minute in range(300):
            (execution,) = core.jobs.record_fires(
                [job], [Fire(job_id, SLOT + timedelta(minutes=minute))]
            )
            execution.start("n", SLOT)
            core.jobs.record(execution)
            execution.succeed({"ok": True}, SLOT)
            core.jobs.record(execution)
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not done.is_set():  # as a request does (`/jobs/{id}/slots`, the engine's views)
        core.projections.catch_up()
    writer.join()
    core.projections.catch_up()

    head = core.jobs.recorder.max_notification_id()
    for name, runner in core.projections.runners.items():
        assert runner.position == head
        _, differences = verify_projection(
            core.jobs.recorder, core.jobs.mapper, runner.projection, runner.store,
            _scratch_store(core, tmp_path, name),
        )  # fmt: skip
        assert differences == [], name
    statuses = {r["status"] for r in core.executions_view.dump()[1].values()}
    assert statuses == {"succeeded"}


def test_a_change_written_by_another_process_reaches_this_read_model(
    core: Core, make_core
) -> None:  # type: ignore[no-untyped-def]
    core.start()
    writer = make_core()

    written = writer.jobs.create_job("acme", nightly(), by="ana")

    assert core.projections["jobs"].wait_for(written.position, timeout=10)
    assert core.queries.get_job("acme", str(written.id))["createdBy"] == "ana"


def test_lag_is_reported_per_projection(core: Core) -> None:
    populate(core, jobs=1, fires=1)
    head = core.jobs.recorder.max_notification_id()

    lag = core.projections.lag(head)

    assert lag["jobs"] == {"position": 0, "lag": head}
    core.projections.catch_up()
    assert core.projections.lag(head)["executions"]["lag"] == 0


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from interfaces.composition import Core, Settings
    core = Core(Settings(data_dir=Path(sys.argv[2]), database_url=sys.argv[1],
                         poll_seconds=0.01))
    core.start()
    print("ready", flush=True)
    i = 0
    while True:
        doc = {"name": f"job-{i}", "pattern": "* * * * *",
               "taskConfig": {"url": "https://example.com/hook"}}
        job = core.jobs.create_job("acme", doc, by="writer")
        core.jobs.update_job("acme", job.id, {"description": "x" * (i % 7)}, by="writer")
        core.jobs.trigger_job("acme", job.id, by="writer")
        i += 1
    """
)


def test_a_process_killed_mid_stream_leaves_read_models_right_after_restart(
    database_url: str, tmp_path: Path, make_core
) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, database_url, str(tmp_path)],
        stdout=subprocess.PIPE, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        core = make_core()
        deadline = time.monotonic() + 60
        while (core.jobs.recorder.max_notification_id() or 0) < 300:  # let it write a while
            assert time.monotonic() < deadline, "the writer wrote too little"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    restarted = make_core()
    restarted.projections.catch_up()

    head = restarted.jobs.recorder.max_notification_id()
    for name, runner in restarted.projections.runners.items():  # equal to a full rebuild
        assert runner.position == head
        _, differences = verify_projection(
            restarted.jobs.recorder, restarted.jobs.mapper, runner.projection, runner.store,
            _scratch_store(restarted, tmp_path, name),
        )  # fmt: skip
        assert differences == []
    jobs_in_log = sum(1 for n in _all_notifications(restarted) if n.topic.endswith("Job.Created"))
    assert restarted.queries.list_jobs("acme", limit=1).total == jobs_in_log


def _all_notifications(core: Core) -> list:  # type: ignore[type-arg]
    return list(core.jobs.recorder.select_notifications(start=1, limit=1_000_000))


def _scratch_store(core: Core, tmp_path: Path, name: str):  # type: ignore[no-untyped-def]
    from infrastructure.sql import SQLiteDatabase

    return core.scratch_views(SQLiteDatabase(tmp_path / f"scratch-{name}.db"))[name]
