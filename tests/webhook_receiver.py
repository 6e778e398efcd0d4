"""A real webhook receiver on 127.0.0.1: verifies each signature with the `standardwebhooks`
package (an implementation independent of ours), records what came, answers as scripted."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Message:
    """One request as the receiver saw it."""

    path: str
    message_id: str
    verified: bool
    body: dict[str, Any]
    status: int  # what the receiver answered
    at: float  # time.time() when it arrived
    query: str = ""


@dataclass
class Receiver:
    """What came, per path; secrets to verify with and scripted answers, per path."""

    port: int = 0
    messages: list[Message] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    script: dict[str, list[int]] = field(default_factory=dict)  # answers in turn, then 200
    always: dict[str, int] = field(default_factory=dict)
    hold: dict[str, tuple[int, threading.Event]] = field(default_factory=dict)  # nth waits
    slow: dict[str, float] = field(default_factory=dict)  # seconds each answer takes
    in_flight: dict[str, int] = field(default_factory=dict)
    most_in_flight: dict[str, int] = field(default_factory=dict)  # requests at once, at most
    changed: threading.Condition = field(default_factory=threading.Condition)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str, status: int | None = 200) -> list[Message]:
        """Messages to `path` (answered with `status`; None: all)."""
        with self.changed:
            return [
                m
                for m in self.messages
                if m.path == path and (status is None or m.status == status)
            ]

    def wait_for(self, predicate: Any, timeout: float = 30) -> None:
        """Block until `predicate()` holds (a hang guard, not an assertion on time)."""
        with self.changed:
            if not self.changed.wait_for(predicate, timeout):
                raise AssertionError(
                    f"timed out waiting; received {len(self.messages)} message(s)"
                )


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A threaded receiver on an ephemeral loopback port, stopped after the block."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path, _, query = self.path.partition("?")
            with receiver.changed:
                receiver.in_flight[path] = receiver.in_flight.get(path, 0) + 1
                most = max(receiver.most_in_flight.get(path, 0), receiver.in_flight[path])
                receiver.most_in_flight[path] = most
            try:
                self._answer(raw, path, query)
            finally:
                with receiver.changed:
                    receiver.in_flight[path] -= 1

        def _answer(self, raw: bytes, path: str, query: str) -> None:
            verified = False
            secret = receiver.secrets.get(path)
            if secret is not None:
                try:
                    Webhook(secret).verify(raw, dict(self.headers))
                    verified = True
                except WebhookVerificationError:
                    verified = False
            with receiver.changed:
                queue = receiver.script.get(path) or []
                status = queue.pop(0) if queue else receiver.always.get(path, 200)
                message = Message(path, self.headers.get("webhook-id", ""), verified,
                                  json.loads(raw or b"{}"), status, time.time(), query)  # fmt: skip
                receiver.messages.append(message)
                receiver.changed.notify_all()
                count = sum(1 for m in receiver.messages if m.path == path)
            held = receiver.hold.get(path)
            if held is not None and held[0] == count:
                held[1].wait(60)
            if path in receiver.slow:  # a slow receiver, not a synchronisation
                time.sleep(receiver.slow[path])
            payload = b'{"ok": true}' if status < 400 else b'{"error": "scripted"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
