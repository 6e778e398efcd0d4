"""The Execution aggregate's statuses and its deterministic slot ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest

from domain.errors import IllegalTransition
from domain.execution import Execution, Status, Trigger, scheduled_execution_id

AT = datetime(2026, 2, 4, 14, 30, tzinfo=UTC)


def new(trigger: Trigger = Trigger.CRON) -> Execution:
    return Execution.schedule(uuid4(), "acme", 3, {}, AT, trigger, "node-a", "scheduler")


def test_the_same_slot_gives_the_same_id_in_any_zone_and_precision() -> None:
    job_id = uuid4()
    berlin = AT.astimezone(timezone(timedelta(hours=1)))

    assert scheduled_execution_id(job_id, AT) == scheduled_execution_id(job_id, berlin)
    assert scheduled_execution_id(job_id, AT) == scheduled_execution_id(
        job_id, AT + timedelta(microseconds=400)
    )
    assert scheduled_execution_id(job_id, AT) != scheduled_execution_id(
        job_id, AT + timedelta(seconds=1)
    )
    assert scheduled_execution_id(job_id, AT) != scheduled_execution_id(uuid4(), AT)


def test_an_execution_goes_pending_running_succeeded() -> None:
    e = new()
    assert e.status is Status.PENDING
    e.start("node-a", AT)
    assert (e.status, e.attempt) == (Status.RUNNING, 1)
    e.succeed({"status": 200}, AT + timedelta(milliseconds=1234))
    assert e.status is Status.SUCCEEDED
    assert list(e.collect_events())[-1].duration_ms == 1234


def test_a_failed_attempt_returns_to_pending_and_the_next_attempt_counts_up() -> None:
    e = new()
    e.start("node-a", AT)
    e.fail_attempt({"code": "TIMEOUT"}, AT, AT + timedelta(seconds=60))
    assert (e.status, e.next_attempt_at) == (Status.PENDING, AT + timedelta(seconds=60))
    e.start("node-b", AT + timedelta(seconds=60))
    assert e.attempt == 2


def test_a_pending_execution_can_fail_without_starting() -> None:
    e = new()
    e.fail({"code": "INTERRUPTED"}, AT)
    assert e.status is Status.FAILED


@pytest.mark.parametrize(
    "action", ["succeed", "fail_attempt", "start_twice", "fail_after_success"]
)
def test_illegal_transitions_are_refused(action: str) -> None:
    e = new()
    with pytest.raises(IllegalTransition):
        if action == "succeed":
            e.succeed({}, AT)
        elif action == "fail_attempt":
            e.fail_attempt({}, AT, AT)
        elif action == "start_twice":
            e.start("n", AT)
            e.start("n", AT)
        else:
            e.start("n", AT)
            e.succeed({}, AT)
            e.fail({}, AT)


def test_a_scheduled_instant_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Execution.schedule(uuid4(), "acme", 1, {}, datetime(2026, 1, 1), Trigger.CRON, "n", "u")
