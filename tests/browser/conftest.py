"""The admin page in Debian's Chromium (Playwright), against a real `cronsource serve`.

Skipped only when Chromium or Playwright is missing on a developer's machine; in CI (`CI`
set) a missing browser fails the run. Every page records console errors, page errors,
failed requests and HTTP answers of 400 or more; a test fails on any it did not announce
with `ui.expect(status, url_part)`.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import PREFIX, Server, start_server, stop_server
from tests.target_server import Target, serving

CHROMIUM = os.environ.get("CRONSOURCE_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(__file__).parent / "screenshots"
TIMEOUT_MS = 15_000  # a hang guard for Playwright's auto-waiting, not an assertion
WIDE, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}
READ_ONLY = "jobs:read events:read"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"the browser tests must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable('playwright is not installed (pip install -e ".[test]")')
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = tmp_path_factory.mktemp("store") / "cronsource.db"
    server = start_server(f"sqlite:///{store.as_posix()}", tmp_path_factory.mktemp("data"))
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def browser(playwright: Any, server: Server) -> Iterator[Any]:
    """One Chromium per module; it closes (and so drops its streams) before the server stops."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    with serving() as t:
        yield t


@dataclass
class UI:
    """One browser page signed in (or not) to the server, and what went wrong on it."""

    page: Any
    server: Server
    tenant: str
    problems: list[str] = field(default_factory=list)
    expected: list[tuple[int, str]] = field(default_factory=list)
    watching: bool = True

    @property
    def url(self) -> str:
        return f"{self.server.base}{PREFIX}/ui"

    def expect(self, status: int, url_part: str) -> None:
        """Announce an HTTP error this test provokes on purpose."""
        self.expected.append((status, url_part))

    def token(self, scopes: str | None = None, sub: str = "ana") -> str:
        if scopes is None:
            return self.server.token(sub, self.tenant)
        return self.server.token(sub, self.tenant, scopes)

    def api(self, scopes: str | None = None) -> httpx.Client:
        """The bearer-token API as another client of the same tenant."""
        token = self.token(scopes)
        return httpx.Client(
            base_url=self.server.base + PREFIX,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def sign_in(self, scopes: str | None = None) -> None:
        """The link `serve` prints: the token in the fragment, never sent in a URL."""
        self.page.goto(f"{self.url}#token={self.token(scopes)}")
        self.page.get_by_role("heading", name="Jobs", exact=True).wait_for()
        self.page.locator("#live[data-state='live'], #live[data-state^='polling']").wait_for()

    def job(self, name: str, target: Target, **fields: Any) -> dict[str, Any]:
        """A job made through the API (a yearly schedule: it fires only when triggered)."""
        doc = {
            "name": name,
            "pattern": "0 0 1 1 *",
            "taskType": "HttpInvokerTask",
            "taskConfig": {"url": target.url("/hook"), "method": "POST"},
            **fields,
        }
        with self.api() as client:
            response = client.post("/jobs", json=doc)
            assert response.status_code == 201, response.text
            return response.json()

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    # -- watching ---------------------------------------------------------------------------

    def _allowed(self, status: int, url: str) -> bool:
        return any(status == s and part in url for s, part in self.expected)

    def on_console(self, message: Any) -> None:
        if not self.watching or message.type != "error":
            return
        # Chromium reports each refused fetch as a console error; announced ones are fine
        hit = re.search(r"status of (\d{3})", message.text)
        if hit and any(int(hit.group(1)) == s for s, _ in self.expected):
            return
        self.problems.append(f"console.error: {message.text}")

    def on_response(self, response: Any) -> None:
        if (
            self.watching
            and response.status >= 400
            and not self._allowed(response.status, response.url)
        ):
            self.problems.append(
                f"HTTP {response.status} {response.request.method} {response.url}"
            )

    def on_failed(self, request: Any) -> None:
        if "/events/stream" in request.url and request.failure == "net::ERR_ABORTED":
            return  # the page closed its stream (sign-out): EventSource.close() aborts it
        if self.watching:
            self.problems.append(
                f"request failed: {request.method} {request.url} {request.failure}"
            )

    def on_page_error(self, error: Any) -> None:
        if self.watching:
            self.problems.append(f"page error: {error}")


@pytest.fixture
def ui(browser: Any, server: Server) -> Iterator[UI]:
    """A fresh browser context (no cookie) at 1280 px, in a tenant of this test's own."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(viewport=WIDE)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    ui = UI(page, server, f"t-{uuid.uuid4().hex[:10]}")
    page.on("console", ui.on_console)
    page.on("response", ui.on_response)
    page.on("requestfailed", ui.on_failed)
    page.on("pageerror", ui.on_page_error)
    yield ui
    ui.watching = False  # closing the page ends its event stream: that is no failure
    context.close()
    if any(" 50" in p for p in ui.problems):  # a server error: show its traceback too
        log = server.log.read_text()
        ui.problems.append("server log, last traceback:\n" + log[log.rfind("Traceback") :][:12000])
    assert not ui.problems, "\n".join(ui.problems)
