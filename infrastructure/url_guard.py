"""The URL guard: outgoing calls reach only public addresses or targets an operator allowed.

A job's URL is written by a tenant, so without a guard it could make the service call its
own admin port, the cloud metadata endpoint or anything else on the internal network
(server-side request forgery). Checking the URL once at job creation is not enough: a name
can resolve elsewhere by the time the call runs (DNS rebinding) and any hop may redirect
inward. So `UrlGuard.session()` judges the address the connector actually connects to, on
every hop, and the create-time checks (`check_url`) only give the caller an early refusal.

The session judges in its connector, not in aiohttp trace hooks: with any `TraceConfig`
present aiohttp builds a trace and its parameters for every signal of every request, which
cost ~8 % of the engine at 1,500 calls a second. aiohttp asks the connector for a connection
for the first request and for each redirect hop, so judging there misses no hop.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from aiohttp import (
    ClientSession,
    InvalidUrlClientError,
    NonHttpUrlRedirectClientError,
    RedirectClientError,
    TCPConnector,
    ThreadedResolver,
    TooManyRedirects,
    hdrs,
)
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.helpers import is_ip_address  # the connector's own test for "skip the resolver"
from yarl import URL

from domain.errors import UrlBlocked
from domain.masking import mask_url

if TYPE_CHECKING:
    from aiohttp import ClientRequest, ClientTimeout
    from aiohttp.connector import Connection
    from aiohttp.tracing import Trace

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

SCHEMES = ("http", "https")

# Cloud instance-metadata names, refused whatever they resolve to: they hand out credentials,
# and a private resolver may map them anywhere.
# fmt: off
#: How long a create or update waits for the static check's DNS lookup.
STATIC_LOOKUP_SECONDS = 2.0
VERDICTS = 4096  # (scheme, host) pairs whose verdict the guard remembers (then it starts over)
_UNJUDGED = object()
_LOOKUPS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="url-guard-lookup")

METADATA_HOSTS = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog",  # GCP
    "instance-data", "instance-data.ec2.internal",  # AWS
    "metadata.azure.com", "metadata.tencentyun.com",  # Azure, Tencent
})
# fmt: on


def _within(*cidrs: str) -> Callable[[IPAddress], bool]:
    networks = [ip_network(c) for c in cidrs]
    return lambda ip: any(ip in n for n in networks)  # a v4 address is never in a v6 network


# Reasons for a refusal, first match wins. Anything else not globally routable is refused too
# (as "non-global"); the ranges named here only give the reason, or close gaps where
# `ipaddress.is_global` says yes although no public host can live there.
_CLASSES: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("unspecified", _within("0.0.0.0/8", "::/128")),
    ("loopback", lambda ip: ip.is_loopback),
    ("link-local/metadata", lambda ip: ip.is_link_local),
    ("private", _within("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")),
    ("unique-local", _within("fc00::/7")),
    ("shared (CGNAT)", _within("100.64.0.0/10")),
    ("multicast", lambda ip: ip.is_multicast),  # is_global is True for some multicast
    ("broadcast", _within("255.255.255.255/32")),
    ("documentation", _within("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")),
    ("documentation", _within("2001:db8::/32", "3fff::/20")),
    ("benchmark", _within("198.18.0.0/15", "2001:2::/48")),
    # ::/96 holds the deprecated IPv4-compatible form, 64:ff9b:1::/48 local-use NAT64
    ("reserved", _within("240.0.0.0/4", "::/96", "100::/64", "64:ff9b:1::/48")),
)
_NAT64 = IPv6Network("64:ff9b::/96")
_HOST_NAME = re.compile(r"(\*\.)?((?!-)[a-z0-9_-]{1,63}(?<!-)\.)*(?!-)[a-z0-9_-]{1,63}(?<!-)")


def _embedded_ipv4(ip: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv6 address carries to (mapped, 6to4, NAT64): the host reached."""
    if isinstance(ip, IPv4Address):
        return None
    if ip in _NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.ipv4_mapped or ip.sixtofour


def _refusal(ip: IPAddress) -> str | None:
    """Why no call may reach this address, or None when it is globally routable."""
    judged = _embedded_ipv4(ip) or ip  # the wrapper prefix is transport, the embedded host is hit
    label = next((name for name, matches in _CLASSES if matches(judged)), None)
    if label is None and judged.is_global:
        return None
    where = f" (embedded in {ip})" if judged is not ip else ""
    return f"{label or 'non-global'} address {judged}{where}"


def _host_key(host: str) -> str:
    return host.rstrip(".").lower()  # "LocalHost." and "localhost" are one name


class UrlGuard:
    """Admits outgoing calls only to globally routable addresses or operator-allowed targets."""

    def __init__(
        self,
        allow_networks: Iterable[str | IPNetwork] = (),
        allow_hosts: Iterable[str] = (),
        *,
        resolver_factory: Callable[[], AbstractResolver] = ThreadedResolver,
    ) -> None:
        self.allow_networks = tuple(_parse_network(n) for n in allow_networks)
        self.allow_hosts = frozenset(_parse_host(h) for h in allow_hosts)
        self._resolver_factory = resolver_factory  # called inside the event loop, per use
        self._verdicts: dict[tuple[str, str | None], str | None] = {}  # the refusal's reason
        self._refusals = _RefusalsAsBlocked(self)

    @classmethod
    def from_setting(
        cls, text: str, *, resolver_factory: Callable[[], AbstractResolver] = ThreadedResolver
    ) -> UrlGuard:
        """Read CRONSOURCE_ALLOW_TARGETS: CIDRs and host names (`*.x` for subdomains of x)."""
        entries = [e for e in re.split(r"[\s,]+", text) if e]
        networks = [e for e in entries if "/" in e or is_ip_address(e)]  # else a name
        hosts = [e for e in entries if e not in networks]
        return cls(networks, hosts, resolver_factory=resolver_factory)

    def check_address(self, host: str, ip: str) -> None:
        """Refuse connecting to `ip` for `host`, unless the host or the address is allowed."""
        if not self._host_allowed(host):
            self._judge_ip(host, ip)

    def check_url_syntax(self, url: str | URL) -> None:
        """Refuse what the URL alone gives away: scheme, missing host, IP literal, metadata name."""
        self._name_to_resolve(url)

    async def check_url(self, url: str | URL) -> None:
        """Refuse a URL whose name resolves now to any address that is not admitted.

        A name that does not resolve is left to the call, whose session judges it again.
        """
        if (target := self._name_to_resolve(url)) is None:
            return
        shown, host, port = target
        resolver = self._resolver_factory()
        try:
            results = await resolver.resolve(host, port, family=socket.AF_UNSPEC)
        except OSError:
            results = []
        finally:
            await resolver.close()
        for result in results:
            self._judge_ip(shown, result["host"])

    def check_url_blocking(self, url: str | URL) -> None:
        """`check_url` for callers outside an event loop; resolves with `socket.getaddrinfo`.

        The lookup is bounded (`STATIC_LOOKUP_SECONDS`): a request must not hang on a slow
        resolver. A name that does not resolve in time is let through here, as one that does
        not resolve at all is: the connection itself is judged when the call is made.
        """
        if (target := self._name_to_resolve(url)) is None:
            return
        shown, host, port = target
        lookup = _LOOKUPS.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        try:
            infos = lookup.result(timeout=STATIC_LOOKUP_SECONDS)
        except (OSError, FutureTimeout):
            infos = []
        for *_, sockaddr in infos:
            self._judge_ip(shown, str(sockaddr[0]))

    def session(self, **client_session_kwargs: Any) -> ClientSession:
        """A ClientSession that judges every connection, first request and redirects alike.

        Its connector judges each hop's URL before it takes or makes a connection (IP-literal
        hosts skip the resolver: aiohttp's `TCPConnector._resolve_host`), and its resolver
        judges every address a name resolves to, which is all the connector may connect to.
        A redirect to another scheme never reaches the connector: aiohttp refuses it itself,
        and `refusals_as_blocked` reports that as `UrlBlocked`. A proxy would resolve names
        out of the guard's sight: pass none here nor per request.
        """
        for bypass in ("connector", "proxy", "trust_env"):
            if client_session_kwargs.get(bypass):
                raise TypeError(f"session(): {bypass} would let calls bypass the URL guard")
        resolver = _GuardedResolver(self, self._resolver_factory())
        return ClientSession(connector=_GuardedConnector(self, resolver), **client_session_kwargs)

    def refusals_as_blocked(self) -> _RefusalsAsBlocked:
        """Around a request on a guarded session: what aiohttp refuses before the guard sees
        it, but the guard refuses too, is raised as the guard's `UrlBlocked`.

        That is a redirect to another scheme (aiohttp's `NonHttpUrlRedirectClientError`), a
        redirect beyond `max_redirects` to a target the guard refuses (`TooManyRedirects`),
        and a first URL without a host (`InvalidUrlClientError`); anything else passes as is.
        """
        return self._refusals

    def _name_to_resolve(self, url: str | URL) -> tuple[str, str, int] | None:
        """Judge what the URL shows; (shown URL, host, port) when a name is left to resolve."""
        shown = mask_url(str(url))  # an error repeats no password or token
        try:
            parsed = URL(url)
        except (TypeError, ValueError):
            raise UrlBlocked(shown, "not a valid URL") from None
        if parsed.scheme not in SCHEMES:
            raise UrlBlocked(shown, f"scheme {parsed.scheme!r} is not http or https")
        if not parsed.raw_host:
            raise UrlBlocked(shown, "no host")
        if self._judge_host(shown, parsed.raw_host):
            return shown, parsed.raw_host, parsed.port or 0
        return None

    def _judge_host(self, shown: str, host: str) -> bool:
        """Refuse a metadata name or a non-admitted IP literal; True for a name to resolve."""
        if self._host_allowed(host):
            return False
        if _host_key(host) in METADATA_HOSTS:
            raise UrlBlocked(shown, f"cloud metadata host {_host_key(host)}")
        if is_ip_address(host):
            self._judge_ip(shown, host)
            return False
        return True

    def _judge_ip(self, shown: str, ip_text: str) -> None:
        try:
            ip = ip_address(ip_text)
        except ValueError:  # e.g. 127.1: aiohttp would not resolve it, so nothing may pass
            raise UrlBlocked(shown, f"{ip_text!r} is not a canonical IP address") from None
        candidates = [a for a in (ip, _embedded_ipv4(ip)) if a is not None]  # as _refusal does
        if any(a in net for net in self.allow_networks for a in candidates):
            return
        reason = _refusal(ip)
        if reason is not None:
            raise UrlBlocked(shown, reason)

    def _host_allowed(self, host: str) -> bool:
        name = _host_key(host)
        parents = name.split(".")
        wildcards = {"*." + ".".join(parents[i:]) for i in range(1, len(parents))}
        return name in self.allow_hosts or not self.allow_hosts.isdisjoint(wildcards)

    def _judge_hop(self, url: URL) -> None:
        """`check_url_syntax` for the URL a connection is asked for, the verdict remembered.

        A job calls the same URL slot after slot. The verdict depends on the scheme, the host
        and this guard's fixed allow-lists only (names are judged at resolution), so it is
        kept per (scheme, host) and only a refusal shows the whole URL.
        """
        key = (url.scheme, url.raw_host)
        reason = self._verdicts.get(key, _UNJUDGED)
        if reason is _UNJUDGED:
            try:
                self.check_url_syntax(url)
                reason = None
            except UrlBlocked as e:
                reason = e.reason
            if len(self._verdicts) >= VERDICTS:
                self._verdicts.clear()
            self._verdicts[key] = reason
        if reason is not None:
            raise UrlBlocked(mask_url(str(url)), cast(str, reason))

    def _judge_location(self, base: URL, location: str | None) -> None:
        """Judge a redirect's Location by what it shows, as a hop from `base`."""
        try:
            target = URL(location) if location else None
        except ValueError:
            return  # aiohttp refuses a Location that is not a URL itself
        # a Location without a host stays on the current, judged host (aiohttp joins it)
        if target is not None and (target.raw_host or target.scheme not in ("", *SCHEMES)):
            self.check_url_syntax(base.join(target))

    def _as_blocked(self, error: BaseException) -> UrlBlocked | None:
        """The guard's refusal of what aiohttp refused before connecting, if the guard refuses."""
        try:
            if isinstance(error, NonHttpUrlRedirectClientError):
                self.check_url_syntax(str(error.args[0]))  # the Location; its own scheme: absolute
            elif isinstance(error, TooManyRedirects) and error.history:
                last = error.history[-1]  # its Location is the hop not followed
                headers = last.headers
                self._judge_location(last.url, headers.get(hdrs.LOCATION) or headers.get(hdrs.URI))
            elif (
                isinstance(error, InvalidUrlClientError)
                and not isinstance(error, RedirectClientError)
                and error.__cause__ is None  # parsed, but aiohttp found no host in it
            ):
                self.check_url_syntax(error.url)
        except UrlBlocked as blocked:
            return blocked
        return None


class _GuardedConnector(TCPConnector):
    """A TCPConnector that judges the URL of each hop before it takes or makes a connection.

    aiohttp calls `connect` for the first request, for each redirect hop and for a retry, and
    only then looks for a pooled connection or resolves the host: a refused hop reaches nothing.
    """

    def __init__(self, guard: UrlGuard, resolver: AbstractResolver) -> None:
        super().__init__(resolver=resolver)
        self._url_guard = guard

    async def connect(
        self, req: ClientRequest, traces: list[Trace], timeout: ClientTimeout
    ) -> Connection:
        self._url_guard._judge_hop(req.original_url)  # the URL as sent, fragment and all
        return await super().connect(req, traces, timeout)


class _RefusalsAsBlocked:
    """The context manager of `UrlGuard.refusals_as_blocked`; one per guard, it keeps no state."""

    __slots__ = ("_guard",)

    def __init__(self, guard: UrlGuard) -> None:
        self._guard = guard

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        if isinstance(
            error, (NonHttpUrlRedirectClientError, TooManyRedirects, InvalidUrlClientError)
        ):
            blocked = self._guard._as_blocked(error)
            if blocked is not None:
                raise blocked from error


class _GuardedResolver(AbstractResolver):
    """The real resolver, refusing what the guard refuses. The connector connects only to
    what this returns, so a name that rebinds inward after `check_url` cannot slip through."""

    def __init__(self, guard: UrlGuard, inner: AbstractResolver) -> None:
        self._guard, self._inner = guard, inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self._guard._judge_host(host, host)  # a metadata name is refused before any lookup
        results = await self._inner.resolve(host, port, family)
        for result in results:  # every address, not just the first: happy eyeballs tries all
            self._guard.check_address(host, result["host"])
        return results

    async def close(self) -> None:
        await self._inner.close()


def _parse_network(entry: str | IPNetwork) -> IPNetwork:
    try:
        return ip_network(entry)
    except ValueError as e:
        raise ValueError(f"allow-list entry {str(entry)!r} is not a valid CIDR: {e}") from None


def _parse_host(entry: str) -> str:
    name = _host_key(entry)
    if not _HOST_NAME.fullmatch(name) or name.rsplit(".", 1)[-1].isdigit():
        raise ValueError(f"allow-list entry {entry!r} is neither a CIDR nor a host name")
    return name
