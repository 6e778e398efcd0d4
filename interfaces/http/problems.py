"""RFC 9457 problem responses: every refusal says what was wrong, and names each bad field."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from domain.errors import (
    DomainError,
    ExecutionNotFound,
    InvalidField,
    InvalidFields,
    JobDeleted,
    JobNotFound,
    NameTaken,
    VersionConflict,
)
from domain.webhook import WebhookNotFound
from infrastructure.store_errors import unavailable

log = logging.getLogger("cronsource.http")
RETRY_AFTER_SECONDS = 10


class HttpProblem(Exception):
    """A refusal decided by the HTTP layer itself."""

    status = 400
    title = "Bad Request"

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail, self.headers = detail, headers or {}


class BadRequest(HttpProblem):
    """Malformed input: not JSON, a bad header, a bad query parameter."""


class Unauthorized(HttpProblem):
    """No token, or one that does not verify."""

    status, title = 401, "Unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(
            detail, {"WWW-Authenticate": 'Bearer realm="cronsource", error="invalid_token"'}
        )


class Forbidden(HttpProblem):
    """A valid token without the scope this needs."""

    status, title = 403, "Forbidden"


class PreconditionFailed(HttpProblem):
    """`If-Match` names another version than the current one."""

    status, title = 412, "Precondition Failed"


class PayloadTooLarge(HttpProblem):
    """The body is over the configured limit."""

    status, title = 413, "Content Too Large"


STATUS_BY_ERROR: list[tuple[type[Exception], int, str]] = [
    (InvalidField, 422, "Invalid Field"),
    (InvalidFields, 422, "Invalid Fields"),
    (JobNotFound, 404, "Not Found"),
    (JobDeleted, 404, "Not Found"),
    (ExecutionNotFound, 404, "Not Found"),
    (WebhookNotFound, 404, "Not Found"),
    (NameTaken, 409, "Conflict"),
    (VersionConflict, 409, "Conflict"),
    (DomainError, 400, "Bad Request"),
]


def problem(status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None,
            headers: dict[str, str] | None = None) -> Response:  # fmt: skip
    """An `application/problem+json` response."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return Response(
        orjson.dumps(body), status, headers=headers, media_type="application/problem+json"
    )


async def problem_response(request: Request, exc: Exception) -> Response:
    """Turn any refusal into a problem; anything else is a bug, logged, and a 500."""
    if isinstance(exc, HttpProblem):
        return problem(exc.status, exc.title, exc.detail, headers=exc.headers)
    if isinstance(exc, HTTPException):
        return problem(exc.status_code, "Error", str(exc.detail), headers=exc.headers)
    for cls, status, title in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            errors = None
            if isinstance(exc, InvalidFields):
                errors = [{"field": e.field, "detail": str(e)} for e in exc.errors]
            elif isinstance(exc, InvalidField | NameTaken):
                errors = [{"field": exc.field, "detail": str(exc)}]
            return problem(status, title, str(exc), errors)
    reason = unavailable(exc)
    if reason is not None:  # the store's state, not a bug: no stack, and the client may retry
        log.warning("%s %s: the store cannot be used: %s (%s)", request.method,
                    request.url.path, reason, exc)  # fmt: skip
        return problem(
            503, "Service Unavailable", f"the store cannot be used right now: {reason}; "
            "try again later", headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )  # fmt: skip
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "Internal Server Error", "an unexpected error occurred; it was logged")
