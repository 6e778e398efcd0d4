"""A bound on how many executions run at once, fair to those that wait."""

from __future__ import annotations

import asyncio
from collections import deque


class Limiter:
    """At most `limit` holders; waiters get their place in the order they came.

    asyncio.Semaphore (Python 3.11) wakes a waiter by scanning its queue past every waiter
    already woken but not yet resumed: when a slot's thousands of fires queue at once, each
    release scanned the whole burst, a cost that grew with the square of its size. Here a
    release hands its place straight to the next waiter.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a limiter needs a limit of at least 1")
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """How many wait for a place (cancelled ones may count until they are passed over)."""
        return len(self._waiters)

    async def acquire(self) -> None:
        """Take a place, waiting for one if none is free."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        place: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(place)
        try:
            await place
        except asyncio.CancelledError:
            if place.done() and not place.cancelled():
                self.release()  # it was handed a place as it was cancelled: pass it on
            else:
                self._waiters.remove(place)
            raise

    def release(self) -> None:
        """Give a place back: to the first waiter, if any."""
        while self._waiters:
            place = self._waiters.popleft()
            if not place.done():
                place.set_result(None)
                return
        self._free += 1
