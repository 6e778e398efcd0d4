"""The decision ledger: for each slot of a job in a range, what happened and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from application.jobs import Jobs, parse_id
from domain.errors import InvalidField, JobNotFound
from domain.instants import iso_ms
from domain.job import Job
from domain.schedule import Schedule

MAX_SLOTS = 10_000


class LedgerViews(Protocol):
    """The read models the ledger joins."""

    def list_executions(self, tenant: str, **filters: Any) -> tuple[list[dict[str, Any]], int]: ...

    def skips_between(
        self, tenant: str, job_id: str, since: str, until: str
    ) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class _Period:
    start: datetime
    schedule: Schedule | None  # None: the job was disabled (or not yet created) then


def _periods(app: Jobs, tenant: str, job_id: object) -> tuple[Job, list[_Period]]:
    """When the job was owed which schedule, from its own history."""
    uuid = parse_id(job_id, JobNotFound)
    job: Any = None
    periods: list[_Period] = []
    for event in app.events.get(uuid):
        job = event.mutate(job)
        active = job.enabled and not job.deleted
        periods.append(_Period(event.timestamp, job.schedule if active else None))
    if not isinstance(job, Job) or job.tenant != tenant:
        raise JobNotFound(job_id)
    return job, periods


def slot_ledger(
    app: Jobs, executions: LedgerViews, skips: LedgerViews, tenant: str, job_id: object,
    start: datetime, end: datetime, now: datetime,
) -> list[dict[str, Any]]:  # fmt: skip
    """Each slot the job owed in [start, end): its execution, or its skip and the reason.

    A slot after `now`, or one no engine has decided yet, is `pending`; a slot is never
    listed twice, and every owed slot is listed.
    """
    if end <= start:
        raise InvalidField("to", "must be after from")
    _, periods = _periods(app, tenant, job_id)
    owed: list[datetime] = []
    for i, period in enumerate(periods):
        period_end = periods[i + 1].start if i + 1 < len(periods) else end
        lo, hi = max(start, period.start), min(end, period_end)
        if period.schedule is None or lo >= hi:
            continue
        for slot in period.schedule.slots(lo, hi):
            owed.append(slot)
            if len(owed) > MAX_SLOTS:
                raise InvalidField("to", f"the range holds more than {MAX_SLOTS} slots")
    since, until = iso_ms(start), iso_ms(end)
    assert since is not None and until is not None
    rows, _ = executions.list_executions(
        tenant, job_id=str(job_id), since=since, until=until, limit=MAX_SLOTS + 1
    )
    by_slot = {r["scheduledFor"]: r for r in rows if r["trigger"] != "manual"}
    runs = skips.skips_between(tenant, str(job_id), since, until)
    ledger = []
    for slot in owed:
        key = iso_ms(slot)
        row = by_slot.get(key or "")
        if row is not None:
            entry = {
                "slot": key,
                "outcome": row["status"],
                "executionId": row["id"],
                "trigger": row["trigger"],
            }
            if row.get("error"):
                entry["error"] = row["error"]
            ledger.append(entry)
            continue
        run = next((r for r in runs if r["from"] <= (key or "") <= r["to"]), None)
        if run is not None:
            ledger.append(
                {"slot": key, "outcome": "skipped", "reason": run["reason"], "skipId": run["id"]}
            )
        else:
            ledger.append({"slot": key, "outcome": "pending" if slot >= now else "undecided"})
    return ledger
