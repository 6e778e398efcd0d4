"""The admin page's session cookie: the CSRF proof a cookie write needs, and what ships."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from infrastructure.auth import AuthError, check_session_write, csrf_token, same_origin

ROOT = Path(__file__).resolve().parents[2]
SESSION = "header.claims.signature"


def test_the_csrf_token_is_bound_to_its_session() -> None:
    assert csrf_token(SESSION) == csrf_token(SESSION)
    assert csrf_token(SESSION) != csrf_token(SESSION + "x")
    assert SESSION not in csrf_token(SESSION)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_a_read_with_the_cookie_needs_no_proof(method: str) -> None:
    check_session_write(method, SESSION, None, "https://evil.example", "api.local")


@pytest.mark.parametrize("header", [None, "", "wrong", csrf_token("another session")])
def test_a_write_without_the_right_csrf_header_is_refused(header: str | None) -> None:
    with pytest.raises(AuthError, match="x-csrf-token"):
        check_session_write("POST", SESSION, header, None, "api.local")


def test_a_write_from_another_origin_is_refused_even_with_the_header() -> None:
    with pytest.raises(AuthError, match="cross-origin"):
        check_session_write(
            "DELETE", SESSION, csrf_token(SESSION), "https://evil.example", "api.local"
        )


@pytest.mark.parametrize("origin", [None, "http://api.local", "https://api.local"])
def test_a_write_from_our_page_passes(origin: str | None) -> None:
    check_session_write("PUT", SESSION, csrf_token(SESSION), origin, "api.local")


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [("http://127.0.0.1:3000", "127.0.0.1:3000", True), ("http://127.0.0.1:3001", "127.0.0.1:3000", False),
     ("null", "127.0.0.1:3000", False), ("http://a.example", None, False)],
)  # fmt: skip
def test_same_origin(origin: str, host: str | None, same: bool) -> None:
    assert same_origin(origin, host) is same


def test_every_file_of_the_admin_page_is_package_data() -> None:
    """A non-editable install ships exactly what pyproject's package-data names."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["interfaces.http"]
    package = ROOT / "interfaces" / "http"
    files = [p.relative_to(package).parts for p in (package / "static").rglob("*") if p.is_file()]
    assert files
    missing = [
        "/".join(parts)
        for parts in files
        if not any(
            len(g.split("/")) == len(parts)
            and all(fnmatchcase(p, q) for p, q in zip(parts, g.split("/"), strict=True))
            for g in globs
        )
    ]
    assert not missing, f"not in package-data: {missing}"
