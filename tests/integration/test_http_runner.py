"""The HTTP task runner against real servers on 127.0.0.1 (an allow-listed target).

Each server records what reached it, TCP connections included, so "the server saw nothing"
and "one connection served both calls" are observed, not inferred.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from aiohttp import web

from application.ports import TaskOutcome, TaskRequest
from infrastructure.http_runner import HttpTaskRunner
from infrastructure.url_guard import UrlGuard

HANG_GUARD_SECONDS = 10
LOCAL = UrlGuard(allow_networks=["127.0.0.0/8"])

Handler = Callable[[web.Request], web.StreamResponse | Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


@dataclass
class Server:
    """A local server and what reached it; `release` frees handlers that wait on it."""

    port: int = 0
    connections: int = 0
    requests: list[Seen] = field(default_factory=list)
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def seen(self) -> Seen:
        assert len(self.requests) == 1, self.requests
        return self.requests[0]


@asynccontextmanager
async def serving(routes: Mapping[str, Handler]) -> AsyncIterator[Server]:
    """An aiohttp.web server on 127.0.0.1, port 0 (keep-alive on), answering `routes` by path."""
    server = Server()

    async def handle(request: web.Request) -> web.StreamResponse:
        server.requests.append(
            Seen(request.method, request.path, dict(request.headers), await request.read())
        )
        route = routes.get(request.path)
        if route is None:
            return web.Response(status=404)
        response = route(request)
        return await response if inspect.isawaitable(response) else response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()

    def accept() -> asyncio.Protocol:  # once per accepted TCP connection
        server.connections += 1
        assert runner.server is not None
        return runner.server()

    listener = await asyncio.get_running_loop().create_server(accept, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        server.release.set()  # no handler outlives the test
        listener.close()
        await runner.cleanup()


@asynccontextmanager
async def http_runner(guard: UrlGuard = LOCAL, **options: Any) -> AsyncIterator[HttpTaskRunner]:
    runner = HttpTaskRunner(guard, **options)
    try:
        yield runner
    finally:
        await runner.close()


def task(config: Mapping[str, Any], timeout_ms: int = 5000) -> TaskRequest:
    return TaskRequest(
        job_id=uuid4(),
        execution_id=uuid4(),
        task_type="HttpInvokerTask",
        config={**config, "timeout": timeout_ms},
        scheduled_for=datetime(2025, 1, 1, 2, 0, tzinfo=UTC),
        attempt=1,
        timeout_ms=timeout_ms,
    )


def run(scenario: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(scenario, HANG_GUARD_SECONDS))


async def call_once(routes: Mapping[str, Handler], config: Mapping[str, Any]) -> TaskOutcome:
    """Serve `routes`, run one task whose `url` is a path on that server, return the outcome."""
    async with serving(routes) as server, http_runner() as runner:
        return await runner.run(task({**config, "url": server.url(config["url"])}))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_get_succeeds_with_the_parsed_json_body_status_and_headers():
    routes = {"/things": lambda _: web.json_response({"things": [1, 2]}, headers={"ETag": '"v1"'})}

    outcome = run(call_once(routes, {"url": "/things"}))

    assert outcome.ok, outcome.error
    assert outcome.result is not None
    assert outcome.result["status"] == 200
    assert outcome.result["data"] == {"things": [1, 2]}
    assert outcome.result["headers"]["content-type"].startswith("application/json")
    assert outcome.result["headers"]["etag"] == '"v1"'
    assert "truncated" not in outcome.result
    assert isinstance(outcome.result["durationMs"], int)


def test_a_post_sends_a_json_body_and_the_configured_headers():
    async def scenario() -> tuple[TaskOutcome, Seen]:
        routes = {"/api/items": lambda _: web.json_response({})}
        async with serving(routes) as server, http_runner() as runner:
            config = {
                "endpoint": server.url("/api/"),
                "path": "/items",
                "method": "POST",
                "headers": {"X-Trace": "t-1"},
                "body": {"name": "nightly", "n": [1, 2]},
            }
            return await runner.run(task(config)), server.seen()

    outcome, seen = run(scenario())

    assert outcome.ok, outcome.error
    assert (seen.method, seen.path) == ("POST", "/api/items")
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["X-Trace"] == "t-1"
    assert seen.body == b'{"name":"nightly","n":[1,2]}'


def test_a_string_body_is_sent_as_is_with_the_configured_content_type():
    async def scenario() -> Seen:
        async with serving({"/in": lambda _: web.Response()}) as server, http_runner() as runner:
            config = {
                "url": server.url("/in"),
                "method": "PUT",
                "headers": {"Content-Type": "text/csv"},
                "body": "a,b\n1,2\n",
            }
            await runner.run(task(config))
            return server.seen()

    seen = run(scenario())

    assert seen.headers["Content-Type"] == "text/csv"
    assert seen.body == b"a,b\n1,2\n"


def only_with_authorization(expected: str) -> Handler:
    def check(request: web.Request) -> web.Response:
        ok = request.headers.get("Authorization") == expected
        return web.json_response({"authorized": ok}, status=200 if ok else 401)

    return check


def test_bearer_auth_sends_the_token_as_an_authorization_header():
    routes = {"/private": only_with_authorization("Bearer tok-123")}
    auth = {"authMethod": "bearer", "token": "tok-123"}

    outcome = run(call_once(routes, {"url": "/private", "auth": auth}))

    assert outcome.ok, outcome.error
    assert outcome.result is not None
    assert outcome.result["data"] == {"authorized": True}


def test_basic_auth_sends_the_encoded_credentials():
    expected = "Basic " + base64.b64encode("ana:pä ss".encode()).decode()
    routes = {"/private": only_with_authorization(expected)}
    auth = {"authMethod": "basic", "username": "ana", "password": "pä ss"}

    outcome = run(call_once(routes, {"url": "/private", "auth": auth}))

    assert outcome.ok, outcome.error


def test_a_text_response_is_kept_as_text():
    routes = {"/hello": lambda _: web.Response(text="hello, world")}

    outcome = run(call_once(routes, {"url": "/hello"}))

    assert outcome.result is not None
    assert outcome.result["data"] == "hello, world"
    assert outcome.result["headers"]["content-type"].startswith("text/plain")


def test_a_body_past_the_limit_is_cut_and_marked_truncated():
    async def scenario() -> TaskOutcome:
        big = {"/big": lambda _: web.json_response({"x": "y" * 1000})}
        async with serving(big) as server, http_runner(max_body_bytes=10) as runner:
            return await runner.run(task({"url": server.url("/big")}))

    outcome = run(scenario())

    assert outcome.ok, outcome.error
    assert outcome.result is not None
    assert outcome.result["truncated"] is True
    assert outcome.result["data"] == '{"x": "yyy'  # cut JSON stays text: it cannot be parsed


def test_a_non_2xx_status_fails_with_http_status_and_an_excerpt():
    routes = {"/down": lambda _: web.Response(status=503, text="maintenance")}

    outcome = run(call_once(routes, {"url": "/down"}))

    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error["code"] == "HTTP_STATUS"
    assert outcome.error["status"] == 503
    assert outcome.error["message"] == "HTTP 503 Service Unavailable"
    assert outcome.error["data"] == "maintenance"
    assert isinstance(outcome.error["durationMs"], int)


def test_a_response_slower_than_the_timeout_fails_with_timeout():
    async def scenario() -> TaskOutcome:
        async def stall(_: web.Request) -> web.Response:
            server.entered.set()
            await server.release.wait()  # set only when the server shuts down
            return web.Response()

        async with serving({"/slow": stall}) as server, http_runner() as runner:
            return await runner.run(task({"url": server.url("/slow")}, timeout_ms=200))

    outcome = run(scenario())

    assert outcome.error is not None
    assert outcome.error["code"] == "TIMEOUT"
    assert "200 ms" in outcome.error["message"]


def test_a_refused_connection_fails_with_connection():
    async def scenario() -> TaskOutcome:
        async with http_runner() as runner:
            return await runner.run(task({"url": f"http://127.0.0.1:{closed_port()}/"}))

    outcome = run(scenario())

    assert outcome.error is not None
    assert outcome.error["code"] == "CONNECTION"
    assert outcome.error["message"]
    assert "durationMs" in outcome.error


def test_an_error_message_shows_no_secret_of_the_url_or_the_auth():
    async def scenario() -> TaskOutcome:
        url = f"http://ana:pw-in-url@127.0.0.1:{closed_port()}/?api_key=key-in-query&page=2"
        config = {"url": url, "auth": {"authMethod": "bearer", "token": "tok-in-auth"}}
        async with http_runner() as runner:
            return await runner.run(task(config))

    outcome = run(scenario())

    assert outcome.error is not None
    assert outcome.error["code"] == "CONNECTION"
    shown = str(outcome.error)
    assert "127.0.0.1" in shown
    for secret in ("pw-in-url", "key-in-query", "tok-in-auth"):
        assert secret not in shown


def test_a_target_the_guard_refuses_fails_with_url_blocked_and_is_never_reached():
    async def scenario() -> tuple[TaskOutcome, Server]:
        refusing = UrlGuard()  # no allow-list: loopback is refused
        async with (
            serving({"/": lambda _: web.Response()}) as server,
            http_runner(refusing) as runner,
        ):
            return await runner.run(task({"url": server.url("/")})), server

    outcome, server = run(scenario())

    assert outcome.error is not None
    assert outcome.error["code"] == "URL_BLOCKED"
    assert "loopback" in outcome.error["message"]
    assert server.connections == 0
    assert server.requests == []


def test_a_redirect_to_another_scheme_fails_with_url_blocked_and_is_counted():
    blocked: list[None] = []

    async def scenario() -> tuple[TaskOutcome, Server]:
        routes = {
            "/go": lambda _: web.Response(status=302, headers={"Location": "file:///etc/passwd"})
        }
        async with (
            serving(routes) as server,
            http_runner(on_blocked=lambda: blocked.append(None)) as runner,
        ):
            return await runner.run(task({"url": server.url("/go")})), server

    outcome, server = run(scenario())

    assert outcome.error is not None
    assert outcome.error["code"] == "URL_BLOCKED"
    assert outcome.error["message"] == "scheme 'file' is not http or https"
    assert outcome.error["url"] == "file:///etc/passwd"
    assert blocked == [None]
    assert len(server.requests) == 1  # the redirect was answered, nothing followed it


def test_a_head_request_succeeds_without_a_body():
    async def scenario() -> tuple[TaskOutcome, Seen]:
        routes = {"/doc": lambda _: web.Response(text="a body HEAD must not read")}
        async with serving(routes) as server, http_runner() as runner:
            outcome = await runner.run(task({"url": server.url("/doc"), "method": "HEAD"}))
            return outcome, server.seen()

    outcome, seen = run(scenario())

    assert outcome.ok, outcome.error
    assert outcome.result is not None
    assert outcome.result["data"] is None
    assert seen.method == "HEAD"


def test_sequential_calls_share_one_pooled_connection():
    async def scenario() -> tuple[list[TaskOutcome], Server]:
        routes = {"/ping": lambda _: web.json_response("pong")}
        async with serving(routes) as server, http_runner() as runner:
            outcomes = [await runner.run(task({"url": server.url("/ping")})) for _ in "ab"]
            return outcomes, server

    outcomes, server = run(scenario())

    assert all(o.ok for o in outcomes)
    assert len(server.requests) == 2
    assert server.connections == 1


def test_cancelling_a_running_call_propagates_the_cancellation():
    async def scenario() -> None:
        async def stall(_: web.Request) -> web.Response:
            server.entered.set()
            await server.release.wait()
            return web.Response()

        async with serving({"/slow": stall}) as server, http_runner() as runner:
            call = asyncio.create_task(runner.run(task({"url": server.url("/slow")})))
            await server.entered.wait()
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call

    run(scenario())


def test_a_repeated_call_is_judged_and_sent_as_the_first_was():
    """Calls are prepared once per config and the guard remembers verdicts: a second call
    of the same config sends the same request, and a refused URL stays refused."""

    async def scenario() -> tuple[list[TaskOutcome], list[TaskOutcome], Server]:
        routes = {"/private": only_with_authorization("Bearer tok-123")}
        auth = {"authMethod": "bearer", "token": "tok-123"}
        async with serving(routes) as server:
            config = {"url": server.url("/private"), "auth": auth}
            async with http_runner() as runner:
                allowed = [await runner.run(task(config)) for _ in "abc"]
                other = {**config, "auth": {"authMethod": "bearer", "token": "other"}}
                allowed.append(await runner.run(task(other)))  # another config: its own call
            async with http_runner(UrlGuard()) as runner:
                refused = [await runner.run(task(config)) for _ in "ab"]
            return allowed, refused, server

    allowed, refused, server = run(scenario())

    assert [o.ok for o in allowed] == [True, True, True, False]
    assert allowed[3].error is not None and allowed[3].error["code"] == "HTTP_STATUS"
    assert [s.headers["Authorization"] for s in server.requests] == ["Bearer tok-123"] * 3 + [
        "Bearer other"
    ]
    assert [o.error["code"] for o in refused if o.error] == ["URL_BLOCKED", "URL_BLOCKED"]
    assert len(server.requests) == 4  # the refused calls reached nothing
