"""How far a long command has got, on stderr: a bar redrawn in place on a terminal, a plain
line now and then otherwise (a log file or a pipe gets no control characters)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR = 24


class Progress:
    """Reports `done` out of `total` `unit`s (events, log positions) of the work `label`."""

    def __init__(
        self,
        label: str,
        total: int,
        unit: str = "events",
        *,
        stream: TextIO | None = None,
        every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.unit = label, max(total, 0), unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.1 if self.tty else every  # a bar is redrawn at most 10 times a second
        self.clock = clock
        self.started = self.shown_at = clock()
        self.done = 0
        self.drawn = False

    def update(self, done: int, total: int | None = None) -> None:
        """`done` units are done so far (of `total`, if it is now known better)."""
        self.done = done
        if total is not None:
            self.total = max(total, 0)
        now = self.clock()
        if now - self.shown_at >= self.every:
            self.shown_at = now
            self._show(now)

    def finish(self) -> None:
        """The work is over: end the bar's line (a plain report needs no last line: the
        command says what it did)."""
        if self.tty and self.drawn:
            self._show(self.clock())
            self.stream.write("\n")
            self.stream.flush()

    def _show(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        share = min(self.done / self.total, 1.0) if self.total else 1.0
        left = f", about {_duration((self.total - self.done) / rate)} left" if rate > 0 else ""
        counts = (
            f"{self.label}: {self.done:,} of {self.total:,} {self.unit} ({share:.0%}), "
            f"{rate:,.0f}/s"
        )
        if self.tty:
            filled = round(share * BAR)
            bar = "#" * filled + "." * (BAR - filled)
            self.stream.write(f"\r[{bar}] {counts}{left}\x1b[K")
            self.drawn = True
        else:
            self.stream.write(f"{counts}{left}\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
