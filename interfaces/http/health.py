"""Readiness (`/readyz`) and the store reads behind it and `/metrics`, bounded in time.

The event store's driver retries a lost connection for a minute or more before it fails, so
a probe that simply waited would hang exactly when it matters; instead each read runs in a
thread, one at a time, and a caller waits for it at most a few seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from starlette.concurrency import run_in_threadpool

from application.engine import Engine
from interfaces.composition import Core

T = TypeVar("T")
STORE_TIMEOUT = 2.0  # seconds a probe waits for the store before calling it unreachable


class StoreUnanswered(Exception):
    """The store did not answer within the probe's time."""


class Probe(Generic[T]):
    """A blocking read run in a thread, at most one at a time: callers arriving while one is
    under way wait for that one (so a hung store piles up no threads), each for at most
    `timeout` seconds."""

    def __init__(self, read: Callable[[], T], timeout: float = STORE_TIMEOUT) -> None:
        self.read, self.timeout = read, timeout
        self._running: asyncio.Future[T] | None = None

    async def __call__(self) -> T:
        """The read's value; raises `StoreUnanswered` after the timeout, or the read's error."""
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(run_in_threadpool(self.read))
            self._running.add_done_callback(_retrieved)  # a late failure is nobody's to raise
        try:
            return await asyncio.wait_for(asyncio.shield(self._running), self.timeout)
        except TimeoutError:
            raise StoreUnanswered(f"no answer within {self.timeout:g} s") from None


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class Readiness:
    """Whether this node should get traffic: its store answers, its read models are at most
    `max_lag` log positions behind, and its engine (when it runs one) has started and runs.
    Each check says why it failed."""

    def __init__(self, core: Core, engine: Engine | None, max_lag: int) -> None:
        self.core, self.engine, self.max_lag = core, engine, max_lag
        self.store = Probe(core.store_head)
        self.engine_task: asyncio.Task[None] | None = None  # set by the app when it runs one

    async def report(self) -> dict[str, Any]:
        """`{"ready", "checks": {name: {"ok", "reason"?, ...}}}`."""
        checks: dict[str, dict[str, Any]] = {}
        head: int | None = None
        try:
            head = await self.store()
            checks["store"] = {"ok": True, "position": head}
        except StoreUnanswered as e:
            checks["store"] = {"ok": False, "reason": f"unreachable: {e}"}
        except Exception as e:  # noqa: BLE001  # any failure to read it makes the node not ready
            # the type only: a driver's message may name hosts and users to an anonymous caller
            checks["store"] = {"ok": False, "reason": f"unreachable: {type(e).__name__}"}
        checks["projections"] = self._projections(head)
        if self.engine is not None:
            checks["engine"] = self._engine(self.engine)
        return {"ready": all(c["ok"] for c in checks.values()), "checks": checks}

    def _projections(self, head: int | None) -> dict[str, Any]:
        if head is None:
            return {"ok": False, "reason": "unknown: the store did not answer"}
        lag = {name: state["lag"] for name, state in self.core.projections.lag(head).items()}
        behind = sorted(name for name, n in lag.items() if n > self.max_lag)
        check: dict[str, Any] = {"ok": not behind, "lag": lag, "maxLag": self.max_lag}
        if behind:
            check["reason"] = f"more than {self.max_lag} positions behind: {', '.join(behind)}"
        return check

    def _engine(self, engine: Engine) -> dict[str, Any]:
        task = self.engine_task
        if task is not None and task.done():
            error = None if task.cancelled() else task.exception()
            reason = f"stopped ({type(error).__name__})" if error else "stopped"
            return {"ok": False, "reason": reason}
        if not engine.started.is_set():
            return {"ok": False, "reason": "starting"}
        return {"ok": True, "jobs": engine.scheduled_jobs}
