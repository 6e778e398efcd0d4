"""A job's full history, and the job as it was at any version or instant, from the log itself."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from application.jobs import Jobs, parse_id
from application.projections import JobsProjection
from application.public_events import public_data, public_type
from domain.errors import InvalidField, JobNotFound
from domain.execution import slot_instant
from domain.instants import iso_ms
from domain.job import Job

_FOLD = JobsProjection()


def _job_events(app: Jobs, tenant: str, job_id: object) -> list[Any]:
    uuid = parse_id(job_id, JobNotFound)
    events = list(app.events.get(uuid))
    if not events or not isinstance(events[0], Job.Created) or events[0].tenant != tenant:  # type: ignore[attr-defined]
        raise JobNotFound(job_id)
    return events


def job_history(app: Jobs, tenant: str, job_id: object) -> list[dict[str, Any]]:
    """Every event of the job, oldest first: `{version, type, time, by, data}`."""
    return [
        {
            "version": e.originator_version,
            "type": public_type(e),
            "time": iso_ms(e.timestamp),
            "by": getattr(e, "by", None),
            "data": {k: v for k, v in public_data(e).items() if k != "by"},
        }
        for e in _job_events(app, tenant, job_id)
    ]


def job_as_of(
    app: Jobs,
    tenant: str,
    job_id: object,
    *,
    version: int | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The job as the API showed it at `version`, or at instant `at` (the same fold as the
    read model's, so a past state and the live row can be compared field by field).

    A deleted job's last state stays visible here, marked `deleted`.
    """
    events = _job_events(app, tenant, job_id)
    if version is not None:
        if not 1 <= version <= events[-1].originator_version:
            raise InvalidField("version", f"must be between 1 and {events[-1].originator_version}")
        events = [e for e in events if e.originator_version <= version]
    if at is not None:  # instants are shown to the millisecond: compare at that precision
        events = [e for e in events if slot_instant(e.timestamp) <= at]
        if not events:
            raise InvalidField("asOf", "the job did not exist yet at that instant")
    row: dict[str, Any] | None = None
    deleted = False
    for event in events:
        if isinstance(event, Job.Deleted):  # type: ignore[attr-defined]
            deleted = True
            assert row is not None
            row = {**row, "version": event.originator_version, "updatedAt": iso_ms(event.timestamp),
                   "updatedBy": event.by}  # fmt: skip
            continue
        row = _FOLD.apply(row, event)
    assert row is not None
    row = {k: v for k, v in row.items() if k != "tenant"}
    if deleted:
        row["deleted"] = True
    return row
