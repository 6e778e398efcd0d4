"""The admin page at /_/scheduler/ui: its static files, and sign-in with a session cookie.

The page is plain HTML, CSS and JavaScript modules shipped in this package (`static/`); it
reads and writes through the same REST API as every other client. Signing in posts a token
to `/ui/login`, which checks it like a bearer token and sets it as an HttpOnly, SameSite=Strict
cookie (`Secure` over https, see `CRONSOURCE_UI_SECURE_COOKIE`); the API then accepts the
cookie in place of the `Authorization` header, which `EventSource` cannot send. Writes made
with the cookie need the CSRF header (see `infrastructure.auth.check_session_write`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infrastructure.auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    AuthError,
    Principal,
    check_session_write,
    csrf_token,
    same_origin,
)
from interfaces.http.problems import BadRequest, Forbidden, Unauthorized

Verify = Callable[[str], Awaitable[Principal]]

STATIC = Path(str(files("interfaces.http") / "static"))
COOKIE_PATH = "/_/scheduler"
MAX_SESSION_SECONDS = 12 * 3600  # a session ends after this, or when its token does
ENV_SECURE_COOKIE = "CRONSOURCE_UI_SECURE_COOKIE"
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
))  # fmt: skip
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def has_session(request: Request) -> bool:
    """Whether the request carries the admin page's cookie and no Authorization header."""
    return SESSION_COOKIE in request.cookies and "authorization" not in request.headers


async def session_principal(request: Request, verify: Verify) -> Principal:
    """The principal of the session cookie; a write also needs the page's CSRF proof."""
    session = request.cookies[SESSION_COOKIE]
    try:
        principal = await verify(session)
    except AuthError as e:
        raise Unauthorized(f"session: {e}; sign in again") from None
    _check_write(request, session)
    return principal


def _check_write(request: Request, session: str) -> None:
    try:
        check_session_write(
            request.method,
            session,
            request.headers.get(CSRF_HEADER),
            request.headers.get("origin"),
            request.headers.get("host"),
        )
    except AuthError as e:
        raise Forbidden(str(e)) from None


def _secure(request: Request) -> bool:
    setting = os.environ.get(ENV_SECURE_COOKIE, "auto").strip().lower()
    if setting in ("on", "true", "1", "yes"):
        return True
    if setting in ("off", "false", "0", "no"):
        return False
    return request.url.scheme == "https"


def _json(body: Any, status: int = 200) -> Response:
    headers = {"Cache-Control": "no-store", **SECURITY_HEADERS}
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


def _described(principal: Principal, session: str) -> dict[str, Any]:
    return {
        "authenticated": True,
        "subject": principal.subject,
        "tenant": principal.tenant,
        "scopes": sorted(principal.scopes),
        "csrfToken": csrf_token(session),
        "expiresAt": principal.claims.get("exp"),
    }


def routes(verify: Verify) -> list[BaseRoute]:
    """The page, its assets, and the session endpoints, relative to the API prefix."""
    index = (STATIC / "index.html").read_bytes()

    async def page(request: Request) -> Response:
        headers = {
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Cache-Control": "no-cache",
            **SECURITY_HEADERS,
        }
        return Response(index, 200, headers=headers, media_type="text/html; charset=utf-8")

    async def slash(request: Request) -> Response:
        return RedirectResponse(f"{COOKIE_PATH}/ui", 308)

    async def session(request: Request) -> Response:
        """Who is signed in (always 200, so the page's first look logs no error)."""
        value = request.cookies.get(SESSION_COOKIE)
        if not value:
            return _json({"authenticated": False})
        try:
            principal = await verify(value)
        except AuthError as e:
            response = _json({"authenticated": False, "reason": str(e)})
            response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
            return response
        return _json(_described(principal, value))

    async def login(request: Request) -> Response:
        """Check a token like a bearer token, then keep it as the session cookie."""
        # JSON only: a cross-site form cannot send it without a CORS preflight we never allow
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise BadRequest('send the token as JSON: {"token": "..."}')
        origin = request.headers.get("origin")
        if origin is not None and not same_origin(origin, request.headers.get("host")):
            raise Forbidden("cross-origin sign-in refused")
        try:
            doc = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise BadRequest("the body is not valid JSON") from None
        token = doc.get("token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise BadRequest("token: required")
        token = token.strip()
        try:
            principal = await verify(token)
        except AuthError as e:
            raise Unauthorized(f"sign-in refused: {e}") from None
        lifetime = MAX_SESSION_SECONDS
        expires = principal.claims.get("exp")
        if isinstance(expires, int | float):
            lifetime = max(1, min(lifetime, int(expires - time.time())))
        response = _json(_described(principal, token))
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=lifetime,
            path=COOKIE_PATH,
            secure=_secure(request),
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(request: Request) -> Response:
        value = request.cookies.get(SESSION_COOKIE)
        if value:
            _check_write(request, value)
        response = Response(status_code=204, headers=SECURITY_HEADERS)
        response.delete_cookie(
            SESSION_COOKIE, path=COOKIE_PATH, secure=_secure(request), httponly=True,
            samesite="strict",
        )  # fmt: skip
        return response

    return [
        Route("/ui", page, methods=["GET"]),
        Route("/ui/", slash, methods=["GET"]),
        Route("/ui/session", session, methods=["GET"]),
        Route("/ui/login", login, methods=["POST"]),
        Route("/ui/logout", logout, methods=["POST"]),
        Mount("/ui/assets", app=_Headers(StaticFiles(directory=STATIC / "assets")), name="ui"),
    ]


class _Headers:
    """Adds the security headers (and revalidation) to every static file answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"cache-control", b"no-cache"))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
