"""RS256 tokens checked against a JWKS document served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from infrastructure.auth import AuthError, AuthSettings, TokenVerifier

KID = "key-1"


@dataclass
class JwksServer:
    """A JWKS endpoint that counts the fetches it answers."""

    url: str
    document: dict[str, Any]
    fetches: int = 0
    status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwks(signing_key: rsa.RSAPrivateKey) -> Iterator[JwksServer]:
    jwk = RSAAlgorithm.to_jwk(signing_key.public_key(), as_dict=True)
    document = {"keys": [{**jwk, "kid": KID, "alg": "RS256", "use": "sig"}]}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.fetches += 1
            body = json.dumps(state.document).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = JwksServer(f"http://127.0.0.1:{server.server_address[1]}/jwks.json", document)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def rs256(key: rsa.RSAPrivateKey, kid: str | None = KID, **claims: Any) -> str:
    payload = {"sub": "ana", "aud": "cronsource", "exp": int(time.time()) + 600, **claims}
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, key, algorithm="RS256", headers=headers)


def verifier_for(jwks: JwksServer) -> TokenVerifier:
    return TokenVerifier(AuthSettings(jwks_url=jwks.url))


def test_a_token_signed_with_a_published_key_is_accepted(jwks, signing_key):
    principal = verifier_for(jwks).verify(rs256(signing_key, scope="jobs:read", tenant="acme"))
    assert (principal.subject, principal.tenant) == ("ana", "acme")
    assert principal.scopes == {"jobs:read"}


def test_the_key_set_is_fetched_once_for_many_verifications(jwks, signing_key):
    verifier = verifier_for(jwks)
    for n in range(5):
        verifier.verify(rs256(signing_key, sub=f"user-{n}"))
    assert jwks.fetches == 1


def test_a_token_with_an_unknown_kid_is_refused(jwks, signing_key):
    with pytest.raises(AuthError, match=r"^unknown key id$"):
        verifier_for(jwks).verify(rs256(signing_key, kid="rotated-away"))


def test_unknown_kids_do_not_make_the_service_refetch_each_time(jwks, signing_key):
    verifier = verifier_for(jwks)
    verifier.verify(rs256(signing_key))
    for n in range(5):
        with pytest.raises(AuthError):
            verifier.verify(rs256(signing_key, kid=f"random-{n}"))
    assert jwks.fetches == 1


def test_a_token_signed_by_another_key_under_a_published_kid_is_refused(jwks):
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthError, match=r"^bad signature$"):
        verifier_for(jwks).verify(rs256(impostor))


def test_a_token_without_a_kid_is_refused_without_a_fetch(jwks, signing_key):
    with pytest.raises(AuthError, match=r"^missing key id$"):
        verifier_for(jwks).verify(rs256(signing_key, kid=None))
    assert jwks.fetches == 0


def test_an_hs256_token_is_refused_without_a_fetch(jwks):
    token = jwt.encode({"sub": "ana", "aud": "cronsource"}, "x" * 64, headers={"kid": KID})
    with pytest.raises(AuthError, match=r"^algorithm not allowed$"):
        verifier_for(jwks).verify(token)
    assert jwks.fetches == 0


def test_an_unreachable_key_set_refuses_the_token(jwks, signing_key):
    jwks.status = 503
    with pytest.raises(AuthError, match=r"^signing keys unavailable$"):
        verifier_for(jwks).verify(rs256(signing_key))
