"""The wall clock."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime


class SystemClock:
    """The real time, and asyncio's timers for waiting on it."""

    def now(self) -> datetime:
        """Now, in UTC."""
        return datetime.now(UTC)

    async def wait_until(self, deadline: datetime, wake: asyncio.Event) -> None:
        """Return at `deadline` or as soon as `wake` is set."""
        delay = (deadline - datetime.now(UTC)).total_seconds()
        if delay <= 0 or wake.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=delay)
