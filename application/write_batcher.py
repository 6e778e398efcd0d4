"""Group commit for the engine: writes made in the same moment share one transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from typing import Any

from eventsourcing.persistence import IntegrityError

from application.jobs import Jobs

log = logging.getLogger(__name__)


class _Unit:
    """One caller's events, stored all together or not at all; `future` is None when the
    caller does not wait for the outcome."""

    __slots__ = ("events", "future")

    def __init__(self, events: list[Any], future: asyncio.Future[bool] | None) -> None:
        self.events, self.future = events, future


class WriteBatcher:
    """Collects aggregates' new events and records them together, in a writer thread.

    `record()` resolves to True when the aggregate's events were stored, False when another
    writer got there first (the event store refused them): the group is then written one by
    one, so one conflict never loses the others' writes. Units are written in the order they
    were handed in.

    The writer thread takes the next group as soon as it has stored one: it does not wait
    for the event loop in between. Under load the loop's turns grow long, and a writer that
    waited for a turn per group fell behind the fires (tens of thousands of outcomes queued,
    and the memory with them).
    """

    def __init__(self, jobs: Jobs, max_batch: int = 1000) -> None:
        self.jobs, self.max_batch = jobs, max_batch
        self._queue: deque[_Unit] = deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None  # while there is something to write
        self._closed = False
        self._handed = 0  # units handed in; the loop's side only
        self._resolved = 0  # units whose write ended; the loop's side only
        self._drains: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def waiting(self) -> int:
        """Units handed in whose write has not ended yet."""
        return self._handed - self._resolved

    async def record(self, *aggregates: Any) -> bool:
        """Store these aggregates' pending events (as one unit) in the next group commit."""
        events = [e for a in aggregates for e in a.collect_events()]
        if not events:
            return True
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._hand_in(_Unit(events, future))
        return await future

    def submit(self, *aggregates: Any) -> None:
        """Store these aggregates' pending events in the next group commit, without waiting
        for the outcome (a refused or failed write is logged); call from the event loop."""
        events = [e for a in aggregates for e in a.collect_events()]
        if events:
            self._hand_in(_Unit(events, None))

    async def drain(self) -> None:
        """Wait until everything handed in so far is written."""
        if self._resolved >= self._handed:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drains.append((self._handed, done))
        await done

    def close(self) -> None:
        """Let the writer thread end once what was handed in is written (thread-safe); a
        later unit starts another."""
        with self._wake:
            self._closed = True
            self._wake.notify()

    def _hand_in(self, unit: _Unit) -> None:
        loop = asyncio.get_running_loop()
        self._handed += 1
        with self._wake:
            self._queue.append(unit)
            self._closed = False
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(loop,), name="engine-writer", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if not self._queue:
                    self._thread = None
                    return
                count = min(len(self._queue), self.max_batch)
                group = [self._queue.popleft() for _ in range(count)]
            try:
                outcome: list[bool] | BaseException = self._write([u.events for u in group])
            except Exception as e:  # noqa: BLE001  # a store outage: each writer of the group gets it
                outcome = e
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(self._resolve, group, outcome)

    def _resolve(self, group: list[_Unit], outcome: list[bool] | BaseException) -> None:
        for i, unit in enumerate(group):
            ok = outcome if isinstance(outcome, BaseException) else outcome[i]
            future = unit.future
            if future is None:
                _log_failure(ok)
            elif not future.done():
                if isinstance(ok, BaseException):
                    future.set_exception(ok)
                else:
                    future.set_result(ok)
        self._resolved += len(group)
        while self._drains and self._drains[0][0] <= self._resolved:
            _, done = self._drains.pop(0)
            if not done.done():
                done.set_result(None)

    def _write(self, units: list[list[Any]]) -> list[bool]:
        try:
            self.jobs.record_events([e for unit in units for e in unit])
            return [True] * len(units)
        except IntegrityError:
            results = []
            for unit in units:
                try:
                    self.jobs.record_events(unit)
                    results.append(True)
                except IntegrityError:
                    results.append(False)
            return results


def _log_failure(ok: bool | BaseException) -> None:
    if isinstance(ok, BaseException):
        log.error("a group commit failed", exc_info=ok)
    elif not ok:
        log.warning("a write handed in without waiting was refused (another writer was first)")
