"""The read-model projections in a process of their own (`CRONSOURCE_PROJECTIONS=process`).

A node's engine and API then share their interpreter's lock with no projection: folding three
events per fire into the read models cost a quarter of it at a few thousand fires a second.
The parent starts this module with its settings as the first line on stdin; then:

- parent → worker, stdin: one line per "the log moved" (the parent's own writes, which the
  worker could otherwise only find by polling); end of input = the parent is gone: exit.
- worker → parent, stdout: `name committed seen` whenever a projection moves, so the
  parent's readers (read-your-writes, readiness, metrics) know where each one stands.

Exactly-once does not depend on any of this: a batch commits with its log position, guarded by
the position it started from, so the parent's own catch-up (a request that cannot wait) and
this worker never both apply an event.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

from infrastructure.logs import FORMATS, LEVELS, configure_logging

log = logging.getLogger("cronsource.projections")

RESTART_SECONDS = 1.0  # a worker that died is started again after this pause


def settings_line(settings: Any) -> bytes:
    """The settings a worker is started with (secrets stay off its command line and env)."""
    values = dataclasses.asdict(settings)
    values["data_dir"] = str(values["data_dir"])
    return orjson.dumps(values) + b"\n"


class ProjectionProcess:
    """Starts the worker, tells it when the log moved, and hands on the positions it reports;
    a worker that dies is started again while this one runs."""

    def __init__(
        self, settings: Any, on_position: Callable[[str, int, int], None], python: str = ""
    ) -> None:
        self._settings = settings_line(settings)
        self._on_position = on_position
        self._python = python or sys.executable
        self._process: subprocess.Popen[bytes] | None = None
        self._stdin_fd = -1
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        """Start the worker and the thread that reads its reports."""
        self._closing.clear()
        self._spawn()
        self._thread = threading.Thread(target=self._read, name="projection-worker", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int | None:
        """The worker's process id (for a benchmark's accounting and tests)."""
        return self._process.pid if self._process is not None else None

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the worker has reported where its projections stand."""
        return self._ready.wait(timeout)

    def wake(self, _position: int | None = None) -> None:
        """Tell the worker that the log moved. Never blocks: a full pipe already holds a wake."""
        with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
            os.write(self._stdin_fd, b"\n")

    def stop(self, timeout: float = 10.0) -> None:
        """End the worker (its input closes) and wait for it; kill it if it does not go."""
        self._closing.set()
        process = self._process
        if process is None:
            return
        with contextlib.suppress(OSError):
            process.stdin.close()  # type: ignore[union-attr]
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._thread is not None:
            self._thread.join(timeout)

    def _spawn(self) -> None:
        process = subprocess.Popen(
            [self._python, "-m", "interfaces.projection_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=os.getcwd(),
        )
        assert process.stdin is not None
        process.stdin.write(self._settings)
        process.stdin.flush()
        self._stdin_fd = process.stdin.fileno()
        os.set_blocking(self._stdin_fd, False)
        self._process = process

    def _read(self) -> None:
        while True:
            process = self._process
            assert process is not None and process.stdout is not None
            for line in process.stdout:
                try:
                    name, committed, seen = line.split()
                    position = (name.decode(), int(committed), int(seen))
                except ValueError:  # not a report (something else wrote to its stdout)
                    log.warning("projection worker: not a position report: %r", line[:200])
                    continue
                self._on_position(*position)
                self._ready.set()
            process.wait()
            if self._closing.is_set():
                return
            log.error(
                "the projection worker ended (exit %s); starting it again", process.returncode
            )
            if self._closing.wait(RESTART_SECONDS):
                return
            self._spawn()


class _Reporter:
    """Writes each projection's latest position to the parent, coalescing bursts of moves."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._latest: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._moved = threading.Event()

    def report(self, name: str, committed: int, seen: int) -> None:
        with self._lock:
            self._latest[name] = (committed, seen)
        self._moved.set()

    def run(self) -> None:
        while True:
            self._moved.wait()
            self._moved.clear()
            with self._lock:
                latest, self._latest = self._latest, {}
            lines = b"".join(f"{n} {c} {s}\n".encode() for n, (c, s) in latest.items())
            try:
                self._out.write(lines)
                self._out.flush()
            except (BrokenPipeError, ValueError):  # the parent is gone
                os._exit(0)


def main() -> None:
    """The worker: settings from the first line of stdin, then follow until stdin ends."""
    from interfaces.composition import (  # not at import: composition imports this module
        Core,
        Settings,
    )

    level = os.environ.get("CRONSOURCE_LOG_LEVEL", "INFO").upper()
    fmt = os.environ.get("CRONSOURCE_LOG_FORMAT", "json").lower()
    # as the node logs (it checked both variables before starting this worker), to stderr
    configure_logging(level if level in LEVELS else "INFO", fmt if fmt in FORMATS else "json")
    values = orjson.loads(sys.stdin.buffer.readline())
    values["data_dir"] = Path(values["data_dir"])
    settings = Settings(**{**values, "projections": "thread"})
    core = Core(settings)
    reporter = _Reporter(sys.stdout.buffer)
    for runner in core.projections.runners.values():
        runner.listen(reporter.report)
        reporter.report(runner.name, runner._position, runner.position)
    threading.Thread(target=reporter.run, name="reporter", daemon=True).start()
    core.start(live=False)
    try:
        for _ in sys.stdin.buffer:  # each line: the parent wrote to the log
            core.projections.wake()
    finally:
        core.close()


if __name__ == "__main__":
    main()
