"""Operating a node: `/readyz` while the store goes away and comes back (a TCP proxy in front of
PostgreSQL; the server itself stays up)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import PREFIX, start_server, stop_server
from tests.engine_support import wait_for
from tests.tcp_proxy import proxy_to


@pytest.mark.postgres
def test_readyz_is_503_with_the_reason_while_the_store_is_unreachable_and_200_after(
    postgres_database: str, tmp_path: Path
) -> None:
    database_url = f"{postgres_database}?schema=t_{uuid.uuid4().hex[:12]}"
    with proxy_to(database_url) as proxy:
        server = start_server(proxy.url(database_url), tmp_path)
        try:
            ready = server.base + PREFIX + "/readyz"
            wait_for(lambda: _answer(ready, 200), what="ready (the engine has started)")

            proxy.down()
            down = wait_for(lambda: _answer(ready, 503), what="not ready", timeout=60)
            alive = httpx.get(server.base + PREFIX + "/healthz", timeout=30)
            proxy.up()
            back = wait_for(lambda: _answer(ready, 200), what="ready again", timeout=120)
        finally:
            stop_server(server)

    assert down["ready"] is False
    assert down["checks"]["store"]["ok"] is False
    assert down["checks"]["store"]["reason"].startswith("unreachable")
    assert down["checks"]["projections"] == {
        "ok": False, "reason": "unknown: the store did not answer",
    }  # fmt: skip
    assert down["checks"]["engine"]["ok"] is True  # it waits for the store; it did not stop
    assert alive.status_code == 200  # liveness: the process is alive all along
    assert back["ready"] is True
    assert all(check["ok"] for check in back["checks"].values())
    assert back["checks"]["projections"]["maxLag"] == 10_000


def _answer(url: str, status: int) -> dict[str, Any] | None:
    response = httpx.get(url, timeout=30)
    return response.json() if response.status_code == status else None
