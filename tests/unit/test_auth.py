"""Token verification, minting, the generated secret and the settings read from env."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from infrastructure.auth import (
    SCOPES,
    AuthError,
    AuthSettings,
    TokenVerifier,
    bearer_token,
    ensure_secret,
    mint_token,
)

SECRET = "s" * 64
OTHER_SECRET = "o" * 64
ISSUER = "https://issuer.example"
DROP = object()  # a claim value meaning "leave the claim out"


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims for the issuer-checking verifier, with overrides (DROP removes one)."""
    base = {"sub": "ana", "aud": "cronsource", "iss": ISSUER, "exp": int(time.time()) + 600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not DROP}


def hs256(key: str = SECRET, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), key, algorithm="HS256")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed_hs256(key: bytes, payload: dict[str, Any]) -> str:
    """An HS256 token built by hand: PyJWT refuses to use a PEM key as an HMAC secret."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(payload).encode())
    signature = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64url(signature)}"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


verifier = TokenVerifier(AuthSettings(secret=SECRET, issuer=ISSUER))

BAD_TOKENS: list[tuple[str, Callable[[], str], str]] = [
    ("empty", lambda: "", "missing token"),
    ("not a jwt", lambda: "abc", "malformed token"),
    ("three junk segments", lambda: "a.b.c", "malformed token"),
    ("oversized", lambda: "a" * 20_000, "malformed token"),
    ("other secret", lambda: hs256(OTHER_SECRET), "bad signature"),
    ("alg none", lambda: jwt.encode(claims(), None, algorithm="none"), "algorithm not allowed"),
    ("HS512", lambda: jwt.encode(claims(), SECRET, algorithm="HS512"), "algorithm not allowed"),
    ("expired", lambda: hs256(exp=int(time.time()) - 120), "expired token"),
    ("not yet valid", lambda: hs256(nbf=int(time.time()) + 120), "token not yet valid"),
    ("wrong audience", lambda: hs256(aud="someone-else"), "wrong audience"),
    ("missing audience", lambda: hs256(aud=DROP), "missing claim: aud"),
    ("wrong issuer", lambda: hs256(iss="https://evil.example"), "wrong issuer"),
    ("missing issuer", lambda: hs256(iss=DROP), "missing claim: iss"),
    ("missing sub", lambda: hs256(sub=DROP), "missing claim: sub"),
    ("blank sub", lambda: hs256(sub=" "), "invalid claim: sub"),
    ("numeric sub", lambda: hs256(sub=42), "invalid claim: sub"),
    ("missing exp", lambda: hs256(exp=DROP), "missing claim: exp"),
    ("exp not a number", lambda: hs256(exp="tomorrow"), "malformed token"),
    ("tenant not a string", lambda: hs256(tenant=["a", "b"]), "invalid claim: tenant"),
    ("scope not a string", lambda: hs256(scope=["jobs:read"]), "invalid claim: scope"),
]


@pytest.mark.parametrize(
    ("make_token", "reason"), [c[1:] for c in BAD_TOKENS], ids=[c[0] for c in BAD_TOKENS]
)
def test_a_bad_token_is_refused_with_its_reason(make_token: Callable[[], str], reason: str):
    token = make_token()
    with pytest.raises(AuthError) as refused:
        verifier.verify(token)
    assert str(refused.value) == reason


def test_the_refusal_shows_neither_token_nor_key():
    token = hs256(OTHER_SECRET)
    with pytest.raises(AuthError) as refused:
        verifier.verify(token)
    assert token not in str(refused.value)
    assert OTHER_SECRET not in str(refused.value)
    assert SECRET not in str(refused.value)


def test_a_valid_hs256_token_names_its_principal():
    principal = verifier.verify(hs256(tenant="acme", scope="jobs:read"))
    assert (principal.subject, principal.tenant) == ("ana", "acme")
    assert principal.claims["iss"] == ISSUER


def test_an_expiry_within_the_leeway_is_accepted():
    assert verifier.verify(hs256(exp=int(time.time()) - 10)).subject == "ana"


def test_without_a_configured_issuer_iss_is_not_required():
    plain = TokenVerifier(AuthSettings(secret=SECRET))
    assert plain.verify(hs256(iss=DROP)).subject == "ana"


def test_a_token_without_a_scope_claim_has_no_rights():
    principal = verifier.verify(hs256())
    assert principal.scopes == frozenset()
    assert not principal.has("jobs:read")


def test_the_scope_claim_is_split_on_whitespace():
    principal = verifier.verify(hs256(scope="jobs:read  events:read\tjobs:trigger"))
    assert principal.scopes == {"jobs:read", "events:read", "jobs:trigger"}
    assert principal.has("events:read")
    assert not principal.has("jobs:write")


def test_the_tenant_defaults_to_default():
    assert verifier.verify(hs256()).tenant == "default"


def test_an_rs256_token_is_accepted_with_the_public_key(rsa_key: rsa.RSAPrivateKey):
    rs = TokenVerifier(AuthSettings(public_key=public_pem(rsa_key)))
    token = jwt.encode(claims(scope="jobs:read"), rsa_key, algorithm="RS256")
    assert rs.verify(token).scopes == {"jobs:read"}


def test_an_hs256_token_signed_with_the_public_key_is_refused(rsa_key: rsa.RSAPrivateKey):
    pem = public_pem(rsa_key)
    rs = TokenVerifier(AuthSettings(public_key=pem))
    with pytest.raises(AuthError, match=r"^algorithm not allowed$"):
        rs.verify(hand_signed_hs256(pem.encode(), claims()))


def test_an_rs256_token_of_another_key_is_refused(rsa_key: rsa.RSAPrivateKey):
    rs = TokenVerifier(AuthSettings(public_key=public_pem(rsa_key)))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthError, match=r"^bad signature$"):
        rs.verify(jwt.encode(claims(), other, algorithm="RS256"))


def test_an_rs256_token_is_refused_where_a_secret_is_configured(rsa_key: rsa.RSAPrivateKey):
    with pytest.raises(AuthError, match=r"^algorithm not allowed$"):
        verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256"))


def test_only_a_jwks_verifier_needs_io(rsa_key: rsa.RSAPrivateKey):
    assert not verifier.needs_io
    assert not TokenVerifier(AuthSettings(public_key=public_pem(rsa_key))).needs_io
    assert TokenVerifier(AuthSettings(jwks_url="https://idp.example/jwks.json")).needs_io


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="no key"),
        pytest.param({"secret": SECRET, "jwks_url": "https://idp.example/k"}, id="two keys"),
        pytest.param({"secret": "short"}, id="short secret"),
        pytest.param({"public_key": "not a pem"}, id="bad pem"),
        pytest.param({"jwks_url": "http://idp.example/jwks.json"}, id="plain http"),
        pytest.param({"jwks_url": "file:///etc/jwks.json"}, id="file url"),
        pytest.param({"secret": SECRET, "audience": ""}, id="empty audience"),
        pytest.param({"secret": SECRET, "leeway_seconds": -1}, id="negative leeway"),
    ],
)
def test_settings_refuse_an_unusable_configuration(kwargs: dict[str, Any]):
    with pytest.raises(ValueError):
        AuthSettings(**kwargs)


def test_settings_refuse_a_non_rsa_public_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = public_pem(ec.generate_private_key(ec.SECP256R1()))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="RSA"):
        AuthSettings(public_key=pem)


def test_the_settings_repr_hides_the_secret():
    assert SECRET not in repr(AuthSettings(secret=SECRET))


def test_a_minted_token_verifies_with_all_scopes_by_default():
    settings = AuthSettings(secret=SECRET, issuer=ISSUER)
    principal = TokenVerifier(settings).verify(mint_token(settings, SECRET, subject="admin"))
    assert principal.subject == "admin"
    assert principal.tenant == "default"
    assert principal.scopes == set(SCOPES)
    assert principal.claims["iss"] == ISSUER
    assert principal.claims["exp"] - principal.claims["iat"] == 3600


def test_a_minted_token_carries_the_given_tenant_scopes_and_issuer():
    settings = AuthSettings(secret=SECRET, audience="api")
    token = mint_token(
        settings, SECRET, subject="bot", tenant="acme", scopes="jobs:read events:read",
        ttl_seconds=60, issuer="cli",
    )  # fmt: skip
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], audience="api")
    assert payload["tenant"] == "acme"
    assert payload["scope"] == "jobs:read events:read"
    assert payload["iss"] == "cli"
    assert payload["exp"] - payload["iat"] == 60


def test_a_token_minted_with_no_scopes_has_no_rights():
    settings = AuthSettings(secret=SECRET)
    token = mint_token(settings, SECRET, subject="nobody", scopes=[])
    assert TokenVerifier(settings).verify(token).scopes == frozenset()


def test_minting_refuses_unknown_scopes_naming_them():
    settings = AuthSettings(secret=SECRET)
    with pytest.raises(ValueError, match="unknown scopes: admin, jobs:delete"):
        mint_token(settings, SECRET, subject="ana", scopes=["jobs:read", "jobs:delete", "admin"])


@pytest.mark.parametrize("ttl", [0, -5, 31_536_001])
def test_minting_refuses_a_ttl_out_of_range(ttl: int):
    with pytest.raises(ValueError, match="ttl_seconds"):
        mint_token(AuthSettings(secret=SECRET), SECRET, subject="ana", ttl_seconds=ttl)


@pytest.mark.parametrize("ttl", [1, 31_536_000])
def test_minting_accepts_the_ttl_bounds(ttl: int):
    assert mint_token(AuthSettings(secret=SECRET), SECRET, subject="ana", ttl_seconds=ttl)


@pytest.mark.parametrize(
    "kwargs", [{"subject": ""}, {"subject": "ana", "tenant": ""}], ids=["subject", "tenant"]
)
def test_minting_refuses_an_empty_name(kwargs: dict[str, str]):
    with pytest.raises(ValueError):
        mint_token(AuthSettings(secret=SECRET), SECRET, **kwargs)  # type: ignore[arg-type]


def test_minting_refuses_a_short_secret():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        mint_token(AuthSettings(secret=SECRET), "short", subject="ana")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer a b", None),
        ("Basic dXNlcjpwYXNz", None),
        ("abc", None),
    ],
)
def test_bearer_token_takes_only_a_bearer_header(header: str | None, token: str | None):
    assert bearer_token(header) == token


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_ensure_secret_creates_a_private_file(tmp_path: Path):
    secret, created = ensure_secret(tmp_path / "data")
    path = tmp_path / "data" / "jwt-secret"
    assert created
    assert len(secret) >= 64
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().strip() == secret
    assert [p.name for p in path.parent.iterdir()] == ["jwt-secret"]  # no temp file left


def test_ensure_secret_returns_the_same_secret_the_second_time(tmp_path: Path):
    first, _ = ensure_secret(tmp_path)
    second, created = ensure_secret(tmp_path)
    assert (second, created) == (first, False)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_ensure_secret_refuses_a_file_others_can_read(tmp_path: Path):
    path = tmp_path / "jwt-secret"
    path.write_text("x" * 64)
    path.chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        ensure_secret(tmp_path)


def test_ensure_secret_refuses_a_file_with_a_short_secret(tmp_path: Path):
    path = tmp_path / "jwt-secret"
    path.write_text("short\n")
    path.chmod(0o600)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        ensure_secret(tmp_path)


def test_from_env_without_a_key_generates_one_and_reports_it_once(tmp_path: Path):
    settings, created = AuthSettings.from_env({}, tmp_path)
    again, created_again = AuthSettings.from_env({}, tmp_path)
    assert created == str(tmp_path / "jwt-secret")
    assert created_again is None
    assert settings.secret == again.secret == (tmp_path / "jwt-secret").read_text().strip()
    assert settings.audience == "cronsource"


def test_from_env_refuses_two_key_kinds_naming_them(tmp_path: Path):
    env = {"CRONSOURCE_JWT_SECRET": SECRET, "CRONSOURCE_JWKS_URL": "https://idp.example/k"}
    with pytest.raises(ValueError, match="CRONSOURCE_JWT_SECRET, CRONSOURCE_JWKS_URL") as e:
        AuthSettings.from_env(env, tmp_path)
    assert SECRET not in str(e.value)
    assert not (tmp_path / "jwt-secret").exists()


def test_from_env_reads_the_secret_audience_and_issuer(tmp_path: Path):
    env = {
        "CRONSOURCE_JWT_SECRET": SECRET,
        "CRONSOURCE_JWT_AUDIENCE": "api",
        "CRONSOURCE_JWT_ISSUER": ISSUER,
        "CRONSOURCE_JWKS_URL": "",  # an empty variable counts as unset
    }
    settings, created = AuthSettings.from_env(env, tmp_path)
    assert settings == AuthSettings(secret=SECRET, audience="api", issuer=ISSUER)
    assert created is None


def test_from_env_takes_the_public_key_as_pem_text(tmp_path: Path, rsa_key: rsa.RSAPrivateKey):
    pem = public_pem(rsa_key)
    settings, _ = AuthSettings.from_env({"CRONSOURCE_JWT_PUBLIC_KEY": pem}, tmp_path)
    assert settings.public_key == pem


def test_from_env_takes_the_public_key_as_a_file_path(tmp_path: Path, rsa_key: rsa.RSAPrivateKey):
    pem_file = tmp_path / "public.pem"
    pem_file.write_text(public_pem(rsa_key))
    env = {"CRONSOURCE_JWT_PUBLIC_KEY": str(pem_file)}
    settings, _ = AuthSettings.from_env(env, tmp_path)
    token = jwt.encode(claims(iss=DROP), rsa_key, algorithm="RS256")
    assert TokenVerifier(settings).verify(token).subject == "ana"


def test_from_env_names_the_variable_of_an_unreadable_key_file(tmp_path: Path):
    env = {"CRONSOURCE_JWT_PUBLIC_KEY": str(tmp_path / "missing.pem")}
    with pytest.raises(ValueError, match="CRONSOURCE_JWT_PUBLIC_KEY"):
        AuthSettings.from_env(env, tmp_path)
