"""Every stored event type survives the orjson transcoder with its types intact."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest
from eventsourcing.persistence import Mapper

from domain.execution import Execution, Trigger
from domain.job import Job, JobName
from infrastructure.transcoder import OrjsonTranscoder

DEFINITION = {
    "name": "n", "pattern": "0 2 * * *", "timezone": "UTC", "taskType": "HttpInvokerTask",
    "taskConfig": {"url": "https://example.com", "method": "GET", "timeout": 30000},
}  # fmt: skip


def round_trip(aggregate_events: list[object]) -> list[object]:
    mapper: Mapper = Mapper(transcoder=OrjsonTranscoder())
    return [mapper.to_domain_event(mapper.to_stored_event(e)) for e in aggregate_events]


def job_events() -> list[object]:
    job = Job(tenant="t", application={"id": "a"}, definition=DEFINITION, enabled=True, by="u")
    job.update({"pattern": "0 3 * * *"}, by="u")
    job.disable(by="system", reason="3 failures")
    job.enable(by="u")
    job.delete(by="u")
    return list(job.collect_events())


def execution_events() -> list[object]:
    at = datetime(2026, 2, 4, 2, 0, 0, 123000, tzinfo=UTC)
    e = Execution.schedule(uuid4(), "t", 1, {"a": [1, 2]}, at, Trigger.CRON, "n", "u")
    e.start("n", at)
    e.fail_attempt({"message": "boom", "code": "TIMEOUT"}, at, at)
    e.start("n", at)
    e.fail({"message": "boom", "code": "TIMEOUT"}, at)
    s = Execution.schedule(uuid4(), "t", 1, {}, at, Trigger.MANUAL, "n", "u", override={"k": "v"})
    s.start("n", at)
    s.succeed({"status": 200, "data": None}, at)
    return [*e.collect_events(), *s.collect_events()]


def claim_events() -> list[object]:
    claim = JobName(tenant="t", application_id="a", name="n", job_id=uuid4())
    claim.release()
    claim.reclaim(uuid4())
    return list(claim.collect_events())


def test_every_event_type_round_trips_equal() -> None:
    events = job_events() + execution_events() + claim_events()

    restored = round_trip(events)

    assert [vars(e) for e in restored] == [vars(e) for e in events]
    assert len({type(e) for e in events}) == 13


def test_uuids_and_datetimes_come_back_typed_not_as_strings() -> None:
    (scheduled,) = round_trip(execution_events()[:1])

    assert type(scheduled.job_id).__name__ == "UUID"
    assert scheduled.scheduled_for == datetime(2026, 2, 4, 2, 0, 0, 123000, tzinfo=UTC)


def test_tuples_and_decimals_among_an_events_fields_round_trip() -> None:
    transcoder = OrjsonTranscoder()
    value = {"a": (1, "x"), "d": Decimal("1.10"), "u": uuid4()}

    assert transcoder.decode(transcoder.encode(value)) == value


def test_a_clients_dict_that_looks_like_a_tag_comes_back_as_it_was() -> None:
    transcoder = OrjsonTranscoder()
    for value in (
        {"_type_": "uuid_hex", "_data_": "x", "other": 1},
        {"_type_": "uuid_hex", "_data_": "x"},
    ):
        assert transcoder.decode(transcoder.encode({"body": {"nested": value}})) == {
            "body": {"nested": value}
        }


def test_a_nested_datetime_is_refused_not_turned_into_text() -> None:
    transcoder = OrjsonTranscoder()

    with pytest.raises(TypeError, match="datetime"):
        transcoder.encode({"result": {"at": datetime(2026, 1, 1, tzinfo=UTC)}})
