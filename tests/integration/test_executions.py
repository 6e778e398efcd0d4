"""Executions on each store: exactly-once per slot, triggers, the read model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from application.jobs import Fire
from domain.errors import ExecutionAlreadyRecorded
from domain.execution import ErrorCode, Trigger, scheduled_execution_id
from interfaces.composition import Core
from tests.integration.test_job_lifecycle import nightly

SLOT = datetime(2026, 2, 4, 2, 0, tzinfo=UTC)


def test_a_trigger_records_a_pending_manual_execution(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id

    written = core.jobs.trigger_job("acme", job_id, by="bo")
    core.projections.catch_up()

    row = core.queries.get_execution("acme", str(written.id))
    assert (row["status"], row["trigger"], row["createdBy"]) == ("pending", "manual", "bo")
    snapshot = core.jobs.get_execution("acme", written.id).job_snapshot
    assert snapshot["taskConfig"]["auth"]["token"] == "***"
    detail = core.queries.get_execution_detail("acme", str(written.id), lambda i: snapshot)
    assert detail["jobSnapshot"] == snapshot
    assert row["jobVersion"] == 1


def test_two_triggers_are_two_executions(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id

    first = core.jobs.trigger_job("acme", job_id, by="bo").id
    second = core.jobs.trigger_job("acme", job_id, by="bo").id

    assert first != second


def test_a_scheduled_fire_gets_the_slots_deterministic_id(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id

    written = core.jobs.record_fire("acme", Fire(job_id, SLOT))

    assert written.id == scheduled_execution_id(job_id, SLOT)


def test_a_slot_recorded_twice_is_stored_once(core: Core, make_core) -> None:  # type: ignore[no-untyped-def]
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    other = make_core()
    core.jobs.record_fire("acme", Fire(job_id, SLOT))

    with pytest.raises(ExecutionAlreadyRecorded):
        other.jobs.record_fire("acme", Fire(job_id, SLOT))

    core.projections.catch_up()
    assert core.queries.list_executions("acme", job_id=str(job_id)).total == 1


def test_a_group_commit_keeps_the_fires_another_engine_did_not_take(core: Core, make_core) -> None:  # type: ignore[no-untyped-def]
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    job = core.jobs.get_job("acme", job_id)
    slots = [SLOT + timedelta(days=d) for d in range(5)]
    make_core().jobs.record_fire("acme", Fire(job_id, slots[2]))

    won = core.jobs.record_fires([job], [Fire(job_id, s) for s in slots])

    assert [e.scheduled_for for e in won] == [slots[i] for i in (0, 1, 3, 4)]


def test_an_execution_read_model_follows_attempts_to_the_end(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    written = core.jobs.record_fire("acme", Fire(job_id, SLOT))
    execution = core.jobs.get_execution("acme", written.id)
    t0 = SLOT + timedelta(milliseconds=3)

    execution.start("node-a", at=t0)
    execution.fail_attempt({"message": "503", "code": ErrorCode.HTTP_STATUS.value}, at=t0,
                           next_attempt_at=t0 + timedelta(seconds=60))  # fmt: skip
    execution.start("node-b", at=t0 + timedelta(seconds=60))
    execution.succeed({"status": 200, "data": {"ok": True}}, at=t0 + timedelta(seconds=61))
    core.jobs.record(execution)
    core.projections.catch_up()

    row = core.queries.get_execution("acme", str(written.id))
    assert row["status"] == "succeeded"
    assert row["attempt"] == 2
    assert row["node"] == "node-b"
    assert row["durationMs"] == 1000
    assert row["scheduledFor"] == "2026-02-04T02:00:00.000Z"
    assert row["result"] == {"status": 200, "data": {"ok": True}}


def test_executions_are_listed_newest_first_with_filters(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    job = core.jobs.get_job("acme", job_id)
    slots = [SLOT + timedelta(days=d) for d in range(4)]
    core.jobs.record_fires([job], [Fire(job_id, s) for s in slots])
    core.projections.catch_up()

    page = core.queries.list_executions("acme", job_id=str(job_id), limit=2)
    assert [r["scheduledFor"][:10] for r in page.items] == ["2026-02-07", "2026-02-06"]
    assert page.total == 4
    since = core.queries.list_executions(
        "acme", since="2026-02-05T00:00:00.000Z", until="2026-02-07T00:00:00.000Z"
    )
    assert since.total == 2
    assert core.queries.list_executions("acme", status="running").total == 0
    assert core.queries.list_executions("globex").total == 0


def test_the_trigger_of_a_slot_is_kept(core: Core) -> None:
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id

    written = core.jobs.record_fire("acme", Fire(job_id, SLOT, Trigger.CATCH_UP))
    core.projections.catch_up()

    assert core.queries.get_execution("acme", str(written.id))["trigger"] == "catch-up"


def test_retention_prunes_old_finished_rows_and_verify_still_agrees(make_core, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from application.verify import verify_projection
    from infrastructure.sql import SQLiteDatabase

    core = make_core(retention_days=30, failed_retention_days=90)
    job_id = core.jobs.create_job("acme", nightly(), by="ana").id
    now = datetime.now(UTC)
    for age_days, ok in ((100, True), (60, False), (100.5, False), (1, True)):
        slot = now - timedelta(days=age_days)
        written = core.jobs.record_fire("acme", Fire(job_id, slot))
        execution = core.jobs.get_execution("acme", written.id)
        execution.start("n", slot)
        if ok:
            execution.succeed({"status": 200}, slot + timedelta(seconds=1))
        else:
            execution.fail({"message": "x", "code": "HTTP_STATUS"}, slot + timedelta(seconds=1))
        core.jobs.record(execution)

    removed = core.prune(now)

    assert removed == 2  # the 100-day-old success and the 100-day-old failure
    rows = core.queries.list_executions("acme", job_id=str(job_id)).items
    assert sorted((r["status"], r["scheduledFor"][:10]) for r in rows) == sorted(
        [
            ("failed", (now - timedelta(days=60)).date().isoformat()),
            ("succeeded", (now - timedelta(days=1)).date().isoformat()),
        ]
    )
    scratch = core.scratch_views(SQLiteDatabase(tmp_path / "scratch.db"))["executions"]
    runner = core.projections["executions"]
    _, differences = verify_projection(
        core.jobs.recorder, core.jobs.mapper, runner.projection, runner.store, scratch,
        lambda rows: core.settings.retention.kept(rows, now),
    )  # fmt: skip
    assert differences == []
