"""The event log for subscribers: GET /events, the live stream, and webhook subscriptions."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from application.event_log import EventFilter, LiveReader
from application.public_events import PublicEvent
from domain.errors import InvalidField, VersionConflict
from domain.webhook import WebhookDisabled, WebhookNotFound
from infrastructure.auth import Principal
from interfaces.http import schemas as s
from interfaces.http.api import (
    PAGING,
    _if_match,
    _int_param,
    _paged,
    _paging,
    _query,
    _state,
    _visible,
    api,
    respond,
)
from interfaces.http.problems import BadRequest, HttpProblem, PreconditionFailed
from interfaces.http.routing import json_body, links_to

MAX_LIMIT = 1000
MAX_POSITION = 2**62
SSE = "text/event-stream"
_POSITION = re.compile(r"[0-9]{1,19}")  # ASCII digits only: `str.isdigit` admits '²'

CLOUD_EVENT: s.Schema = {
    "type": "object",
    "description": "A CloudEvents 1.0 envelope; `position` is the event's place in the log.",
    "properties": {
        "specversion": {"const": "1.0"},
        "id": {"type": "string"},
        "source": {"type": "string"},
        "type": {"type": "string", "examples": ["scheduler.job.execution.succeeded"]},
        "time": s.INSTANT,
        "subject": {"type": ["string", "null"]},
        "datacontenttype": {"const": "application/json"},
        "position": {"type": "integer", "minimum": 1},
        "data": {"type": "object"},
    },
    "required": ["specversion", "id", "source", "type", "time", "position", "data"],
}
EVENT_FILTERS: dict[str, s.Schema] = {
    "after": {"type": "integer", "minimum": 0, "maximum": MAX_POSITION},
    "types": {"type": "string", "examples": ["scheduler.job.execution.*,scheduler.job.deleted"]},
    "jobId": s.ID,
}
_GLOBS: s.Schema = {
    "type": "array",
    "items": {"type": "string", "pattern": "^[a-z0-9.*-]{1,200}$"},
    "minItems": 1,
    "maxItems": 50,
    "examples": [["scheduler.job.execution.*"]],
}
_WEBHOOK_FIELDS: dict[str, s.Schema] = {
    "url": {"type": "string", "minLength": 1, "maxLength": 2048},
    "eventTypes": _GLOBS,
    "jobId": {"type": ["string", "null"]},
    "applicationId": {"type": ["string", "integer", "null"]},
    "secret": {
        "type": "string",
        "writeOnly": True,
        "description": "whsec_ + base64 of 24-64 bytes",
    },
    "enabled": {"type": "boolean"},
}
WEBHOOK_CREATE: s.Schema = {
    "type": "object",
    "properties": {
        **_WEBHOOK_FIELDS,
        "startAfter": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_POSITION,
            "description": "deliver events after this log position (default: now)",
        },
    },
    "required": ["url", "eventTypes"],
    "additionalProperties": False,
}
_READ_ONLY = ("id", "createdAt", "createdBy", "updatedAt", "updatedBy", "version",
              "disabledReason", "startAfter", "delivery")  # fmt: skip
WEBHOOK_UPDATE: s.Schema = {
    "type": "object",
    "properties": {**_WEBHOOK_FIELDS, **{k: s.ANY_JSON for k in _READ_ONLY}},
    "additionalProperties": False,
}
WEBHOOK: s.Schema = {
    "type": "object",
    "properties": {
        "id": s.ID,
        "url": {"type": "string"},
        "eventTypes": {"type": "array", "items": {"type": "string"}},
        "jobId": {"type": ["string", "null"]},
        "applicationId": {"type": ["string", "null"]},
        "secret": {"type": "string"},
        "enabled": {"type": "boolean"},
        "disabledReason": {"type": ["string", "null"]},
        "startAfter": {"type": "integer"},
        "createdAt": s.INSTANT,
        "createdBy": {"type": "string"},
        "updatedAt": s.INSTANT,
        "updatedBy": {"type": "string"},
        "version": {"type": "integer"},
        "delivery": {"type": ["object", "null"]},
    },
    "required": ["id", "url", "eventTypes", "enabled", "secret", "version"],
}
REDELIVER: s.Schema = {
    "type": "object",
    "description": "One delivery again (`position` or `deliveryId`), or each event in (after, until].",
    "properties": {
        "position": {"type": "integer", "minimum": 1, "maximum": MAX_POSITION},
        "deliveryId": {"type": "string", "maxLength": 200},
        "after": {"type": "integer", "minimum": 0, "maximum": MAX_POSITION},
        "until": {"type": "integer", "minimum": 1, "maximum": MAX_POSITION},
    },
    "additionalProperties": False,
}
#: What a client can do next with the subscription in an answer (OpenAPI links)
WEBHOOK_LINKS = links_to(
    "webhook_id", "$response.body#/id", "get_webhook", "update_webhook", "delete_webhook",
    "list_deliveries", "redeliver",
)  # fmt: skip
DELIVERY_STATUS = ["pending", "retrying", "succeeded", "failed"]
DELIVERY: s.Schema = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "webhookId": s.ID,
        "position": {"type": "integer"},
        "type": {"type": "string"},
        "status": {"enum": DELIVERY_STATUS},
        "redelivery": {"type": "boolean"},
        "attemptCount": {"type": "integer"},
        "attempts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "at": s.INSTANT,
                    "status": {"type": ["integer", "null"]},
                    "latencyMs": {"type": "integer"},
                    "response": {"type": ["string", "null"]},
                    "error": {"type": ["string", "null"]},
                },
            },
        },
        "nextAttemptAt": {"type": ["string", "null"]},
        "createdAt": s.INSTANT,
        "updatedAt": s.INSTANT,
    },
    "required": ["id", "webhookId", "position", "type", "status", "attempts"],
}


# -- the log -----------------------------------------------------------------------------------


def _filter(request: Request, user: Principal) -> EventFilter:
    return EventFilter.parse(user.tenant, _query(request, "types"), _query(request, "jobId"))


def _json_array(events: list[PublicEvent]) -> bytes:
    return b"[" + b",".join(e.body for e in events) + b"]"  # each envelope is encoded once


@api.route(
    "GET", "/events", scope="events:read", summary="The log as CloudEvents, oldest first",
    query={**EVENT_FILTERS, "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}},
    responses={200: ("Events; Link rel=next while the log goes on; X-Next-After: resume after it",
                     {"type": "array", "items": CLOUD_EVENT})},
)  # fmt: skip
async def list_events(request: Request, user: Principal) -> Response:
    wanted = _filter(request, user)
    after = _int_param(request, "after", 0, 0, MAX_POSITION)
    limit = _int_param(request, "limit", 100, 1, MAX_LIMIT)
    page = await run_in_threadpool(_state(request).core.event_log.read, wanted, after, limit)
    headers = {"X-Next-After": str(page.next_after)}
    if page.more:
        query = urlencode({**dict(request.query_params), "after": page.next_after})
        headers["Link"] = f'<{request.url.path}?{query}>; rel="next"'
    return Response(_json_array(page.events), 200, headers=headers, media_type="application/json")


def _resume_from(request: Request) -> int | None:
    header = request.headers.get("last-event-id")
    if header is not None and header.strip():
        value = header.strip()
        if not _POSITION.fullmatch(value) or int(value) > MAX_POSITION:
            raise InvalidField("Last-Event-ID", "must be a log position (an event's id: line)")
        return int(value)
    if _query(request, "after") is None:
        return None
    return _int_param(request, "after", 0, 0, MAX_POSITION)


@api.route(
    "GET", "/events/stream", scope="events:read",
    summary="Server-Sent Events from Last-Event-ID or ?after= (default: now); live with "
            "Accept: text/event-stream, else up to now",
    query=EVENT_FILTERS, responses={200: ("An event stream (text/event-stream)", None)},
)  # fmt: skip
async def event_stream(request: Request, user: Principal) -> Response:
    wanted = _filter(request, user)
    after = _resume_from(request)
    state = _state(request)
    settings = state.core.settings
    live = SSE in request.headers.get("accept", "")

    def join() -> LiveReader:
        return LiveReader(
            state.core.live, wanted, after, settings.sse_buffer, settings.sse_buffer_bytes
        )

    frames = _frames(join, live, settings.sse_heartbeat_seconds, state.stopping)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(frames, media_type=SSE, headers=headers)


def _last(event: str, reason: str, reader: LiveReader) -> bytes:
    notice = {"reason": reason, "lastEventId": reader.cursor}
    return b"event: %s\ndata: %s\n\n" % (event.encode(), orjson.dumps(notice))


async def _frames(
    join: Callable[[], LiveReader], live: bool, heartbeat: float, stopping: asyncio.Event
) -> AsyncIterator[bytes]:
    """`id:` the position, `event:` the type, `data:` the envelope; `:` lines keep it open.

    The reader joins the live log here, when the stream starts: a client gone before that
    leaves no listener behind (this generator's `finally` runs only once it started)."""
    reader = join()
    try:
        yield b"retry: 2000\n: cronsource event stream\n\n"
        while True:
            if reader.overflowed:
                yield _last("overflow", "this client fell too far behind the log; reconnect "
                            "with Last-Event-ID to resume", reader)  # fmt: skip
                return
            if stopping.is_set():
                yield _last("shutdown", "the server is shutting down; reconnect with "
                            "Last-Event-ID to resume", reader)  # fmt: skip
                return
            batch = await reader.next_batch()
            if batch:
                yield b"".join(
                    b"id: %d\nevent: %s\ndata: %s\n\n" % (e.position, e.type.encode(), e.body)
                    for e in batch
                )
                continue
            if not reader.caught_up:
                continue
            if not live:
                yield b": up to date; send Accept: text/event-stream to follow live\n\n"
                return
            if not await _either(reader.ready, stopping, heartbeat):
                yield b": heartbeat\n\n"
    finally:
        reader.close()


async def _either(first: asyncio.Event, second: asyncio.Event, timeout: float) -> bool:
    """Wait until either event is set (True) or the timeout passes (False)."""
    waits = [asyncio.ensure_future(e.wait()) for e in (first, second)]
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    return bool(done)


# -- webhooks ----------------------------------------------------------------------------------


def _presented(row: dict[str, Any], delivery: dict[str, Any] | None) -> dict[str, Any]:
    shown = {k: v for k, v in row.items() if k != "tenant"}
    shown["delivery"] = delivery
    return shown


async def _webhook_row(request: Request, user: Principal, webhook_id: str) -> dict[str, Any]:
    core = _state(request).core

    def read() -> dict[str, Any]:
        row = core.webhooks_view.get_webhook(user.tenant, webhook_id)
        if row is None:
            raise WebhookNotFound(webhook_id)
        return _presented(row, core.deliveries.state(webhook_id))

    return await run_in_threadpool(read)


def _headers(request: Request, row: dict[str, Any]) -> dict[str, str]:
    return {"ETag": f'"{row["version"]}"',
            "Location": f"{_state(request).prefix}/webhooks/{row['id']}"}  # fmt: skip


@api.route(
    "GET", "/webhooks", scope="webhooks:manage", summary="List webhook subscriptions",
    query=PAGING, responses={200: ("Subscriptions, oldest first", {"type": "array", "items": WEBHOOK})},
)  # fmt: skip
async def list_webhooks(request: Request, user: Principal) -> Response:
    page, size = _paging(request)
    view = _state(request).core.webhooks_view
    rows, total = await run_in_threadpool(view.list_webhooks, user.tenant, (page - 1) * size, size)
    return _paged(request, [_presented(r, None) for r in rows], total, page, size)


@api.route(
    "POST", "/webhooks", scope="webhooks:manage", summary="Subscribe a URL to events",
    body=WEBHOOK_CREATE,
    responses={201: ("Created; the secret is shown in this answer only", WEBHOOK)},
    links={201: WEBHOOK_LINKS},
)  # fmt: skip
async def create_webhook(request: Request, user: Principal) -> Response:
    doc = await json_body(request, WEBHOOK_CREATE)
    core = _state(request).core
    written, secret = await run_in_threadpool(core.webhooks.create, user.tenant, doc, user.subject)
    await _visible(request, written)
    _changed(request, str(written.id))
    row = await _webhook_row(request, user, str(written.id))
    return respond({**row, "secret": secret}, 201, _headers(request, row))


@api.route(
    "GET", "/webhooks/{webhook_id}", scope="webhooks:manage", summary="One subscription and its delivery state",
    responses={200: ("The subscription; ETag header", WEBHOOK)},
)  # fmt: skip
async def get_webhook(request: Request, user: Principal) -> Response:
    row = await _webhook_row(request, user, request.path_params["webhook_id"])
    return respond(row, 200, _headers(request, row))


@api.route(
    "PUT", "/webhooks/{webhook_id}", scope="webhooks:manage",
    summary="Change some fields (enabled: false pauses, true resumes where it stopped)",
    body=WEBHOOK_UPDATE, responses={200: ("The subscription after the change", WEBHOOK)},
)  # fmt: skip
async def update_webhook(request: Request, user: Principal) -> Response:
    expected = _if_match(request)
    doc = await json_body(request, WEBHOOK_UPDATE)
    doc = {k: v for k, v in doc.items() if k not in _READ_ONLY}
    core = _state(request).core
    webhook_id = request.path_params["webhook_id"]
    try:
        written = await run_in_threadpool(
            core.webhooks.update, user.tenant, webhook_id, doc, user.subject, expected
        )
    except VersionConflict as e:
        if expected is None:
            raise
        raise PreconditionFailed(str(e), {"ETag": f'"{e.actual}"'}) from None
    await _visible(request, written)
    _changed(request, str(written.id))
    row = await _webhook_row(request, user, str(written.id))
    return respond(row, 200, _headers(request, row))


@api.route(
    "DELETE", "/webhooks/{webhook_id}", scope="webhooks:manage", summary="Delete a subscription",
    responses={204: ("Deleted", None)},
)  # fmt: skip
async def delete_webhook(request: Request, user: Principal) -> Response:
    core = _state(request).core
    written = await run_in_threadpool(
        core.webhooks.delete, user.tenant, request.path_params["webhook_id"], user.subject
    )
    await _visible(request, written)
    _changed(request, str(written.id))
    return Response(status_code=204)


@api.route(
    "GET", "/webhooks/{webhook_id}/deliveries", scope="webhooks:manage",
    summary="Deliveries of a subscription, newest first, each with its attempts",
    query={"status": {"enum": DELIVERY_STATUS}, **PAGING},
    responses={200: ("Deliveries", {"type": "array", "items": DELIVERY})},
)  # fmt: skip
async def list_deliveries(request: Request, user: Principal) -> Response:
    webhook_id = request.path_params["webhook_id"]
    await _webhook_row(request, user, webhook_id)  # another tenant's: 404
    status = _query(request, "status")
    if status is not None and status not in DELIVERY_STATUS:
        raise BadRequest(f"status: must be one of {', '.join(DELIVERY_STATUS)}")
    page, size = _paging(request)
    store = _state(request).core.deliveries
    rows, total = await run_in_threadpool(
        store.list_deliveries, user.tenant, webhook_id, status, (page - 1) * size, size
    )
    return _paged(request, rows, total, page, size)


@api.route(
    "POST", "/webhooks/{webhook_id}/redeliver", scope="webhooks:manage",
    summary="Deliver again: {position}, {deliveryId}, or {after, until}", body=REDELIVER,
    responses={202: ("Queued", {"type": "object", "properties": {
        "count": {"type": "integer"}, "deliveryIds": {"type": "array", "items": {"type": "string"}}}})},
)  # fmt: skip
async def redeliver(request: Request, user: Principal) -> Response:
    doc = await json_body(request, REDELIVER)
    state = _state(request)
    webhook_id = request.path_params["webhook_id"]
    try:
        ids = await run_in_threadpool(state.core.webhooks.redeliver, user.tenant, webhook_id, doc)
    except WebhookDisabled as e:
        raise Conflict(str(e)) from None
    if state.dispatcher is not None:
        state.dispatcher.poke(str(webhook_id))
    return respond({"count": len(ids), "deliveryIds": ids}, 202)


class Conflict(HttpProblem):
    """The request does not fit the resource's state (redeliver to a disabled webhook)."""

    status, title = 409, "Conflict"


def _changed(request: Request, webhook_id: str) -> None:
    """Tell this process's dispatcher at once (others see the change in the log)."""
    dispatcher = _state(request).dispatcher
    if dispatcher is not None:
        dispatcher.changed(webhook_id)
