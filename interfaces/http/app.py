"""The Starlette application: the API under /_/scheduler, its auth, limits and problems."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from application.engine import Engine
from domain.errors import DomainError
from domain.instants import iso_ms
from infrastructure.auth import AuthError, Principal, TokenVerifier, bearer_token
from infrastructure.store_errors import STORE_ERRORS
from interfaces.composition import Core
from interfaces.http import (
    events_api,  # noqa: F401  # registers /events and /webhooks
    ui,
)
from interfaces.http.api import api
from interfaces.http.health import Readiness
from interfaces.http.metrics import metrics_endpoint
from interfaces.http.problems import (
    HttpProblem,
    PayloadTooLarge,
    Unauthorized,
    problem,
    problem_response,
)
from interfaces.http.routing import openapi

PREFIX = "/_/scheduler"
log = logging.getLogger("cronsource.http")


@dataclass(frozen=True)
class Limits:
    """Request limits (configurable)."""

    max_body_bytes: int = 1024 * 1024
    default_page_size: int = 50
    max_page_size: int = 500
    max_preview: int = 100


class BodyLimit:
    """Refuses a request body over the limit with 413, before reading it whole."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise PayloadTooLarge(f"the body is over {self.limit} bytes")
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(413, "Content Too Large", f"the body is over {self.limit} bytes")
        await response(scope, receive, send)


def build_app(core: Core, verifier: TokenVerifier, engine: Engine | None = None,
              limits: Limits | None = None, run_engine: bool = False) -> Starlette:  # fmt: skip
    """The only place the HTTP layer is put together."""
    limits = limits or Limits()

    async def verify(token: str) -> Principal:
        if verifier.needs_io:
            return await run_in_threadpool(verifier.verify, token)
        return verifier.verify(token)

    async def authenticate(request: Request) -> Principal:
        token = bearer_token(request.headers.get("authorization"))
        if token is None and ui.has_session(request):  # the admin page's cookie, no header
            return await ui.session_principal(request, verify)
        if token is None:
            raise Unauthorized("a bearer token is required (Authorization: Bearer <token>)")
        try:
            return await verify(token)
        except AuthError as e:
            raise Unauthorized(str(e)) from None

    async def prune_hourly() -> None:
        while True:
            try:
                removed = await run_in_threadpool(core.prune)
                if removed:
                    log.info("retention pruned %d execution row(s)", removed)
                removed = await run_in_threadpool(core.prune_deliveries)
                if removed:
                    log.info("retention pruned %d webhook delivery row(s)", removed)
            except Exception:  # the pruner must outlive a store outage; it logs the stack
                log.exception("retention pruning failed")
            await asyncio.sleep(3600)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = None
        app.state.loop = asyncio.get_running_loop()
        app.state.stopping.clear()  # started again (tests): streams may run again
        pruner = asyncio.create_task(prune_hourly(), name="retention")
        if run_engine and engine is not None:
            task = asyncio.create_task(engine.run(), name="engine")
            app.state.readiness.engine_task = task
        dispatcher = core.webhook_dispatcher() if core.settings.webhooks else None
        app.state.dispatcher = dispatcher
        hooks = asyncio.create_task(dispatcher.run(), name="webhooks") if dispatcher else None
        try:
            yield
        finally:
            app.state.stopping.set()  # streams end first (see `begin_shutdown`)
            pruner.cancel()
            if hooks is not None:
                dispatcher.stop()  # type: ignore[union-attr]
                await hooks
            if task is not None:
                engine.stop()  # type: ignore[union-attr]
                await task
                await engine.runner.close()  # type: ignore[union-attr]

    app = Starlette(
        routes=[Mount(PREFIX, routes=api.routes(authenticate) + ui.routes(verify))],
        exception_handlers={
            HttpProblem: problem_response,
            DomainError: problem_response,
            HTTPException: problem_response,
            # by class, so they are answered where raised: a handler for `Exception` answers
            # and then re-raises to the server, which logs a stack for a full disk too
            **dict.fromkeys(STORE_ERRORS, problem_response),
            Exception: problem_response,
        },
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    app.state.core, app.state.prefix, app.state.limits = core, PREFIX, limits
    app.state.openapi = openapi(api, PREFIX)
    app.state.stats = _stats(core, engine)
    app.state.readiness = Readiness(core, engine, core.settings.ready_max_lag)
    app.state.engine = engine
    app.state.metrics = metrics_endpoint(core, engine)
    app.state.dispatcher = None
    app.state.stopping, app.state.loop = asyncio.Event(), None
    return app


def begin_shutdown(app: Starlette) -> None:
    """The server is asked to stop: end the open event streams now (safe from a signal
    handler or another thread). uvicorn waits for open connections before the lifespan's
    shutdown, so an endless stream would otherwise hold up the exit, and the engine's drain
    behind it, until the graceful timeout."""
    loop = app.state.loop
    if loop is not None and not loop.is_closed():
        loop.call_soon_threadsafe(app.state.stopping.set)


def _stats(core: Core, engine: Engine | None) -> Callable[[str], dict[str, Any]]:
    def stats(tenant: str) -> dict[str, Any]:
        total, enabled = core.jobs_view.counts(tenant)
        since = iso_ms(datetime.now(UTC) - timedelta(hours=24)) or ""
        window = core.executions_view.window_stats(tenant, since)
        done = window["succeeded"] + window["failed"]
        head = core.jobs.recorder.max_notification_id() or 0
        return {
            "jobs": {"total": total, "enabled": enabled},
            "engine": {
                "active": engine.scheduled_jobs if engine else 0,
                "running": core.executions_view.count_status(tenant, "running"),
                "queued": core.executions_view.count_status(tenant, "pending"),
            },
            "last24h": {
                "succeeded": window["succeeded"],
                "failed": window["failed"],
                "successRate": round(window["succeeded"] / done, 4) if done else None,
            },
            "durationMs": window["durationMs"],
            "projections": core.projections.lag(head),
        }

    return stats
