"""What the application needs from the outside world; adapters match these without importing them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from domain.execution import Execution

Row = dict[str, Any]


class Clock(Protocol):
    """The current instant and waiting for a later one (injected, so tests can move time)."""

    def now(self) -> datetime: ...

    async def wait_until(self, deadline: datetime, wake: asyncio.Event) -> None:
        """Return at `deadline`, or earlier when `wake` is set."""
        ...


class EngineViews(Protocol):
    """What the engine reads at start from the read models (afterwards it follows the log)."""

    def enabled_job_ids(self) -> list[str]: ...

    def decided_until(self) -> dict[str, str]: ...

    def unfinished(self) -> list[Row]: ...

    def beat(self, node: str, at: str) -> None:
        """Note that engine `node` is alive at `at` (ISO instant)."""
        ...

    def last_seen(self) -> dict[str, str]:
        """Each engine node's last heartbeat (ISO instants)."""
        ...


class EngineObserver(Protocol):
    """What the engine tells as it works, for metrics. The fire path makes several calls per
    fire, thousands of fires a second: each must cost a microsecond or so, on the event loop."""

    def started(self, execution: Execution) -> None:
        """An attempt of `execution` began (its `started_at` and `attempt` are set)."""
        ...

    def finished(self, execution: Execution) -> None:
        """`execution` ended, succeeded or failed."""
        ...

    def retried(self) -> None:
        """An attempt failed and another follows."""
        ...

    def skipped(self, reason: str, slots: int) -> None:
        """`slots` slots were decided not to run, for `reason` (a `SkipReason`)."""
        ...

    def tick_began(self) -> None:
        """The tick loop looks at what is due."""
        ...

    def tick_ended(self) -> None:
        """The due fires are recorded and launched."""
        ...


class StoreObserver(Protocol):
    """What the event store's writer tells, for metrics (one writer at a time)."""

    def written(self, seconds: float) -> None:
        """One transaction of events was stored in `seconds`."""
        ...

    def write_refused(self) -> None:
        """The store refused a write: another writer recorded those events first."""
        ...

    def write_failed(self) -> None:
        """A write failed for another reason (the store unreachable)."""
        ...


class Unobserved:
    """An `EngineObserver` and `StoreObserver` that keeps nothing: the default."""

    def started(self, execution: Execution) -> None:
        pass

    def finished(self, execution: Execution) -> None:
        pass

    def retried(self) -> None:
        pass

    def skipped(self, reason: str, slots: int) -> None:
        pass

    def tick_began(self) -> None:
        pass

    def tick_ended(self) -> None:
        pass

    def written(self, seconds: float) -> None:
        pass

    def write_refused(self) -> None:
        pass

    def write_failed(self) -> None:
        pass


class ProjectionStore(Protocol):
    """Rows of one projection plus its tracking position, written together in one commit."""

    name: str

    def position(self) -> int:
        """The last log position this projection has applied (0: none)."""
        ...

    def load(self, keys: Iterable[str]) -> dict[str, Row]:
        """The current rows for these keys (missing keys are absent)."""
        ...

    def commit(self, changes: Mapping[str, Row | None], expected: int, position: int) -> bool:
        """Write rows (None deletes) and move the position from `expected` to `position`.

        Returns False, writing nothing, when the stored position is no longer `expected`
        (another process applied these events first): exactly once, never twice.
        """
        ...

    def reset(self) -> None:
        """Drop every row and the position, for a rebuild from the start of the log."""
        ...

    def dump(self) -> tuple[int, dict[str, Row]]:
        """The position and every row by key, read in one snapshot (for verification)."""
        ...


class JobsView(ProjectionStore, Protocol):
    """The `jobs` read model."""

    def get_job(self, tenant: str, job_id: str) -> Row | None: ...

    def list_jobs(
        self,
        tenant: str,
        *,
        enabled: bool | None = None,
        task_type: str | None = None,
        application_id: str | None = None,
        q: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[Row], int]: ...


class ExecutionsView(ProjectionStore, Protocol):
    """The `executions` read model."""

    def get_execution(self, tenant: str, execution_id: str) -> Row | None: ...

    def list_executions(
        self,
        tenant: str,
        *,
        job_id: str | None = None,
        status: str | None = None,
        since: str | None = None,
        until: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[Row], int]: ...


class LogLoader(Protocol):
    """Writes a whole exported log into an empty store, each event at its own position."""

    def load(self, batches: Iterable[Sequence[Any]]) -> int:
        """Write every batch of notifications in one transaction, committed only when the
        batches run out (an error raised while they are read writes nothing); the events
        written. Raises `StoreNotEmpty` if the store already holds events."""
        ...


# -- running tasks ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """One attempt of one execution, its parameters already resolved (secrets in clear)."""

    job_id: UUID
    execution_id: UUID
    task_type: str
    config: Mapping[str, Any]
    scheduled_for: datetime
    attempt: int
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """What an attempt came to: a result, or an error `{message, code, ...}`."""

    ok: bool
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class TaskRunner(Protocol):
    """Runs one attempt; never raises for a failure of the task itself (that is an outcome)."""

    async def run(self, request: TaskRequest) -> TaskOutcome: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class FunctionContext:
    """What a function task is told besides its payload."""

    job_id: str
    execution_id: str
    scheduled_for: datetime
    attempt: int
