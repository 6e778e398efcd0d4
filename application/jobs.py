"""Commands on jobs and executions: decide in the aggregates, record in one transaction."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from application.group_commit import GroupCommit
from application.ports import StoreObserver, Unobserved
from domain.errors import (
    ExecutionAlreadyRecorded,
    ExecutionNotFound,
    InvalidField,
    JobDeleted,
    JobNotFound,
    NameTaken,
    UrlBlocked,
    VersionConflict,
)
from domain.execution import Execution, Trigger
from domain.job import Job, JobName
from domain.job_definition import parse_job_changes, parse_new_job
from domain.masking import mask_secrets
from domain.parameters import has_parameters

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Written:
    """What a command recorded: the aggregate, its new version, and the log position reached."""

    id: UUID
    version: int
    position: int


@dataclass(frozen=True, slots=True)
class Fire:
    """A request to record one execution of a job at one slot."""

    job_id: UUID
    scheduled_for: datetime
    trigger: Trigger = Trigger.CRON
    id: UUID | None = None  # the slot's execution id, if the caller derived it already


def parse_id(value: object, not_found: Callable[[object], Exception]) -> UUID:
    """An id from a client; one that is not a UUID names nothing, so it is not found."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise not_found(value) from None


class Jobs(Application):
    """The event-sourced core: every job change and every execution is an event in one log."""

    name = "cronsource"  # named explicitly: a renamed class must not restart every projection

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        node: str | None = None,
        *,
        check_url: Callable[[str], None] | None = None,
        function_names: Callable[[], Collection[str]] | None = None,
        select_events_of: Callable[[Any, Collection[UUID]], Iterable[Any]] | None = None,
        observer: StoreObserver | None = None,
    ) -> None:
        super().__init__(env)
        self.observer: StoreObserver = observer or Unobserved()  # write latency, errors
        self.node = node or socket.gethostname()
        self._check_url = check_url
        self._function_names = function_names
        self._select_events_of = select_events_of  # many aggregates' events in one read
        self._listeners: list[Callable[[int], None]] = []
        self._snapshots: dict[tuple[UUID, int], dict[str, Any]] = {}
        self._group_commit = GroupCommit(self._put)

    def _put(self, events: list[Any]) -> list[int]:
        began = time.perf_counter()
        try:
            recordings = self.events.put(events)
        except IntegrityError:
            self.observer.write_refused()
            raise
        except Exception:
            self.observer.write_failed()
            raise
        self.observer.written(time.perf_counter() - began)
        return [r.notification.id for r in recordings]

    # -- recording -----------------------------------------------------------------------

    def on_recorded(self, listener: Callable[[int], None]) -> None:
        """Call `listener(position)` after each write (projections wake at once)."""
        self._listeners.append(listener)

    def record(self, *aggregates: Any) -> int:
        """Save in one transaction; return the log position of its last event."""
        return self.record_events(
            [e for aggregate in aggregates for e in aggregate.collect_events()]
        )

    def record_events(self, events: Sequence[Any]) -> int:
        """Put events in one transaction (all or none); return the position of the last."""
        # the event store directly: `save()` checks each object against runtime protocols,
        # which costs more than the write itself on the fire path
        if not events:
            return 0
        position = self._group_commit.write(events)
        for listener in self._listeners:
            try:
                listener(position)
            except Exception:  # the write is committed: a listener's trouble must not undo it
                log.exception("a listener of recorded events failed")
        return position

    # -- jobs ----------------------------------------------------------------------------

    def create_job(
        self, tenant: str, doc: object, by: str, application_names: Mapping[str, str] | None = None
    ) -> Written:
        """Create a job from a client's definition; its name must be free in its application.

        `application_names` may give the application's `name` and `displayName` (both
        default to its id).
        """
        definition, enabled, app_id = parse_new_job(doc)
        self._check_targets(definition)
        application = {"id": app_id, "name": app_id, "displayName": app_id}
        application.update(application_names or {})
        job = Job(
            tenant=tenant, application=application, definition=definition, enabled=enabled, by=by
        )
        claim = self._claim_name(tenant, app_id, definition["name"], job.id)
        position = self._record_claiming(definition["name"], job, claim)
        return Written(job.id, job.version, position)

    def update_job(
        self,
        tenant: str,
        job_id: object,
        doc: object,
        by: str,
        expected_version: int | None = None,
    ) -> Written:
        """Change the given fields; with `expected_version`, refuse if the job moved on."""
        job = self.get_job(tenant, job_id)
        loaded = job.version
        if expected_version is not None and expected_version != loaded:
            raise VersionConflict(expected_version, loaded)
        changes, enabled = parse_job_changes(doc, job.definition)
        if "taskConfig" in changes or "taskType" in changes:
            self._check_targets({**job.definition, **changes})
        aggregates: list[Any] = [job]
        new_name = changes.get("name")
        if new_name is not None:
            app_id = job.application["id"]
            aggregates.append(self._claim_name(tenant, app_id, new_name, job.id))
            old = self._get_name(tenant, app_id, job.name)
            if old is not None and old.job_id == job.id:
                old.release()
                aggregates.append(old)
        job.update(changes, by=by)
        if enabled is True:
            job.enable(by=by)
        elif enabled is False:
            job.disable(by=by)
        if new_name is not None:
            position = self._record_claiming(new_name, *aggregates)
        else:
            position = self._record_versioned(loaded, *aggregates)
        return Written(job.id, job.version, position)

    def _check_targets(self, definition: Mapping[str, Any]) -> None:
        """A static URL must pass the URL guard now; a function must be registered."""
        config = definition["taskConfig"]
        if definition["taskType"] == "FunctionTask":
            names = self._function_names() if self._function_names else None
            if names is not None and config["function"] not in names:
                known = ", ".join(sorted(names)) or "none"
                raise InvalidField("taskConfig.function", f"unknown function; registered: {known}")
            return
        field = "taskConfig.url" if "url" in config else "taskConfig.endpoint"
        url = config.get("url") or config["endpoint"]
        if self._check_url is None or has_parameters(url):
            return  # a URL with parameters is checked when it is called
        try:
            self._check_url(url)
        except UrlBlocked as e:
            raise InvalidField(field, f"blocked: {e.reason}") from None

    def enable_job(self, tenant: str, job_id: object, by: str) -> Written:
        """Let the job fire again."""
        job = self.get_job(tenant, job_id)
        loaded = job.version
        job.enable(by=by)
        return Written(job.id, job.version, self._record_versioned(loaded, job))

    def disable_job(
        self, tenant: str, job_id: object, by: str, reason: str | None = None
    ) -> Written:
        """Stop the job firing (the reason says why, when the system does it)."""
        job = self.get_job(tenant, job_id)
        loaded = job.version
        job.disable(by=by, reason=reason)
        return Written(job.id, job.version, self._record_versioned(loaded, job))

    def delete_job(self, tenant: str, job_id: object, by: str) -> Written:
        """Delete the job and free its name."""
        job = self.get_job(tenant, job_id)
        loaded = job.version
        job.delete(by=by)
        claim = self._get_name(tenant, job.application["id"], job.name)
        aggregates: list[Any] = [job]
        if claim is not None and claim.job_id == job.id:
            claim.release()
            aggregates.append(claim)
        return Written(job.id, job.version, self._record_versioned(loaded, *aggregates))

    def get_job(self, tenant: str, job_id: object, *, include_deleted: bool = False) -> Job:
        """The job's current state from the log; another tenant's job is not found."""
        uuid = parse_id(job_id, JobNotFound)
        try:
            job = self.repository.get(uuid)
        except AggregateNotFoundError:
            raise JobNotFound(job_id) from None
        if not isinstance(job, Job) or job.tenant != tenant:
            raise JobNotFound(job_id)
        if job.deleted and not include_deleted:
            raise JobDeleted(job_id)
        return job

    def _get_name(self, tenant: str, app_id: str, name: str) -> JobName | None:
        try:
            return self.repository.get(JobName.create_id(tenant, app_id, name))
        except AggregateNotFoundError:
            return None

    def _claim_name(self, tenant: str, app_id: str, name: str, job_id: UUID) -> JobName:
        claim = self._get_name(tenant, app_id, name)
        if claim is None:
            return JobName(tenant=tenant, application_id=app_id, name=name, job_id=job_id)
        if claim.held:
            raise NameTaken(name)
        claim.reclaim(job_id)
        return claim

    def _record_claiming(self, name: str, *aggregates: Any) -> int:
        try:
            return self.record(*aggregates)
        except IntegrityError:  # another writer claimed the name (or moved the job) first
            raise NameTaken(name) from None

    def _record_versioned(self, loaded: int, job: Job, *others: Any) -> int:
        """Record a job's new events; if another writer moved it since `loaded`, refuse."""
        try:
            return self.record(job, *others)
        except IntegrityError:
            current = self.repository.get(job.id)
            raise VersionConflict(loaded, current.version) from None

    # -- executions ----------------------------------------------------------------------

    def snapshot_of(self, job: Job) -> dict[str, Any]:
        """What an execution records of its job: the definition it ran, secrets masked."""
        key = (job.id, job.version)
        snapshot = self._snapshots.get(key)
        if snapshot is None:  # one per job version, however often it fires
            if len(self._snapshots) >= 10_000:
                self._snapshots.clear()
            snapshot = self._snapshots[key] = {
                "application": dict(job.application),
                **mask_secrets(job.definition),
                "enabled": job.enabled,
                "version": job.version,
            }
        return snapshot

    def trigger_job(
        self,
        tenant: str,
        job_id: object,
        by: str,
        override: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> Written:
        """Record a manual execution (a fresh id: each trigger runs once more)."""
        job = self.get_job(tenant, job_id)
        if override is not None and not isinstance(override, dict):
            raise InvalidField("body", "an override must be a JSON object")
        execution = Execution.schedule(
            job_id=job.id,
            tenant=tenant,
            job_version=job.version,
            job_snapshot=self.snapshot_of(job),
            scheduled_for=now or datetime.now(UTC),
            trigger=Trigger.MANUAL,
            node=self.node,
            by=by,
            override=override,
            execution_id=uuid4(),
        )
        return Written(execution.id, execution.version, self.record(execution))

    def record_fire(self, tenant: str, fire: Fire, by: str = "scheduler") -> Written:
        """Record one scheduled fire; if another engine recorded it first, say so."""
        job = self.get_job(tenant, fire.job_id)
        execution = self._execution_for(job, fire, by)
        try:
            return Written(execution.id, execution.version, self.record(execution))
        except IntegrityError:
            raise ExecutionAlreadyRecorded(execution.id) from None

    def record_fires(
        self, jobs: Sequence[Job], fires: Sequence[Fire], by: str = "scheduler"
    ) -> list[Execution]:
        """Record many fires in one transaction (group commit); return those this call won.

        A fire another engine already recorded makes the group fail, so the group is then
        recorded one by one and the lost fires are left out.
        """
        by_id = {job.id: job for job in jobs}
        executions = [self._execution_for(by_id[f.job_id], f, by) for f in fires]
        try:
            self.record(*executions)
            return executions
        except IntegrityError:
            won = []
            for fire in fires:
                execution = self._execution_for(by_id[fire.job_id], fire, by)
                try:
                    self.record(execution)
                except IntegrityError:
                    continue
                won.append(execution)
            return won

    def _execution_for(self, job: Job, fire: Fire, by: str) -> Execution:
        return Execution.schedule(
            job_id=job.id,
            tenant=job.tenant,
            job_version=job.version,
            job_snapshot=self.snapshot_of(job),
            scheduled_for=fire.scheduled_for,
            trigger=fire.trigger,
            node=self.node,
            by=by,
            execution_id=fire.id,
        )

    def load_job(self, job_id: UUID) -> tuple[Job, datetime]:
        """A job and the instant since which its current schedule is owed (created, enabled,
        or its pattern or time zone changed): slots before it were never due."""
        loaded = self._fold_job(self.events.get(job_id))
        if loaded is None:
            raise JobNotFound(job_id)
        return loaded

    def load_jobs(self, job_ids: Collection[UUID]) -> list[tuple[Job, datetime]]:
        """`load_job` for many jobs, read from the store together (ids of no job are left out)."""
        if self._select_events_of is None:
            found = []
            for job_id in job_ids:
                with contextlib.suppress(JobNotFound):
                    found.append(self.load_job(job_id))
            return found
        by_job: dict[UUID, list[Any]] = {}
        for stored in self._select_events_of(self.recorder, job_ids):
            by_job.setdefault(stored.originator_id, []).append(stored)
        to_event = self.mapper.to_domain_event
        loaded = (self._fold_job(map(to_event, stored)) for stored in by_job.values())
        return [job for job in loaded if job is not None]

    @staticmethod
    def _fold_job(events: Iterable[Any]) -> tuple[Job, datetime] | None:
        job: Any = None
        active_since = datetime.min.replace(tzinfo=UTC)
        for event in events:
            job = event.mutate(job)
            if isinstance(event, Job.Enabled | Job.Created) or (  # type: ignore[attr-defined]
                isinstance(event, Job.Updated)  # type: ignore[attr-defined]
                and ("pattern" in event.changes or "timezone" in event.changes)
            ):
                active_since = event.timestamp
        return (job, active_since) if isinstance(job, Job) else None

    def backfill(
        self,
        tenant: str,
        job_id: object,
        start: datetime,
        end: datetime,
        by: str,
        limit: int = 10_000,
    ) -> list[Execution]:
        """Record each slot of `[start, end)` once (a slot already run is not run again);
        return the executions this call recorded. Only past slots can be backfilled."""
        job = self.get_job(tenant, job_id)
        now = datetime.now(UTC)
        if end <= start:
            raise InvalidField("to", "must be after from")
        if end > now:
            raise InvalidField("to", "must not be in the future: the schedule runs those slots")
        slots = []
        for slot in job.schedule.slots(start, end):
            if len(slots) == limit:
                raise InvalidField("to", f"the range holds more than {limit} slots")
            slots.append(slot)
        return self.record_fires([job], [Fire(job.id, s, Trigger.BACKFILL) for s in slots], by=by)

    def record_skips(self, skips: Sequence[Any]) -> list[Any]:
        """Record runs of skipped slots; return those not already recorded by another engine."""
        try:  # together, unless another engine recorded one of them: then one by one
            self.record(*skips)
            return list(skips)
        except IntegrityError:
            pass
        won = []
        for skip in skips:
            try:
                self.record(skip)
            except IntegrityError:
                continue
            won.append(skip)
        return won

    def load_executions(self, execution_ids: Collection[UUID]) -> dict[UUID, Execution]:
        """Executions by id, read from the store together (ids of none are left out)."""
        folded: dict[UUID, Any] = {}  # ids of jobs and the like are left out below
        if self._select_events_of is None:
            for execution_id in execution_ids:
                with contextlib.suppress(AggregateNotFoundError):
                    folded[execution_id] = self.repository.get(execution_id)
        else:
            to_event = self.mapper.to_domain_event
            for stored in self._select_events_of(self.recorder, execution_ids):  # by version
                aggregate_id = stored.originator_id
                folded[aggregate_id] = to_event(stored).mutate(folded.get(aggregate_id))
        return {i: e for i, e in folded.items() if isinstance(e, Execution)}

    def get_execution(self, tenant: str, execution_id: object) -> Execution:
        """An execution's state from the log; another tenant's is not found."""
        uuid = parse_id(execution_id, ExecutionNotFound)
        try:
            execution = self.repository.get(uuid)
        except AggregateNotFoundError:
            raise ExecutionNotFound(execution_id) from None
        if not isinstance(execution, Execution) or execution.tenant != tenant:
            raise ExecutionNotFound(execution_id)
        return execution
