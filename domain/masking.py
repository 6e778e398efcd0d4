"""Masking of secrets in task configs and URLs, so none leaves the service in a response, event
snapshot, log line or webhook."""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import unquote_plus, urlsplit, urlunsplit

MASK = "***"

_SECRET_NAMES = frozenset({"auth", "authorization", "proxy-authorization", "cookie", "set-cookie"})
# Deliberately broad: masking a harmless `monkey` field costs less than leaking an `apiKey`.
_SECRET_PARTS = ("token", "secret", "password", "passwd", "key")
_AUTH_METHOD = "authMethod"


@lru_cache(maxsize=4096)  # field names repeat: every execution masks the same few
def is_secret_key(name: str) -> bool:
    """Whether a field, header or query parameter of this name holds a secret (any case)."""
    lowered = name.lower()
    return lowered in _SECRET_NAMES or any(part in lowered for part in _SECRET_PARTS)


def mask_secrets(value: object) -> object:
    """A copy of `value` whose secret dict entries, at any depth, hold `MASK` instead.

    An `auth` object keeps its `authMethod`, so bearer and basic stay distinguishable, and
    has every other field masked. A secret entry whose value is `None` stays `None`: "not
    set" is no secret, and masking it would suggest a credential that is not there. The
    input is never changed.
    """
    if isinstance(value, dict):
        return {key: _mask_entry(key, item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_secrets(item) for item in value]
    if isinstance(value, tuple):
        return tuple(mask_secrets(item) for item in value)
    return value


def _mask_entry(key: object, value: object) -> object:
    if not (isinstance(key, str) and is_secret_key(key)):
        return mask_secrets(value)
    if key.lower() == "auth" and isinstance(value, dict):
        return {
            field: item if field == _AUTH_METHOD else _masked(item)
            for field, item in value.items()
        }
    return _masked(value)


def _masked(value: object) -> object:
    return None if value is None else MASK


def mask_url(url: str) -> str:
    """`url` with its userinfo password and the values of secret query parameters masked.

    Everything else is kept as written. A fragment is read like a query too, since OAuth
    puts `access_token` there. A URL too malformed to parse comes back as `MASK` entirely.
    """
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
    except ValueError:
        return MASK
    netloc = parts.netloc
    if has_password:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user, _, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostinfo}"
    return urlunsplit(
        parts._replace(
            netloc=netloc, query=_mask_query(parts.query), fragment=_mask_query(parts.fragment)
        )
    )


def _mask_query(query: str) -> str:
    """Mask the value of each `name=value` pair with a secret name, leaving the rest as is."""
    if "=" not in query:
        return query
    pairs = []
    for pair in query.split("&"):
        name, equals, _ = pair.partition("=")
        pairs.append(f"{name}={MASK}" if equals and is_secret_key(unquote_plus(name)) else pair)
    return "&".join(pairs)


_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
_CREDENTIALS = re.compile(r"\b(Bearer|Basic)\s+[^\s\"',;]+", re.IGNORECASE)
_NAMED = re.compile(
    r"""(?P<q>["']?)(?P<name>[A-Za-z_][\w.-]*)(?P=q)(?P<sep>\s*[:=]\s*)"""
    r"""(?P<value>"[^"]*"|'[^']*'|[^\s,;&}\])]+)"""
)


def mask_text(text: str) -> str:
    """Free text (a log line) with the secrets it may quote masked: URLs as `mask_url` does,
    the credentials after `Bearer` or `Basic`, and the value after a secret-named field
    (`token=…`, `"password": "…"`)."""
    text = _URL.sub(lambda m: mask_url(m.group()), text)
    text = _CREDENTIALS.sub(lambda m: f"{m.group(1)} {MASK}", text)
    return _NAMED.sub(_mask_named, text)


def _mask_named(match: re.Match[str]) -> str:
    value = match["value"]
    if not is_secret_key(match["name"]) or value.lower() in ("bearer", "basic"):
        return match.group()  # after a scheme, `_CREDENTIALS` masked the credentials
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match['q']}{match['name']}{match['q']}{match['sep']}{quote}{MASK}{quote}"
