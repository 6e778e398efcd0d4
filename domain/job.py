"""The Job aggregate and the name claim that keeps names unique inside the event store."""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import JobDeleted
from domain.schedule import Schedule
from domain.tasks import Task, parse_task

#: Who acts when the system itself disables a job (e.g. after repeated failures).
SYSTEM = "system"


class Job(Aggregate):
    """A scheduled job: what to run, when, and under which policies."""

    @event("Created")
    def __init__(
        self,
        tenant: str,
        application: dict[str, str],
        definition: dict[str, Any],
        enabled: bool,
        by: str,
    ) -> None:
        self.tenant = tenant
        self.application = application
        self.definition = definition
        self.enabled = enabled
        self.deleted = False
        self.created_by = self.updated_by = by

    # -- decisions -----------------------------------------------------------------------

    def update(self, changes: dict[str, Any], by: str) -> None:
        """Record the changed fields only; an update that changes nothing records nothing."""
        self._refuse_if_deleted()
        changes = {k: v for k, v in changes.items() if self.definition.get(k) != v}
        if changes:
            self._updated(changes=changes, by=by)

    def enable(self, by: str) -> None:
        """Let the job fire again; a repeated enable records nothing."""
        self._refuse_if_deleted()
        if not self.enabled:
            self._enabled(by=by)

    def disable(self, by: str, reason: str | None = None) -> None:
        """Stop the job firing; a repeated disable records nothing."""
        self._refuse_if_deleted()
        if self.enabled:
            self._disabled(by=by, reason=reason)

    def delete(self, by: str) -> None:
        """Delete the job; it accepts no further command."""
        self._refuse_if_deleted()
        self._deleted(by=by)

    def _refuse_if_deleted(self) -> None:
        if self.deleted:
            raise JobDeleted(self.id)

    # -- events --------------------------------------------------------------------------

    @event("Updated")
    def _updated(self, changes: dict[str, Any], by: str) -> None:
        self.definition = {**self.definition, **changes}
        self.updated_by = by

    @event("Enabled")
    def _enabled(self, by: str) -> None:
        self.enabled, self.updated_by = True, by

    @event("Disabled")
    def _disabled(self, by: str, reason: str | None) -> None:
        self.enabled, self.updated_by = False, by

    @event("Deleted")
    def _deleted(self, by: str) -> None:
        self.deleted, self.enabled, self.updated_by = True, False, by

    # -- reading -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The job's name, unique per tenant and application."""
        return self.definition["name"]

    @property
    def schedule(self) -> Schedule:
        """When the job fires."""
        return Schedule(self.definition["pattern"], self.definition["timezone"])

    @property
    def task(self) -> Task:
        """What the job runs."""
        return parse_task(self.definition["taskType"], self.definition["taskConfig"])


class JobName(Aggregate):
    """A name claim; its id comes from the name, so a second claim of a held name collides."""

    @staticmethod
    def create_id(tenant: str, application_id: str, name: str) -> UUID:
        """The same id for the same tenant, application and name, on every node."""
        return uuid5(NAMESPACE_URL, f"/job-names/{tenant}/{application_id}/{name}")

    @event("Claimed")
    def __init__(self, tenant: str, application_id: str, name: str, job_id: UUID) -> None:
        self.job_id: UUID | None = job_id

    @property
    def held(self) -> bool:
        """Whether a job holds the name now."""
        return self.job_id is not None

    def release(self) -> None:
        """Free the name (the job was renamed or deleted)."""
        if self.job_id is not None:
            self._released()

    def reclaim(self, job_id: UUID) -> None:
        """Take a released name for another job."""
        self._reclaimed(job_id=job_id)

    @event("Released")
    def _released(self) -> None:
        self.job_id = None

    @event("Reclaimed")
    def _reclaimed(self, job_id: UUID) -> None:
        self.job_id = job_id
