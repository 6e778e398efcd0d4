"""Running an engine in a test: a fake clock, a scripted task runner, a thread for the loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from application.engine import Engine, EngineSettings
from application.ports import TaskOutcome, TaskRequest
from infrastructure.clock import SystemClock
from interfaces.composition import Core


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._moved: list[asyncio.Event] = []
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> datetime:
        return self._now

    async def wait_until(self, deadline: datetime, wake: asyncio.Event) -> None:
        self.loop = asyncio.get_running_loop()
        while self._now < deadline and not wake.is_set():
            moved = asyncio.Event()
            with self._lock:
                self._moved.append(moved)
            waiters = [asyncio.ensure_future(moved.wait()), asyncio.ensure_future(wake.wait())]
            _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for p in pending:
                p.cancel()

    def advance(self, seconds: float) -> None:
        """Move time on (from any thread) and wake whoever waits."""
        self._now += timedelta(seconds=seconds)
        with self._lock:
            moved, self._moved = self._moved, []
        if self.loop is not None and not self.loop.is_closed():
            for event in moved:
                self.loop.call_soon_threadsafe(event.set)


@dataclass
class ScriptedRunner:
    """A task runner that records each request and answers as the test scripts it."""

    requests: list[TaskRequest] = field(default_factory=list)
    failures: dict[UUID, int] = field(default_factory=dict)  # job → attempts to fail first
    gate: dict[UUID, threading.Event] = field(default_factory=dict)  # job → released when set
    error_code: str = "HTTP_STATUS"

    async def run(self, request: TaskRequest) -> TaskOutcome:
        self.requests.append(request)
        gate = self.gate.get(request.job_id)
        if gate is not None:
            while not gate.is_set():
                await asyncio.sleep(0.01)
        left = self.failures.get(request.job_id, 0)
        if left:
            self.failures[request.job_id] = left - 1
            return TaskOutcome(
                ok=False, error={"message": "scripted failure", "code": self.error_code}
            )
        return TaskOutcome(ok=True, result={"data": {"attempt": request.attempt}})

    async def close(self) -> None:
        return None

    def for_job(self, job_id: UUID) -> list[TaskRequest]:
        return [r for r in self.requests if r.job_id == job_id]


@contextmanager
def running_engine(
    core: Core, runner: Any, clock: Any = None, **settings: Any
) -> Iterator[Engine]:
    """An engine on its own event loop in a thread, started before the block, stopped after.

    With a fake clock, fires are decided at their slot unless the test asks otherwise: time
    that stands still never reaches a slot decided ahead of it, so which fires exist would
    depend on the fraction of a second the test happened to start at."""
    options = {"node": "test-node", "poll_seconds": 0.05, **settings}
    if clock is not None:
        options.setdefault("decide_ahead_seconds", 0.0)
    engine = Engine(
        core.jobs, runner, clock or SystemClock(), core.engine_views(), EngineSettings(**options)
    )
    core.jobs.on_recorded(engine.log_changed)
    started = threading.Event()
    failure: list[BaseException] = []

    def main() -> None:
        async def go() -> None:
            task = asyncio.create_task(engine.run())
            ready = asyncio.create_task(engine.started.wait())
            await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
            started.set()
            try:
                await task
            finally:
                await runner.close()  # the HTTP runner's session belongs to this loop

        try:
            asyncio.run(go())
        except BaseException as e:  # noqa: BLE001  # re-raised in the test's thread below
            failure.append(e)
            started.set()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert started.wait(30), "the engine did not start"
    if failure:
        raise failure[0]
    try:
        yield engine
    finally:
        engine.stop()
        thread.join(60)
        if failure:
            raise failure[0]


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll a condition until it holds (a hang guard, not an assertion on time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]
