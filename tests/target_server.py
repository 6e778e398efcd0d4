"""A real HTTP target on 127.0.0.1 that records what it is sent (for engine tests)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request as the target saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Target:
    """What the target got, and how it answers: status by path, and a gate to hold answers."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    hold: dict[str, threading.Event] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path.split("?")[0] == path]


@contextmanager
def serving() -> Iterator[Target]:
    """A threaded HTTP server on an ephemeral loopback port, stopped after the block."""
    target = Target()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            path = self.path.split("?")[0]
            with target.lock:
                target.received.append(Received(self.command, self.path, dict(self.headers), body))
            gate = target.hold.get(path)
            if gate is not None:
                gate.wait(30)
            status = target.status.get(path, 200)
            payload = json.dumps({"ok": status < 400, "path": path}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle  # noqa: N815

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    target.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield target
    finally:
        for gate in target.hold.values():
            gate.set()
        server.shutdown()
        server.server_close()
