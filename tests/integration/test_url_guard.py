"""The URL guard on real connections: servers on 127.0.0.1 and 127.0.0.2, nothing leaves loopback.

Each server counts the TCP connections it accepts (not only the requests it answers), so
"nothing connected" is observed, not inferred from a missing response.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from domain.errors import UrlBlocked
from infrastructure.url_guard import UrlGuard

HANG_GUARD = aiohttp.ClientTimeout(total=10)


@dataclass
class Target:
    """A local server and what reached it."""

    host: str
    port: int = 0
    connections: int = 0
    requests: int = 0

    def url(self, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}/"


def answer_ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def redirect_to(location: str) -> Callable[[web.Request], web.Response]:
    return lambda _: web.Response(status=302, headers={"Location": location})


@asynccontextmanager
async def serving(
    host: str, respond: Callable[[web.Request], web.Response] = answer_ok
) -> AsyncIterator[Target]:
    """An aiohttp.web server on `host`, port 0, counting accepted connections and requests."""
    target = Target(host)

    async def handle(request: web.Request) -> web.Response:
        target.requests += 1
        return respond(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    assert runner.server is not None

    def accept() -> asyncio.Protocol:  # runs once per accepted TCP connection
        target.connections += 1
        assert runner.server is not None
        return runner.server()

    server = await asyncio.get_running_loop().create_server(accept, host, 0)
    target.port = server.sockets[0].getsockname()[1]
    try:
        yield target
    finally:
        server.close()
        await runner.cleanup()


class TableResolver(AbstractResolver):
    """Answers names from a table, in turn for repeated lookups, and records each lookup."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        ips = self.answers[host]
        ip = ips.pop(0) if len(ips) > 1 else ips[0]  # the last answer sticks
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        return [ResolveResult(hostname=host, host=ip, port=port, family=family, proto=0, flags=0)]

    async def close(self) -> None:
        pass


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=30))  # a hang guard, not an assertion


async def get_status(guard: UrlGuard, url: str, **options: object) -> int:
    async with guard.session(timeout=HANG_GUARD) as session:
        with guard.refusals_as_blocked():  # as the HTTP runner and the webhook sender call
            async with session.get(url, **options) as response:
                return response.status


# The first request


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "localhost"])
def test_a_call_to_a_loopback_target_is_refused_and_nothing_connects(host: str) -> None:
    async def scenario() -> None:
        async with serving("127.0.0.1") as target:
            with pytest.raises(UrlBlocked, match=re.escape("loopback address 127.0.0.1")):
                await get_status(UrlGuard(), target.url(host))
            assert (target.connections, target.requests) == (0, 0)

    run(scenario)


def test_an_allowed_network_admits_the_call() -> None:
    async def scenario() -> None:
        async with serving("127.0.0.1") as target:
            assert await get_status(UrlGuard(["127.0.0.1/32"]), target.url()) == 200
            assert target.requests == 1

    run(scenario)


def test_an_allowed_host_name_admits_the_call() -> None:
    async def scenario() -> None:
        async with serving("127.0.0.1") as target:
            guard = UrlGuard.from_setting("localhost")
            assert await get_status(guard, target.url("localhost")) == 200
            assert target.requests == 1

    run(scenario)


def test_a_metadata_name_is_refused_before_any_lookup() -> None:
    resolver = TableResolver({"metadata.google.internal": ["169.254.169.254"]})

    async def scenario() -> None:
        guard = UrlGuard(resolver_factory=lambda: resolver)
        with pytest.raises(UrlBlocked, match="cloud metadata host"):
            await get_status(guard, "http://metadata.google.internal/computeMetadata/v1/")

    run(scenario)
    assert resolver.lookups == []


# Redirects: every hop is judged before it connects


@pytest.mark.parametrize("literal", ["127.0.0.2", "[::ffff:127.0.0.2]"])
def test_a_redirect_to_an_address_not_allowed_is_refused_and_nothing_connects(
    literal: str,
) -> None:
    async def scenario() -> None:  # an IP literal skips the resolver: the hop itself is judged
        async with serving("127.0.0.2") as inner:
            async with serving("127.0.0.1", redirect_to(inner.url(literal))) as outer:
                with pytest.raises(UrlBlocked, match=re.escape("loopback address 127.0.0.2")):
                    await get_status(UrlGuard(["127.0.0.1/32"]), outer.url())
                assert outer.requests == 1
            assert (inner.connections, inner.requests) == (0, 0)

    run(scenario)


def test_a_redirect_to_an_allowed_address_is_followed() -> None:
    async def scenario() -> None:  # shows the counters above would see a connection
        async with serving("127.0.0.2") as inner:
            async with serving("127.0.0.1", redirect_to(inner.url())) as outer:
                assert await get_status(UrlGuard(["127.0.0.0/8"]), outer.url()) == 200
                assert outer.requests == 1
            assert (inner.connections, inner.requests) == (1, 1)

    run(scenario)


def test_a_redirect_to_a_name_resolving_inward_is_refused_and_nothing_connects() -> None:
    resolver = TableResolver({"inside.test": ["127.0.0.2"]})

    async def scenario() -> None:
        async with serving("127.0.0.2") as inner:
            location = inner.url("inside.test")
            async with serving("127.0.0.1", redirect_to(location)) as outer:
                guard = UrlGuard(["127.0.0.1/32"], resolver_factory=lambda: resolver)
                with pytest.raises(UrlBlocked, match=re.escape("loopback address 127.0.0.2")):
                    await get_status(guard, outer.url())
            assert inner.connections == 0

    run(scenario)
    assert resolver.lookups == ["inside.test"]


@pytest.mark.parametrize(
    ("location", "scheme"),
    [("file:///etc/passwd", "file"), ("gopher://127.0.0.2:{}/_x", "gopher")],
)
def test_a_redirect_to_another_scheme_is_refused_as_blocked(location: str, scheme: str) -> None:
    async def scenario() -> None:  # aiohttp refuses it itself; it is reported as the guard's
        async with serving("127.0.0.2") as inner:
            target = location.format(inner.port)
            async with serving("127.0.0.1", redirect_to(target)) as outer:
                reason = f"scheme {scheme!r} is not http or https"
                with pytest.raises(UrlBlocked, match=re.escape(reason)):
                    await get_status(UrlGuard(["127.0.0.0/8"]), outer.url())
                assert (outer.connections, outer.requests) == (1, 1)
            assert (inner.connections, inner.requests) == (0, 0)

    run(scenario)


def test_a_refused_redirect_beyond_max_redirects_is_reported_as_blocked() -> None:
    async def scenario() -> None:  # aiohttp stops before the hop; the guard still names it
        async with serving("127.0.0.2") as inner:
            async with serving("127.0.0.1", redirect_to(inner.url())) as outer:
                with pytest.raises(UrlBlocked, match=re.escape("loopback address 127.0.0.2")):
                    await get_status(UrlGuard(["127.0.0.1/32"]), outer.url(), max_redirects=1)
            assert inner.connections == 0

    run(scenario)


def test_a_redirect_beyond_max_redirects_to_an_admitted_target_stays_too_many() -> None:
    async def scenario() -> None:
        async with serving("127.0.0.2") as inner:
            async with serving("127.0.0.1", redirect_to(inner.url())) as outer:
                with pytest.raises(aiohttp.TooManyRedirects):
                    await get_status(UrlGuard(["127.0.0.0/8"]), outer.url(), max_redirects=1)
            assert inner.connections == 0

    run(scenario)


# DNS rebinding: the address judged is the address connected to


def test_a_name_rebinding_to_loopback_after_the_check_is_refused_and_nothing_connects() -> None:
    resolver = TableResolver({"rebind.test": ["8.8.8.8", "127.0.0.1"]})

    async def scenario() -> None:
        async with serving("127.0.0.1") as target:
            guard = UrlGuard(resolver_factory=lambda: resolver)
            url = target.url("rebind.test")
            await guard.check_url(url)  # the name looks public at create time
            with pytest.raises(UrlBlocked, match=re.escape("loopback address 127.0.0.1")):
                await get_status(guard, url)
            assert target.connections == 0

    run(scenario)
    assert resolver.lookups == ["rebind.test", "rebind.test"]


# Outside the event loop, and the session's own rules


def test_check_url_blocking_refuses_a_name_the_system_resolves_to_loopback() -> None:
    with pytest.raises(UrlBlocked, match=re.escape("loopback address 127.0.0.1")):
        UrlGuard().check_url_blocking("http://localhost:8080/")


def test_check_url_blocking_admits_a_name_resolving_inside_an_allowed_network() -> None:
    UrlGuard.from_setting("127.0.0.0/8").check_url_blocking("http://localhost:8080/")


def test_a_url_without_a_host_is_refused_as_blocked() -> None:
    async def scenario() -> None:  # aiohttp refuses it before any connection is asked for
        with pytest.raises(UrlBlocked, match="no host"):
            await get_status(UrlGuard(), "http:///path")

    run(scenario)


def test_a_guarded_session_carries_no_trace_config_of_the_guards() -> None:
    """With any trace config aiohttp traces every signal of every request (~8 % of the engine
    at 1,500 calls a second): the guard judges in its connector instead, and adds none."""

    async def scenario() -> None:
        guard = UrlGuard()
        async with guard.session() as session:
            assert session.trace_configs == []
        mine = aiohttp.TraceConfig()
        async with guard.session(trace_configs=[mine]) as session:
            assert session.trace_configs == [mine]

    run(scenario)


@pytest.mark.parametrize(
    "option",
    [{"connector": aiohttp.BaseConnector}, {"trust_env": True}, {"proxy": "http://p:3128"}],
)
def test_a_session_refuses_options_that_would_bypass_the_guard(option: dict[str, object]) -> None:
    with pytest.raises(TypeError, match="bypass the URL guard"):
        UrlGuard().session(**option)
