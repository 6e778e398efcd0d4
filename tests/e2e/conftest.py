"""A real `cronsource serve` process per store and module; clients with tokens for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from infrastructure.auth import SCOPES, AuthSettings, mint_token

ROOT = Path(__file__).resolve().parents[2]
SECRET = "e2e-secret-" + "x" * 40
PREFIX = "/_/scheduler"


@dataclass
class Server:
    """A running server: its base URL, its store, and a way to mint tokens for it."""

    base: str
    database_url: str
    data_dir: Path
    proc: subprocess.Popen[str]
    env: dict[str, str]
    log: Path

    def token(
        self, sub: str = "ana", tenant: str = "default", scopes: Any = SCOPES, **claims: Any
    ) -> str:
        return mint_token(
            AuthSettings(secret=SECRET),
            SECRET,
            subject=sub,
            tenant=tenant,
            scopes=scopes,
            **claims,
        )

    def client(
        self, tenant: str = "default", sub: str = "ana", scopes: Any = SCOPES
    ) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(sub, tenant, scopes)}"}
        return httpx.Client(base_url=self.base + PREFIX, headers=headers, timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(database_url: str, data_dir: Path, **env_overrides: str) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CRONSOURCE_DATABASE_URL": database_url,
        "CRONSOURCE_DATA_DIR": str(data_dir),
        "CRONSOURCE_JWT_SECRET": SECRET,
        "CRONSOURCE_ALLOW_TARGETS": "127.0.0.0/8",
        "CRONSOURCE_NODE": f"e2e-{port}",
        "CRONSOURCE_PROJECTION_POLL_SECONDS": "0.1",
        "CRONSOURCE_LOG_LEVEL": "WARNING",
        **env_overrides,
    }
    log = data_dir / f"server-{port}.log"
    with log.open("w") as out:  # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen(
            [sys.executable, "-m", "interfaces.cli", "serve", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + PREFIX + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"cronsource serve did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return Server(base, database_url, data_dir, proc, env, log)


def stop_server(server: Server) -> None:
    errors = [
        line
        for line in server.log.read_text().splitlines()
        if "ERROR" in line or "Traceback" in line
    ]
    if errors:  # make a server-side error visible in the test output
        print(f"server log {server.log} has errors:\n" + server.log.read_text()[-5000:])
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.proc.kill()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{(tmp_path_factory.mktemp('store') / 'cronsource.db').as_posix()}"
    base = request.getfixturevalue("postgres_database")
    return f"{base}?schema=e2e_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def server(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(store_url, tmp_path_factory.mktemp("data"))
    yield server
    stop_server(server)


@pytest.fixture
def tenant() -> str:
    """A tenant of this test's own, so tests sharing a server never see each other's jobs."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(server: Server, tenant: str) -> Iterator[httpx.Client]:
    with server.client(tenant) as c:
        yield c
