"""One runner for every task type: dispatches each attempt to the runner of its type."""

from __future__ import annotations

from collections.abc import Mapping

from application.ports import TaskOutcome, TaskRequest, TaskRunner
from infrastructure.logs import running_task


class TaskRunners:
    """Runs an attempt with the runner registered for its task type."""

    def __init__(self, runners: Mapping[str, TaskRunner]) -> None:
        self.runners = dict(runners)

    async def run(self, request: TaskRequest) -> TaskOutcome:
        """Dispatch by `taskType`; an unknown type is an outcome, not a crash."""
        runner = self.runners.get(request.task_type)
        if runner is None:
            message = f"no runner for task type {request.task_type!r}"
            return TaskOutcome(ok=False, error={"message": message, "code": "UNKNOWN"})
        token = running_task.set((request.job_id, request.execution_id))  # for its log lines
        try:
            return await runner.run(request)
        finally:
            running_task.reset(token)

    async def close(self) -> None:
        """Close every runner (sessions, pools)."""
        for runner in self.runners.values():
            await runner.close()
