"""The one table from stored event classes to public event types (CloudEvents `type`)."""

from __future__ import annotations

from typing import Any

from eventsourcing.utils import get_topic

from domain.execution import Execution
from domain.instants import iso_ms
from domain.job import Job
from domain.masking import mask_secrets

PUBLIC_TYPES: dict[type, str] = {
    Job.Created: "scheduler.job.created",  # type: ignore[attr-defined]
    Job.Updated: "scheduler.job.updated",  # type: ignore[attr-defined]
    Job.Enabled: "scheduler.job.enabled",  # type: ignore[attr-defined]
    Job.Disabled: "scheduler.job.disabled",  # type: ignore[attr-defined]
    Job.Deleted: "scheduler.job.deleted",  # type: ignore[attr-defined]
    Execution.Scheduled: "scheduler.job.execution.scheduled",  # type: ignore[attr-defined]
    Execution.Started: "scheduler.job.execution.started",  # type: ignore[attr-defined]
    Execution.AttemptFailed: "scheduler.job.execution.retrying",  # type: ignore[attr-defined]
    Execution.Succeeded: "scheduler.job.execution.succeeded",  # type: ignore[attr-defined]
    Execution.Failed: "scheduler.job.execution.failed",  # type: ignore[attr-defined]
}
PUBLIC_TOPICS: dict[str, str] = {get_topic(cls): name for cls, name in PUBLIC_TYPES.items()}

_LIBRARY_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}
_CAMEL = {
    "job_id": "jobId",
    "job_version": "jobVersion",
    "job_snapshot": "jobSnapshot",
    "scheduled_for": "scheduledFor",
    "next_attempt_at": "nextAttemptAt",
    "duration_ms": "durationMs",
    "application_id": "applicationId",
}


def public_type(event: object) -> str | None:
    """The public type of a stored event, or None for internal ones (name claims)."""
    return PUBLIC_TYPES.get(type(event))


def public_data(event: Any) -> dict[str, Any]:
    """An event's own fields as clients see them: camelCase, instants as text, secrets masked."""
    data: dict[str, Any] = {}
    for key, value in vars(event).items():
        if key in _LIBRARY_FIELDS:
            continue
        if hasattr(value, "isoformat") and hasattr(value, "tzinfo"):
            value = iso_ms(value)
        elif hasattr(value, "hex") and type(value).__name__ == "UUID":
            value = str(value)
        data[_CAMEL.get(key, key)] = value
    return mask_secrets(data)
