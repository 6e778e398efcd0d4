"""Bearer-token authentication: who calls, for which tenant, with which scopes.

Tokens are JWTs checked with PyJWT against one configured key: an HS256 secret, an RS256
public key, or RS256 keys published at a JWKS URL. The algorithm is pinned to the key kind,
so a token cannot pick its own (`alg: none`, or HS256 "signed" with the public key). `exp`,
`sub` and `aud` are required, `iss` too when an issuer is configured.

With no key configured the service never runs open: `ensure_secret` generates an HS256
secret into the data dir (mode 0600), and `serve` prints an admin token minted with it.

`TokenVerifier.verify` is CPU-only for a secret or a PEM key. With a JWKS URL it may block
on an HTTP fetch (timeout `JWKS_TIMEOUT_SECONDS`), which happens rarely: the key set is
cached for five minutes and an unknown `kid` forces at most one refetch per cooldown. So
`needs_io` is true then, and async callers run `verify` in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import exceptions as jwt_errors

log = logging.getLogger(__name__)

SCOPES = ("jobs:read", "jobs:write", "jobs:trigger", "webhooks:manage", "events:read")

SECRET_FILE = "jwt-secret"
MIN_SECRET_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash
MIN_RSA_BITS = 2048
MAX_TTL_SECONDS = 365 * 24 * 3600
MAX_TOKEN_CHARS = 16 * 1024  # far above any real token; refuses junk before parsing it
JWKS_TIMEOUT_SECONDS = 5

ENV_SECRET = "CRONSOURCE_JWT_SECRET"
ENV_PUBLIC_KEY = "CRONSOURCE_JWT_PUBLIC_KEY"
ENV_JWKS_URL = "CRONSOURCE_JWKS_URL"
ENV_AUDIENCE = "CRONSOURCE_JWT_AUDIENCE"
ENV_ISSUER = "CRONSOURCE_JWT_ISSUER"


class AuthError(Exception):
    """A refused token; the message is a short reason safe to show the client."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller a verified token names."""

    subject: str
    tenant: str
    scopes: frozenset[str]
    claims: Mapping[str, Any] = field(compare=False, repr=False)

    def has(self, scope: str) -> bool:
        """Whether the token grants `scope`."""
        return scope in self.scopes


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """The one key tokens are checked against, and the claims they must carry."""

    secret: str | None = field(default=None, repr=False)
    public_key: str | None = None
    jwks_url: str | None = None
    audience: str = "cronsource"
    issuer: str | None = None
    leeway_seconds: int = 30

    def __post_init__(self) -> None:
        kinds = [k for k in (self.secret, self.public_key, self.jwks_url) if k is not None]
        if len(kinds) != 1:
            raise ValueError("configure exactly one of secret, public_key and jwks_url")
        if self.secret is not None:
            _check_secret(self.secret, f"the JWT secret ({ENV_SECRET})")
        if self.public_key is not None:
            _rsa_public_key(self.public_key)
        if self.jwks_url is not None:
            _check_jwks_url(self.jwks_url)
        if not self.audience:
            raise ValueError(f"the JWT audience ({ENV_AUDIENCE}) must not be empty")
        if self.leeway_seconds < 0:
            raise ValueError("leeway_seconds must not be negative")

    @classmethod
    def from_env(cls, env: Mapping[str, str], data_dir: Path) -> tuple[AuthSettings, str | None]:
        """Settings from the environment; with no key set, the data dir's generated secret.

        The second element is the secret file's path when this call created it, so the
        first start can print an admin token.
        """
        given = {
            name: env.get(name) or None for name in (ENV_SECRET, ENV_PUBLIC_KEY, ENV_JWKS_URL)
        }
        chosen = [name for name, value in given.items() if value is not None]
        if len(chosen) > 1:
            raise ValueError(f"set only one of {', '.join(given)}; found {', '.join(chosen)}")
        expected = {"audience": env.get(ENV_AUDIENCE) or "cronsource"}
        expected["issuer"] = env.get(ENV_ISSUER) or None
        if given[ENV_SECRET] is not None:
            return cls(secret=given[ENV_SECRET], **expected), None
        if given[ENV_PUBLIC_KEY] is not None:
            return cls(public_key=_read_pem(given[ENV_PUBLIC_KEY]), **expected), None
        if given[ENV_JWKS_URL] is not None:
            return cls(jwks_url=given[ENV_JWKS_URL], **expected), None
        secret, created = ensure_secret(data_dir)
        return cls(secret=secret, **expected), str(data_dir / SECRET_FILE) if created else None


def ensure_secret(data_dir: Path) -> tuple[str, bool]:
    """The data dir's HS256 secret, generated on first use; returns (secret, created now)."""
    path = data_dir / SECRET_FILE
    try:
        return _read_secret(path), False
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    if _publish_secret(path, secret):
        return secret, True
    return _read_secret(path), False  # another process started at the same moment and won


def _publish_secret(path: Path, secret: str) -> bool:
    """Write the secret whole under `path` unless a file is there; False if one was."""
    # Written in full under a private name first, then linked into place: a process starting
    # alongside never reads a half-written file, and the link refuses to replace a winner's.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)  # never world-readable
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secret + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _read_secret(path: Path) -> str:
    with path.open(encoding="utf-8") as f:
        mode = os.fstat(f.fileno()).st_mode
        if os.name == "posix" and mode & 0o077:
            raise ValueError(
                f"{path} is accessible to other users (mode {mode & 0o777:o}); "
                f"run: chmod 600 {path}"
            )
        secret = f.read().strip()
    _check_secret(secret, str(path))
    return secret


def _check_secret(secret: str, where: str) -> None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"{where} must be at least {MIN_SECRET_BYTES} bytes")


def _read_pem(value: str) -> str:
    """The variable's PEM text, or the text of the PEM file it names."""
    if value.lstrip().startswith("-----BEGIN"):
        return value
    path = Path(value).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{ENV_PUBLIC_KEY}: cannot read the PEM file {path}: {e}") from None


def _rsa_public_key(pem: str) -> RSAPublicKey:
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise ValueError(f"{ENV_PUBLIC_KEY} is not a PEM public key") from None
    if not isinstance(key, RSAPublicKey):
        raise ValueError(f"{ENV_PUBLIC_KEY} must be an RSA public key (RS256)")
    if key.key_size < MIN_RSA_BITS:
        raise ValueError(f"{ENV_PUBLIC_KEY} must be at least {MIN_RSA_BITS} bits")
    return key


def _check_jwks_url(url: str) -> None:
    # Over plain http anyone on the path could hand us keys; loopback is the local exception.
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return
    raise ValueError(f"{ENV_JWKS_URL} must be an https URL (http only for a loopback host)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


# The first matching class gives the reason; subclasses come before their bases.
REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt_errors.ExpiredSignatureError, "expired token"),
    (jwt_errors.ImmatureSignatureError, "token not yet valid"),
    (jwt_errors.InvalidAudienceError, "wrong audience"),
    (jwt_errors.InvalidIssuerError, "wrong issuer"),
    (jwt_errors.InvalidSubjectError, "invalid claim: sub"),
    (jwt_errors.InvalidIssuedAtError, "invalid claim: iat"),
    (jwt_errors.InvalidAlgorithmError, "algorithm not allowed"),
    (jwt_errors.InvalidSignatureError, "bad signature"),
    (jwt_errors.DecodeError, "malformed token"),
    (jwt_errors.InvalidKeyError, "unusable signing key"),
)


def _reason(error: jwt_errors.PyJWTError) -> str:
    if isinstance(error, jwt_errors.MissingRequiredClaimError):
        return f"missing claim: {error.claim}"
    return next((r for cls, r in REASONS if isinstance(error, cls)), "invalid token")


class TokenVerifier:
    """Turns a bearer token into a `Principal`, or refuses it with an `AuthError`."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self._jwks: jwt.PyJWKClient | None = None
        self._key: str | RSAPublicKey | None = None
        if settings.secret is not None:
            self._algorithm, self._key = "HS256", settings.secret
        elif settings.public_key is not None:
            self._algorithm, self._key = "RS256", _rsa_public_key(settings.public_key)
        else:
            assert settings.jwks_url is not None  # AuthSettings holds exactly one key kind
            self._algorithm = "RS256"
            self._jwks = jwt.PyJWKClient(
                settings.jwks_url, cache_keys=True, lifespan=300, timeout=JWKS_TIMEOUT_SECONDS
            )

    def self_check(self) -> str:
        """Show that the key works: a token minted with a secret verifies; a JWKS URL serves
        signing keys (fetched now). A description of the key; ValueError if it does not."""
        if self.settings.secret is not None:
            token = mint_token(
                self.settings, self.settings.secret, subject="doctor", ttl_seconds=60
            )
            try:
                self.verify(token)
            except AuthError as e:
                raise ValueError(f"a token minted with the secret does not verify: {e}") from None
            return "HS256 secret: a token minted with it verifies"
        if self._jwks is None:
            assert isinstance(self._key, RSAPublicKey)
            return f"RS256 public key ({self._key.key_size} bits)"
        try:
            keys = self._jwks.get_signing_keys()
        except jwt_errors.PyJWKClientError as e:
            raise ValueError(f"{ENV_JWKS_URL}: no signing keys fetched: {e}") from None
        return f"RS256: {len(keys)} signing key(s) fetched from {self.settings.jwks_url}"

    @property
    def needs_io(self) -> bool:
        """Whether `verify` may block on the network (JWKS): call it from a thread then."""
        return self._jwks is not None

    def verify(self, token: str) -> Principal:
        """The principal a valid token names; AuthError with a short reason otherwise."""
        if not token:
            raise AuthError("missing token")
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError("malformed token")
        try:
            key = self._key if self._jwks is None else self._jwks_key(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=[self._algorithm],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway_seconds,
                options={"require": ["exp", "sub"], "enforce_minimum_key_length": True},
            )
        except jwt_errors.PyJWTError as e:
            raise AuthError(_reason(e)) from e
        return _principal(claims)

    def _jwks_key(self, token: str) -> jwt.PyJWK:
        assert self._jwks is not None
        header = jwt.get_unverified_header(token)
        if header.get("alg") != self._algorithm:  # refused before any key fetch
            raise AuthError("algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("missing key id")
        try:
            key = self._jwks.get_signing_key(kid)
        except (jwt_errors.PyJWKClientConnectionError, jwt_errors.PyJWKSetError, ValueError) as e:
            log.warning("cannot fetch the JWKS: %s", e)
            raise AuthError("signing keys unavailable") from e
        except jwt_errors.PyJWKClientError as e:
            raise AuthError("unknown key id") from e
        if key.algorithm_name != self._algorithm:
            raise AuthError("unusable signing key")
        return key


def _principal(claims: dict[str, Any]) -> Principal:
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject.strip():
        raise AuthError("invalid claim: sub")
    tenant = claims.get("tenant", "default")
    if not isinstance(tenant, str) or not tenant.strip():
        raise AuthError("invalid claim: tenant")
    scope = claims.get("scope", "")  # no scope claim: authenticated, but no rights
    if not isinstance(scope, str):
        raise AuthError("invalid claim: scope")
    return Principal(subject, tenant, frozenset(scope.split()), MappingProxyType(claims))


def mint_token(
    settings: AuthSettings,
    secret: str,
    *,
    subject: str,
    tenant: str = "default",
    scopes: Iterable[str] = SCOPES,
    ttl_seconds: int = 3600,
    issuer: str | None = None,
) -> str:
    """An HS256 token for `subject` that `TokenVerifier` accepts under `settings`.

    `scopes` may also be one space-separated string; `issuer` defaults to the settings'.
    """
    requested = set(scopes.split() if isinstance(scopes, str) else scopes)
    unknown = sorted(requested.difference(SCOPES))
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(unknown)} (known: {' '.join(SCOPES)})")
    if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl_seconds must be 1..{MAX_TTL_SECONDS}, not {ttl_seconds}")
    if not subject.strip():
        raise ValueError("subject must not be empty")
    if not tenant.strip():
        raise ValueError("tenant must not be empty")
    _check_secret(secret, "the signing secret")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "tenant": tenant,
        "scope": " ".join(s for s in SCOPES if s in requested),
        "iat": now,
        "exp": now + ttl_seconds,
        "aud": settings.audience,
    }
    if issuer := issuer or settings.issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")


def bearer_token(authorization_header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None for anything else."""
    parts = (authorization_header or "").split()
    if len(parts) == 2 and parts[0].lower() == "bearer":
        return parts[1]
    return None


# -- the admin page's session cookie -----------------------------------------------------------
#
# The cookie holds the very token the user signed in with (a signed JWT, checked by the same
# `TokenVerifier` on every request, so every API node accepts it and it ends when the token
# does). The browser keeps it HttpOnly and SameSite=Strict. A write made with the cookie must
# also prove it comes from our page: an `X-CSRF-Token` header equal to `csrf_token(cookie)`,
# which the page learns from `GET /ui/session` (a cross-site page can neither read that
# answer nor derive the value without the cookie), and an `Origin`, when the browser sends
# one, naming this host.

SESSION_COOKIE = "cronsource_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(session: str) -> str:
    """The anti-CSRF value bound to one session cookie (unguessable without the cookie)."""
    digest = hashlib.sha256(b"cronsource-csrf\x00" + session.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def check_session_write(
    method: str, session: str, csrf_header: str | None, origin: str | None, host: str | None
) -> None:
    """Refuse (AuthError) a cookie-authenticated write that does not come from our page."""
    if method.upper() in SAFE_METHODS:
        return
    if not csrf_header or not hmac.compare_digest(csrf_header, csrf_token(session)):
        raise AuthError(f"a write with the session cookie needs the {CSRF_HEADER} header")
    if origin is not None and not same_origin(origin, host):
        raise AuthError("cross-origin write refused")


def same_origin(origin: str, host: str | None) -> bool:
    """Whether an `Origin` header names the host the request was sent to."""
    parts = urlsplit(origin)
    return bool(host) and parts.scheme in ("http", "https") and parts.netloc == host
