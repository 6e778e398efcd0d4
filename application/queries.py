"""Reads for clients: projections only, always scoped to the caller's tenant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from application.jobs import parse_id
from application.ports import ExecutionsView, JobsView, Row
from domain.errors import ExecutionNotFound, JobNotFound

_INTERNAL = ("tenant",)


def present(row: Row) -> Row:
    """A row as a client sees it: internal columns removed."""
    return {k: v for k, v in row.items() if k not in _INTERNAL}


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list and the total across pages."""

    items: list[Row]
    total: int


class Queries:
    """The read side: jobs and executions as the read models hold them."""

    def __init__(self, jobs: JobsView, executions: ExecutionsView) -> None:
        self.jobs, self.executions = jobs, executions

    def get_job(self, tenant: str, job_id: str) -> Row:
        """One job; another tenant's or a deleted one is not found."""
        row = self.jobs.get_job(tenant, str(parse_id(job_id, JobNotFound)))
        if row is None:
            raise JobNotFound(job_id)
        return present(row)

    def list_jobs(self, tenant: str, offset: int = 0, limit: int = 50, **filters: Any) -> Page:
        """Jobs, oldest first, with filters `enabled`, `task_type`, `application_id`, `q`."""
        rows, total = self.jobs.list_jobs(tenant, offset=offset, limit=limit, **filters)
        return Page([present(r) for r in rows], total)

    def get_execution(self, tenant: str, execution_id: str) -> Row:
        """One execution; another tenant's is not found."""
        row = self.executions.get_execution(tenant, str(parse_id(execution_id, ExecutionNotFound)))
        if row is None:
            raise ExecutionNotFound(execution_id)
        return present(row)

    def get_execution_detail(
        self, tenant: str, execution_id: str, snapshot: Callable[[str], Row]
    ) -> Row:
        """One execution with the job snapshot it ran (kept in the log, given by `snapshot`)."""
        row = self.get_execution(tenant, execution_id)
        return {**row, "jobSnapshot": snapshot(row["id"])}

    def list_executions(
        self, tenant: str, offset: int = 0, limit: int = 50, **filters: Any
    ) -> Page:
        """Executions, newest scheduled first, with filters `job_id`, `status`, `since`, `until`."""
        rows, total = self.executions.list_executions(
            tenant, offset=offset, limit=limit, **filters
        )
        return Page([present(r) for r in rows], total)
