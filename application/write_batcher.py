"""Group commit for the engine: writes made in the same moment share one transaction."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from eventsourcing.persistence import IntegrityError

from application.jobs import Jobs

log = logging.getLogger(__name__)


class WriteBatcher:
    """Collects aggregates' new events and records them together, off the event loop.

    `record()` resolves to True when the aggregate's events were stored, False when another
    writer got there first (the event store refused them): the group is then written one by
    one, so one conflict never loses the others' writes.
    """

    def __init__(self, jobs: Jobs, max_batch: int = 1000) -> None:
        self.jobs, self.max_batch = jobs, max_batch
        self._pending: list[tuple[list[Any], asyncio.Future[bool]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def record(self, *aggregates: Any) -> bool:
        """Store these aggregates' pending events (as one unit) in the next group commit."""
        events = [e for a in aggregates for e in a.collect_events()]
        if not events:
            return True
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((events, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        return await future

    def submit(self, *aggregates: Any) -> None:
        """Store these aggregates' pending events in the next group commit, without waiting
        for the outcome (a refused or failed write is logged); call from the event loop."""
        events = [e for a in aggregates for e in a.collect_events()]
        if not events:
            return
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_log_failure)
        self._pending.append((events, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())

    async def drain(self) -> None:
        """Wait until everything handed in so far is written."""
        while self._flushing is not None and not self._flushing.done():
            await self._flushing

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the writes of this moment join the group
        while self._pending:
            group, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            try:
                results = await asyncio.to_thread(self._write, [events for events, _ in group])
            except Exception as e:  # noqa: BLE001  # a store outage: each writer of the group gets it
                for _, future in group:
                    if not future.done():
                        future.set_exception(e)
                continue
            for (_, future), ok in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(ok)

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


def _log_failure(future: asyncio.Future[bool]) -> None:
    if future.cancelled():
        return
    if future.exception() is not None:
        log.error("a group commit failed", exc_info=future.exception())
    elif not future.result():
        log.warning("a write handed in without waiting was refused (another writer was first)")
