"""Endpoints declared once: the route, its scope, its schemas and its OpenAPI entry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.errors import InvalidField, InvalidFields
from infrastructure.auth import Principal
from interfaces.http.problems import BadRequest, Forbidden
from interfaces.http.schemas import PROBLEM, Schema

Handler = Callable[[Request, Principal], Awaitable[Response]]
PUBLIC = ""


@dataclass
class Endpoint:
    """One operation of the API."""

    method: str
    path: str
    handler: Handler
    scope: str | None
    summary: str
    body: Schema | None = None
    body_required: bool = True
    query: dict[str, Schema] = field(default_factory=dict)
    required_query: tuple[str, ...] = ()
    responses: dict[int, tuple[str, Schema | None]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    links: dict[int, dict[str, Any]] = field(default_factory=dict)


class Api:
    """A registry of endpoints, from which both the Starlette routes and OpenAPI are made."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        scope: str | None,
        summary: str,
        body: Schema | None = None,
        body_required: bool = True,
        query: dict[str, Schema] | None = None,
        required_query: tuple[str, ...] = (),
        responses: dict[int, tuple[str, Schema | None]] | None = None,
        links: dict[int, dict[str, Any]] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Declare an endpoint (`scope=None`: no token needed); `links`: OpenAPI links by
        status, the operations a client can call next with a value from this answer."""

        def register(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    method,
                    path,
                    handler,
                    scope,
                    summary,
                    body,
                    body_required,
                    query or {},
                    required_query,
                    responses or {},
                    links=links or {},
                )
            )
            return handler

        return register

    def routes(
        self, authenticate: Callable[[Request], Awaitable[Principal | None]]
    ) -> list[Route]:
        """Starlette routes: authenticate, check the scope, then call the handler."""
        grouped: dict[str, dict[str, Endpoint]] = {}
        for e in self.endpoints:
            grouped.setdefault(e.path, {})[e.method] = e
        routes = []
        for path, by_method in grouped.items():
            routes.append(Route(path, _dispatch(by_method, authenticate), methods=list(by_method)))
        return routes


def _dispatch(
    by_method: dict[str, Endpoint], authenticate: Callable[[Request], Awaitable[Principal | None]]
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        e = by_method[request.method if request.method != "HEAD" else "GET"]
        principal = None
        if e.scope is not None:
            principal = await authenticate(request)
            assert principal is not None
            if e.scope and not principal.has(e.scope):
                raise Forbidden(f"this needs the scope {e.scope!r}")
        return await e.handler(request, principal)  # type: ignore[arg-type]

    return endpoint


_VALIDATORS: dict[int, Draft202012Validator] = {}


def validate(doc: Any, schema: Schema) -> None:
    """Check a request body against its schema; every problem names its field."""
    validator = _VALIDATORS.get(id(schema))
    if validator is None:
        validator = _VALIDATORS[id(schema)] = Draft202012Validator(schema)
    errors: list[InvalidField] = []
    for error in validator.iter_errors(doc):
        path = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required":
            missing = [
                k
                for k in error.validator_value
                if isinstance(doc, dict) and k not in error.instance
            ]
            errors += [InvalidField(f"{path}.{k}" if path else k, "required") for k in missing]
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = set(error.schema.get("properties", {}))
            extra = [k for k in error.instance if k not in known]
            errors += [InvalidField(f"{path}.{k}" if path else k, "unknown field") for k in extra]
        elif error.validator == "oneOf" and path.endswith("taskConfig"):
            continue  # the task type decides the shape; the domain says what is wrong with it
        else:
            errors.append(InvalidField(path or "body", error.message))
    seen: set[str] = set()
    InvalidFields.collect([e for e in errors if not (e.field in seen or seen.add(e.field))])


async def json_body(request: Request, schema: Schema | None, *, required: bool = True) -> Any:
    """The request's JSON body, validated; an empty optional body is None."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise BadRequest("the request needs a JSON body")
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"the body is not valid JSON: {e}") from None
    _refuse_nul(doc, "")
    if schema is not None:
        validate(doc, schema)
    return doc


def _refuse_nul(value: Any, path: str) -> None:
    """NUL cannot be stored in PostgreSQL text: refuse it in any string, naming where."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidField(path or "body", "must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                raise InvalidField(path or "body", "field names must not contain NUL characters")
            _refuse_nul(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_nul(item, f"{path}[{i}]")


def openapi(api: Api, prefix: str) -> dict[str, Any]:
    """OpenAPI 3.1 from the same schemas that validate requests."""
    paths: dict[str, Any] = {}
    for e in api.endpoints:
        operation: dict[str, Any] = {"summary": e.summary, "operationId": e.handler.__name__}
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_params(e.path)
        ]
        parameters += [
            {"name": name, "in": "query", "required": name in e.required_query, "schema": schema}
            for name, schema in e.query.items()
        ]
        if parameters:
            operation["parameters"] = parameters
        if e.body is not None:
            operation["requestBody"] = {
                "required": e.body_required,
                "content": {"application/json": {"schema": e.body}},
            }
        responses: dict[str, Any] = {}
        for status, (description, schema) in sorted(e.responses.items()):
            entry: dict[str, Any] = {"description": description}
            if schema is not None:
                entry["content"] = {"application/json": {"schema": schema}}
            if status in e.links:
                entry["links"] = e.links[status]
            responses[str(status)] = entry
        problem = {"content": {"application/problem+json": {"schema": PROBLEM}}}
        for status, description in _problems(e).items():
            responses.setdefault(str(status), {"description": description, **problem})
        operation["responses"] = responses
        if e.scope is None:
            operation["security"] = []
        elif e.scope:
            operation["x-required-scope"] = e.scope
        paths.setdefault(prefix + e.path, {})[e.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cronsource",
            "version": "1",
            "description": "Event-sourced cron scheduling.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
        },
        "security": [{"bearer": []}],
    }


def links_to(parameter: str, value: str, *operation_ids: str) -> dict[str, Any]:
    """OpenAPI links, one per operation, each passing `value` (a runtime expression such as
    `$response.body#/id`) as its path parameter `parameter`."""
    return {
        operation_id: {"operationId": operation_id, "parameters": {parameter: value}}
        for operation_id in operation_ids
    }


def _problems(e: Endpoint) -> dict[int, str]:
    problems = {400: "Bad request", 413: "Body too large", 422: "Invalid field(s)"}
    if e.scope is not None:
        problems.update({401: "Missing or invalid token", 403: "Missing scope"})
    if "{" in e.path:
        problems[404] = "Not found"
    if e.method in ("POST", "PUT", "DELETE"):
        problems[409] = "Conflict"
    if e.method == "PUT":
        problems[412] = "Version mismatch (If-Match)"
    return problems


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]
