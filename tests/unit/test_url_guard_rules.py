"""URL guard rules: which schemes, names and addresses an outgoing call may reach."""

from __future__ import annotations

import asyncio
import re
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from domain.errors import UrlBlocked
from infrastructure.url_guard import METADATA_HOSTS, UrlGuard

BLOCKED_ADDRESSES = [
    ("127.0.0.1", "loopback address 127.0.0.1"),
    ("127.255.0.9", "loopback address 127.255.0.9"),
    ("::1", "loopback address ::1"),
    ("10.1.2.3", "private address 10.1.2.3"),
    ("172.16.0.1", "private address 172.16.0.1"),
    ("172.31.255.254", "private address 172.31.255.254"),
    ("192.168.1.1", "private address 192.168.1.1"),
    ("169.254.169.254", "link-local/metadata address 169.254.169.254"),
    ("169.254.0.1", "link-local/metadata address 169.254.0.1"),
    ("fe80::1", "link-local/metadata address fe80::1"),
    ("fe80::1%eth0", "link-local/metadata address fe80::1%eth0"),
    ("100.64.0.1", "shared (CGNAT) address 100.64.0.1"),
    ("100.127.255.254", "shared (CGNAT) address 100.127.255.254"),
    ("fc00::1", "unique-local address fc00::1"),
    ("fd12:3456::1", "unique-local address fd12:3456::1"),
    ("0.0.0.0", "unspecified address 0.0.0.0"),
    ("0.1.2.3", "unspecified address 0.1.2.3"),
    ("::", "unspecified address ::"),
    ("224.0.0.1", "multicast address 224.0.0.1"),
    ("239.255.255.250", "multicast address 239.255.255.250"),
    ("ff02::1", "multicast address ff02::1"),
    ("ff0e::1", "multicast address ff0e::1"),
    ("255.255.255.255", "broadcast address 255.255.255.255"),
    ("240.0.0.1", "reserved address 240.0.0.1"),
    ("::7f00:1", "reserved address ::7f00:1"),
    ("100::1", "reserved address 100::1"),
    ("64:ff9b:1::a00:1", "reserved address 64:ff9b:1::a00:1"),
    ("192.0.2.1", "documentation address 192.0.2.1"),
    ("198.51.100.7", "documentation address 198.51.100.7"),
    ("203.0.113.9", "documentation address 203.0.113.9"),
    ("2001:db8::1", "documentation address 2001:db8::1"),
    ("3fff::1", "documentation address 3fff::1"),
    ("198.18.0.1", "benchmark address 198.18.0.1"),
    ("2001:2::1", "benchmark address 2001:2::1"),
    ("192.0.0.1", "non-global address 192.0.0.1"),
    ("2001::1", "non-global address 2001::1"),  # Teredo
    ("::ffff:127.0.0.1", "loopback address 127.0.0.1 (embedded in ::ffff:7f00:1)"),
    ("::ffff:10.0.0.1", "private address 10.0.0.1 (embedded in ::ffff:a00:1)"),
    ("::ffff:169.254.169.254", "link-local/metadata address 169.254.169.254 (embedded in"),
    ("2002:7f00:1::1", "loopback address 127.0.0.1 (embedded in 2002:7f00:1::1)"),
    ("2002:a9fe:a9fe::", "link-local/metadata address 169.254.169.254 (embedded in"),
    ("64:ff9b::7f00:1", "loopback address 127.0.0.1 (embedded in 64:ff9b::7f00:1)"),
    ("64:ff9b::c0a8:101", "private address 192.168.1.1 (embedded in 64:ff9b::c0a8:101)"),
]

PUBLIC_ADDRESSES = [
    "8.8.8.8",
    "1.1.1.1",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "2002:808:808::1",
    "64:ff9b::808:808",
]


class StaticResolver(AbstractResolver):
    """Answers from a table, so the rules are tested without DNS."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.answers:
            raise OSError(f"{host} does not resolve")
        return [
            ResolveResult(hostname=host, host=ip, port=port, family=0, proto=0, flags=0)
            for ip in self.answers[host]
        ]

    async def close(self) -> None:
        pass


def guard_resolving(answers: dict[str, list[str]], allow: str = "") -> UrlGuard:
    return UrlGuard.from_setting(allow, resolver_factory=lambda: StaticResolver(answers))


# Addresses


@pytest.mark.parametrize(("ip", "reason"), BLOCKED_ADDRESSES)
def test_an_address_that_is_not_globally_routable_is_refused_with_its_class(
    ip: str, reason: str
) -> None:
    with pytest.raises(UrlBlocked) as caught:
        UrlGuard().check_address("example.com", ip)
    assert caught.value.reason.startswith(reason)


@pytest.mark.parametrize("ip", PUBLIC_ADDRESSES)
def test_a_public_address_is_admitted(ip: str) -> None:
    UrlGuard().check_address("example.com", ip)


@pytest.mark.parametrize(("ip", "_"), BLOCKED_ADDRESSES)
def test_an_ip_literal_url_is_refused_without_resolving(ip: str, _: str) -> None:
    host = f"[{ip.replace('%', '%25')}]" if ":" in ip else ip
    with pytest.raises(UrlBlocked):
        UrlGuard().check_url_syntax(f"http://{host}:8080/hook")


@pytest.mark.parametrize("host", ["127.1", "2130706433", "127.000.000.001", "10.0.0.256"])
def test_a_non_canonical_address_literal_is_refused(host: str) -> None:
    with pytest.raises(UrlBlocked, match="not a canonical IP address"):
        UrlGuard().check_url_syntax(f"http://{host}/")


# Names, schemes


@pytest.mark.parametrize("host", [*sorted(METADATA_HOSTS), "Metadata.Google.Internal."])
def test_a_metadata_host_name_is_refused_whatever_it_resolves_to(host: str) -> None:
    guard = guard_resolving({host: ["8.8.8.8"]})
    with pytest.raises(UrlBlocked, match="cloud metadata host"):
        guard.check_url_syntax(f"http://{host}/computeMetadata/v1/")


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://example.com:70/_x", "ws://x"]
)
def test_a_scheme_other_than_http_or_https_is_refused(url: str) -> None:
    with pytest.raises(UrlBlocked, match="is not http or https"):
        UrlGuard().check_url_syntax(url)


@pytest.mark.parametrize("url", ["http:///path", "https://", "/relative/path"])
def test_a_url_without_host_is_refused(url: str) -> None:
    with pytest.raises(UrlBlocked):
        UrlGuard().check_url_syntax(url)


def test_a_refusal_does_not_repeat_the_password_in_the_url() -> None:
    with pytest.raises(UrlBlocked) as caught:
        UrlGuard().check_url_syntax("http://ana:s3cret@127.0.0.1/")
    assert "s3cret" not in str(caught.value)


def test_a_public_name_passes_the_syntax_check_unresolved() -> None:
    UrlGuard().check_url_syntax("https://api.example.com/hook?x=1")


# Resolution at create time


def test_check_url_refuses_a_name_when_any_of_its_addresses_is_not_admitted() -> None:
    guard = guard_resolving({"mixed.example": ["8.8.8.8", "10.0.0.5"]})
    with pytest.raises(UrlBlocked, match=re.escape("private address 10.0.0.5")):
        asyncio.run(guard.check_url("http://mixed.example/"))


def test_check_url_admits_a_name_with_only_public_addresses() -> None:
    guard = guard_resolving({"api.example": ["8.8.8.8", "2606:4700:4700::1111"]})
    asyncio.run(guard.check_url("https://api.example/hook"))


def test_check_url_leaves_a_name_that_does_not_resolve_to_the_call() -> None:
    asyncio.run(guard_resolving({}).check_url("https://not-yet.example/"))


# The operator's allow-list


@pytest.mark.parametrize(
    ("setting", "ip"),
    [
        ("10.0.0.0/8", "10.1.2.3"),
        ("127.0.0.1/32", "127.0.0.1"),
        ("127.0.0.1", "127.0.0.1"),
        ("::1/128", "::1"),
        ("fd00::/8", "fd00::5"),
        ("127.0.0.1/32", "::ffff:127.0.0.1"),
        ("192.168.0.0/16, 10.0.0.0/8", "10.9.9.9"),
    ],
)
def test_an_allowed_network_admits_addresses_inside_it(setting: str, ip: str) -> None:
    UrlGuard.from_setting(setting).check_address("internal", ip)


def test_an_allowed_network_admits_nothing_outside_it() -> None:
    with pytest.raises(UrlBlocked, match=re.escape("private address 10.0.0.1")):
        UrlGuard.from_setting("192.168.0.0/16").check_address("internal", "10.0.0.1")


@pytest.mark.parametrize(
    ("setting", "host"),
    [
        ("internal.example.com", "internal.example.com"),
        ("internal.example.com", "Internal.Example.COM."),
        ("*.svc.cluster.local", "billing.svc.cluster.local"),
        ("*.svc.cluster.local", "a.b.svc.cluster.local"),
        ("localhost", "localhost"),
        ("metadata", "metadata"),  # the operator's word beats the built-in list
    ],
)
def test_an_allowed_host_name_is_admitted_whatever_it_resolves_to(setting: str, host: str) -> None:
    guard = guard_resolving({host: ["127.0.0.1", "169.254.169.254"]}, allow=setting)
    guard.check_address(host, "127.0.0.1")
    guard.check_url_syntax(f"http://{host}/")
    asyncio.run(guard.check_url(f"http://{host}/"))


@pytest.mark.parametrize(
    ("setting", "host"),
    [
        ("*.svc.cluster.local", "svc.cluster.local"),
        ("*.svc.cluster.local", "evilsvc.cluster.local"),
        ("internal.example.com", "x.internal.example.com"),
        ("internal.example.com", "internal.example.com.evil.test"),
    ],
)
def test_an_allowed_host_name_admits_no_other_name(setting: str, host: str) -> None:
    with pytest.raises(UrlBlocked, match="loopback"):
        UrlGuard.from_setting(setting).check_address(host, "127.0.0.1")


def test_the_setting_splits_on_commas_and_whitespace() -> None:
    guard = UrlGuard.from_setting(" 10.0.0.0/8,\n::1/128  internal.example.com,,*.svc.local ")
    assert [str(n) for n in guard.allow_networks] == ["10.0.0.0/8", "::1/128"]
    assert guard.allow_hosts == {"internal.example.com", "*.svc.local"}


def test_an_empty_setting_allows_nothing() -> None:
    guard = UrlGuard.from_setting("  ")
    assert (guard.allow_networks, guard.allow_hosts) == ((), frozenset())


@pytest.mark.parametrize(
    "entry",
    [
        "10.0.0.0/33",
        "10.0.0.1/8",
        "300.1.1.1",
        "fe80::zz/64",
        "http://internal.example.com",
        "exa$mple.com",
        "*.",
        "*",
        "a.*.example.com",
        "-bad.example.com",
        "1.2.3",
    ],
)
def test_a_bad_allow_list_entry_is_refused_by_name(entry: str) -> None:
    with pytest.raises(ValueError, match="allow-list entry") as caught:
        UrlGuard.from_setting(f"10.0.0.0/8, {entry}")
    assert repr(entry) in str(caught.value)
