"""The decision ledger's skip records: slots of an enabled job that were not run, and why."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.execution import slot_instant


class SkipReason(StrEnum):
    """Why a slot did not run."""

    OVERLAP = "OVERLAP"  # concurrency policy `skip` (or `queue` with one already queued)
    MISSED = "MISSED"  # misfire policy `skip`: no engine ran at the slot
    OUTSIDE_CATCH_UP_WINDOW = "OUTSIDE_CATCH_UP_WINDOW"  # older than the catch-up window


class SkippedSlots(Aggregate):
    """A run of consecutive slots of one job skipped for one reason: one record, not one per slot.

    Its id comes from the job and the run's first slot, so two engines recording the same run
    collide in the event store and one wins.
    """

    @staticmethod
    def create_id(job_id: UUID, first: datetime) -> UUID:
        """The same id for the same job and first slot, on every node."""
        return uuid5(NAMESPACE_URL, f"/skips/{job_id}/{slot_instant(first).isoformat()}")

    @event("Skipped")
    def __init__(
        self,
        job_id: UUID,
        tenant: str,
        first: datetime,
        last: datetime,
        count: int,
        reason: str,
        node: str,
    ) -> None:
        self.job_id, self.tenant, self.reason = job_id, tenant, reason
        self.first, self.last, self.count = first, last, count

    @classmethod
    def record(
        cls,
        job_id: UUID,
        tenant: str,
        first: datetime,
        last: datetime,
        count: int,
        reason: SkipReason,
        node: str,
    ) -> SkippedSlots:
        """A new run of `count` skipped slots from `first` to `last` (both included)."""
        return cls(
            job_id=job_id,
            tenant=tenant,
            first=slot_instant(first),
            last=slot_instant(last),
            count=count,
            reason=reason.value,
            node=node,
        )

    def extend(self, last: datetime, added: int) -> None:
        """The run goes on: one more slot (or several) skipped for the same reason."""
        self._extended(job_id=self.job_id, last=slot_instant(last), count=self.count + added)

    @event("Extended")
    def _extended(self, job_id: UUID, last: datetime, count: int) -> None:
        self.last, self.count = last, count
