"""How each read model folds events into rows; the runner batches, the store commits."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from eventsourcing.utils import get_topic

from domain.execution import Execution, Status
from domain.instants import iso_ms
from domain.job import Job
from domain.ledger import SkippedSlots
from domain.masking import mask_secrets

Row = dict[str, Any]


class Projection(ABC):
    """A read model's rules: which events matter, which row each touches, how it changes."""

    name: str
    event_classes: tuple[type, ...]

    def __init__(self) -> None:
        self.topics = frozenset(get_topic(cls) for cls in self.event_classes)

    @abstractmethod
    def key(self, event: Any) -> str:
        """The row an event touches."""

    @abstractmethod
    def apply(self, row: Row | None, event: Any) -> Row | None:
        """The row after the event (None: the row is gone). Pure: no I/O, no clock."""

    def creates(self, event: Any) -> bool:
        """Whether the event starts its row (an aggregate's first event): no row to load."""
        return False


def application_of(app: dict[str, str]) -> dict[str, str]:
    """The application as shown: name and display name default to the id."""
    return {
        "id": app["id"],
        "name": app.get("name") or app["id"],
        "displayName": app.get("displayName") or app.get("name") or app["id"],
    }


class JobsProjection(Projection):
    """One row per live job, shaped as the API shows it (secrets masked)."""

    name = "jobs"
    event_classes = (Job.Created, Job.Updated, Job.Enabled, Job.Disabled, Job.Deleted)  # type: ignore[attr-defined]

    def key(self, event: Any) -> str:
        return str(event.originator_id)

    def apply(self, row: Row | None, event: Any) -> Row | None:
        at = iso_ms(event.timestamp)
        if isinstance(event, Job.Created):  # type: ignore[attr-defined]
            definition = mask_secrets(event.definition)
            return {
                "id": str(event.originator_id),
                "tenant": event.tenant,
                "application": application_of(event.application),
                **definition,
                "enabled": event.enabled,
                "createdAt": at,
                "createdBy": event.by,
                "updatedAt": at,
                "updatedBy": event.by,
                "version": event.originator_version,
            }
        if row is None:  # a row pruned or never seen: nothing to change
            return None
        if isinstance(event, Job.Deleted):  # type: ignore[attr-defined]
            return None
        row = dict(row)
        if isinstance(event, Job.Updated):  # type: ignore[attr-defined]
            row.update(mask_secrets(event.changes))
        elif isinstance(event, Job.Enabled):  # type: ignore[attr-defined]
            row["enabled"] = True
        elif isinstance(event, Job.Disabled):  # type: ignore[attr-defined]
            row["enabled"] = False
        row.update(updatedAt=at, updatedBy=event.by, version=event.originator_version)
        return row


class ExecutionsProjection(Projection):
    """One row per execution, with its latest status, result or error.

    The job snapshot stays in the log (`Execution.job_snapshot`, read for one execution's
    detail): copied into every row it would triple the row's size for every list.
    """

    name = "executions"
    event_classes = (
        Execution.Scheduled,  # type: ignore[attr-defined]
        Execution.Started,
        Execution.AttemptFailed,  # type: ignore[attr-defined]
        Execution.Succeeded,
        Execution.Failed,  # type: ignore[attr-defined]
    )

    def key(self, event: Any) -> str:
        return str(event.originator_id)

    def creates(self, event: Any) -> bool:
        return isinstance(event, Execution.Scheduled)  # type: ignore[attr-defined]

    def apply(self, row: Row | None, event: Any) -> Row | None:
        if isinstance(event, Execution.Scheduled):  # type: ignore[attr-defined]
            return {
                "id": str(event.originator_id),
                "jobId": str(event.job_id),
                "tenant": event.tenant,
                "jobVersion": event.job_version,
                "status": Status.PENDING.value,
                "trigger": event.trigger,
                "scheduledFor": iso_ms(event.scheduled_for),
                "startedAt": None,
                "finishedAt": None,
                "durationMs": None,
                "attempt": 0,
                "node": event.node,
                "nextAttemptAt": None,
                "result": None,
                "error": None,
                "createdAt": iso_ms(event.timestamp),
                "createdBy": event.by,
                "version": event.originator_version,
            }
        if row is None:  # pruned by retention: later events of it change nothing
            return None
        row = dict(row)
        if isinstance(event, Execution.Started):
            row.update(
                status=Status.RUNNING.value,
                attempt=event.attempt,
                node=event.node,
                startedAt=iso_ms(event.at),
                nextAttemptAt=None,
            )
        elif isinstance(event, Execution.AttemptFailed):  # type: ignore[attr-defined]
            row.update(
                status=Status.PENDING.value,
                error=mask_secrets(event.error),
                nextAttemptAt=iso_ms(event.next_attempt_at),
            )
        elif isinstance(event, Execution.Succeeded):
            row.update(
                status=Status.SUCCEEDED.value,
                result=mask_secrets(event.result),
                error=None,
                finishedAt=iso_ms(event.at),
                durationMs=event.duration_ms,
            )
        elif isinstance(event, Execution.Failed):  # type: ignore[attr-defined]
            row.update(
                status=Status.FAILED.value,
                error=mask_secrets(event.error),
                finishedAt=iso_ms(event.at),
                durationMs=event.duration_ms,
                nextAttemptAt=None,
            )
        row["version"] = event.originator_version
        return row


#: Triggers whose slot comes from the schedule in real time (backfills and manual runs do not
#: move a job's ledger forward).
LEDGER_TRIGGERS = frozenset({"cron", "catch-up"})


class LedgerProjection(Projection):
    """Per job, the last slot decided (run or skipped): where an engine resumes after downtime."""

    name = "ledger"
    event_classes = (
        Execution.Scheduled,  # type: ignore[attr-defined]
        SkippedSlots.Skipped,  # type: ignore[attr-defined]
        SkippedSlots.Extended,  # type: ignore[attr-defined]
        Job.Deleted,  # type: ignore[attr-defined]
    )

    def key(self, event: Any) -> str:
        if isinstance(event, Job.Deleted):  # type: ignore[attr-defined]
            return str(event.originator_id)
        return str(event.job_id)

    def apply(self, row: Row | None, event: Any) -> Row | None:
        if isinstance(event, Job.Deleted):  # type: ignore[attr-defined]
            return None
        if isinstance(event, Execution.Scheduled):  # type: ignore[attr-defined]
            if event.trigger not in LEDGER_TRIGGERS:
                return row
            slot, tenant = event.scheduled_for, event.tenant
        elif isinstance(event, SkippedSlots.Skipped):  # type: ignore[attr-defined]
            slot, tenant = event.last, event.tenant
        else:
            slot, tenant = event.last, row["tenant"] if row else ""
        decided = iso_ms(slot)
        if row is not None and row["decidedUntil"] >= decided:
            return row
        return {"jobId": str(event.job_id), "tenant": tenant, "decidedUntil": decided}


class SkipsProjection(Projection):
    """One row per run of skipped slots, for the slot ledger ("what happened at 02:00, and why")."""

    name = "skips"
    event_classes = (SkippedSlots.Skipped, SkippedSlots.Extended)  # type: ignore[attr-defined]

    def key(self, event: Any) -> str:
        return str(event.originator_id)

    def apply(self, row: Row | None, event: Any) -> Row | None:
        if isinstance(event, SkippedSlots.Skipped):  # type: ignore[attr-defined]
            return {
                "id": str(event.originator_id),
                "jobId": str(event.job_id),
                "tenant": event.tenant,
                "from": iso_ms(event.first),
                "to": iso_ms(event.last),
                "count": event.count,
                "reason": event.reason,
                "node": event.node,
            }
        if row is None:
            return None
        return {**row, "to": iso_ms(event.last), "count": event.count}


def all_projections() -> list[Projection]:
    """Every read model this release keeps."""
    return [JobsProjection(), ExecutionsProjection(), LedgerProjection(), SkipsProjection()]
