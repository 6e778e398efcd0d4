"""The Execution aggregate: one fire of a job, from scheduled to succeeded or failed."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import IllegalTransition


class Status(StrEnum):
    """Where an execution stands."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Trigger(StrEnum):
    """Why an execution exists."""

    CRON = "cron"
    MANUAL = "manual"
    CATCH_UP = "catch-up"
    BACKFILL = "backfill"


class ErrorCode(StrEnum):
    """Why an execution (or one attempt of it) failed."""

    TIMEOUT = "TIMEOUT"
    HTTP_STATUS = "HTTP_STATUS"
    CONNECTION = "CONNECTION"
    URL_BLOCKED = "URL_BLOCKED"
    INTERRUPTED = "INTERRUPTED"
    FUNCTION_ERROR = "FUNCTION_ERROR"
    UNKNOWN_FUNCTION = "UNKNOWN_FUNCTION"
    UNKNOWN = "UNKNOWN"


def slot_instant(instant: datetime) -> datetime:
    """A scheduled instant as the log keeps it: UTC, whole milliseconds."""
    if instant.tzinfo is None:
        raise ValueError("a scheduled instant must be timezone-aware")
    instant = instant.astimezone(UTC)
    return instant.replace(microsecond=instant.microsecond // 1000 * 1000)


def scheduled_execution_id(job_id: UUID, scheduled_for: datetime) -> UUID:
    """The id of a job's fire at one slot: every engine derives the same one, so one wins."""
    return uuid5(NAMESPACE_URL, f"/executions/{job_id}/{_slot_text(scheduled_for)}")


@lru_cache(maxsize=256)  # a tick's fires share a few slots: each is formatted once
def _slot_text(scheduled_for: datetime) -> str:
    return slot_instant(scheduled_for).isoformat()


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED})


class Execution(Aggregate):
    """One fire of a job; retries are further attempts of the same execution."""

    @event("Scheduled")
    def __init__(
        self,
        job_id: UUID,
        tenant: str,
        job_version: int,
        job_snapshot: dict[str, Any],
        scheduled_for: datetime,
        trigger: str,
        node: str,
        by: str,
        override: dict[str, Any] | None = None,
    ) -> None:
        self.job_id = job_id
        self.tenant = tenant
        self.job_version = job_version
        self.job_snapshot = job_snapshot
        self.scheduled_for = scheduled_for
        self.trigger = trigger
        self.node = node
        self.by = by
        self.override = override
        self.status = Status.PENDING
        self.attempt = 0
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.next_attempt_at: datetime | None = None
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None

    @classmethod
    def schedule(
        cls,
        job_id: UUID,
        tenant: str,
        job_version: int,
        job_snapshot: dict[str, Any],
        scheduled_for: datetime,
        trigger: Trigger,
        node: str,
        by: str,
        override: dict[str, Any] | None = None,
        execution_id: UUID | None = None,
    ) -> Execution:
        """A new pending execution; a slot's fire gets the slot's deterministic id."""
        scheduled_for = slot_instant(scheduled_for)
        if execution_id is None:
            execution_id = scheduled_execution_id(job_id, scheduled_for)
        return cls._create(
            event_class=cls.Scheduled,  # type: ignore[attr-defined]
            id=execution_id,
            job_id=job_id,
            tenant=tenant,
            job_version=job_version,
            job_snapshot=job_snapshot,
            scheduled_for=scheduled_for,
            trigger=trigger.value,
            node=node,
            by=by,
            override=override,
        )

    # -- decisions -----------------------------------------------------------------------

    def start(self, node: str, at: datetime) -> None:
        """Begin the next attempt."""
        if self.status is not Status.PENDING:
            raise IllegalTransition(f"cannot start an execution that is {self.status}")
        # `trigger_event` directly: the decorated method's argument handling costs more than
        # the event (this runs once per fire)
        self.trigger_event(self.Started, attempt=self.attempt + 1, node=node, at=at)

    def fail_attempt(self, error: dict[str, Any], at: datetime, next_attempt_at: datetime) -> None:
        """Record a failed attempt that another attempt will follow."""
        if self.status is not Status.RUNNING:
            raise IllegalTransition(
                f"cannot fail an attempt of an execution that is {self.status}"
            )
        self._attempt_failed(
            attempt=self.attempt, error=error, at=at, next_attempt_at=next_attempt_at
        )

    def succeed(self, result: dict[str, Any], at: datetime) -> None:
        """Record the last attempt's success."""
        if self.status is not Status.RUNNING:
            raise IllegalTransition(f"cannot succeed an execution that is {self.status}")
        self.trigger_event(
            self.Succeeded,
            result=result,
            at=at,
            duration_ms=self._duration_ms(at),
        )

    def fail(self, error: dict[str, Any], at: datetime) -> None:
        """Record the execution's final failure (from pending too: e.g. interrupted)."""
        if self.status in TERMINAL:
            raise IllegalTransition(f"cannot fail an execution that already {self.status}")
        self._failed(error=error, at=at, duration_ms=self._duration_ms(at))

    def _duration_ms(self, at: datetime) -> int | None:
        if self.started_at is None:
            return None
        return max(0, round((at - self.started_at).total_seconds() * 1000))

    # -- events --------------------------------------------------------------------------

    # `Started` and `Succeeded` come once per fire each: written as classes with their own
    # `apply`, they skip the decorator's argument matching (the same topics and fields)

    class Started(Aggregate.Event):
        """An attempt began."""

        attempt: int
        node: str
        at: datetime

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Execution)
            aggregate.status, aggregate.attempt = Status.RUNNING, self.attempt
            aggregate.node, aggregate.started_at, aggregate.next_attempt_at = (
                self.node,
                self.at,
                None,
            )

    @event("AttemptFailed")
    def _attempt_failed(
        self, attempt: int, error: dict[str, Any], at: datetime, next_attempt_at: datetime
    ) -> None:
        self.status, self.error, self.next_attempt_at = Status.PENDING, error, next_attempt_at

    class Succeeded(Aggregate.Event):
        """The last attempt succeeded."""

        result: dict[str, Any]
        at: datetime
        duration_ms: int | None

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Execution)
            aggregate.status, aggregate.result = Status.SUCCEEDED, self.result
            aggregate.error, aggregate.finished_at = None, self.at

    @event("Failed")
    def _failed(self, error: dict[str, Any], at: datetime, duration_ms: int | None) -> None:
        self.status, self.error, self.finished_at = Status.FAILED, error, at
        self.next_attempt_at = None
