"""What a job does when it fires: call an HTTP endpoint, or run a registered function."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from domain.errors import InvalidField, InvalidFields
from domain.parameters import has_parameters, validate_parameters

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
DEFAULT_TIMEOUT_MS = 30_000
MAX_TIMEOUT_MS = 24 * 3600 * 1000
FUNCTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,200}$")


def _require_mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidField(path, "must be an object")
    return value


def _check_unknown(config: Mapping[str, Any], known: tuple[str, ...], path: str) -> None:
    unknown = sorted(set(config) - set(known))
    InvalidFields.collect(
        [
            InvalidField(f"{path}.{k}", f"unknown field; expected one of {', '.join(known)}")
            for k in unknown
        ]
    )


def _timeout_ms(config: Mapping[str, Any], path: str) -> int:
    timeout = config.get("timeout", DEFAULT_TIMEOUT_MS)
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        raise InvalidField(f"{path}.timeout", "must be an integer number of milliseconds")
    if not 1 <= timeout <= MAX_TIMEOUT_MS:
        raise InvalidField(f"{path}.timeout", f"must be between 1 and {MAX_TIMEOUT_MS} ms")
    return timeout


def check_http_url(url: str, path: str) -> None:
    """An http(s) URL with a host; its parameters (if any) are checked elsewhere."""
    if not url or not url.strip():
        raise InvalidField(path, "must not be empty")
    if any(c.isspace() for c in url):
        raise InvalidField(path, "must not contain whitespace")
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise InvalidField(path, f"is not a valid URL ({e})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidField(path, "only http and https URLs are allowed")
    if not parts.netloc:
        raise InvalidField(path, "must name a host")
    if not has_parameters(parts.netloc):
        try:
            parts.port  # noqa: B018  # raises on a bad port
        except ValueError:
            raise InvalidField(path, "has an invalid port") from None
        if not parts.hostname:
            raise InvalidField(path, "must name a host")


@dataclass(frozen=True, slots=True)
class HttpInvokerTask:
    """An HTTP call: `url`, or `endpoint` + `path`; auth, headers and body may hold parameters."""

    task_type: ClassVar[str] = "HttpInvokerTask"
    known: ClassVar[tuple[str, ...]] = (
        "url", "endpoint", "path", "method", "headers", "body", "auth", "timeout",
    )  # fmt: skip

    method: str = "GET"
    url: str | None = None
    endpoint: str | None = None
    path: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    auth: Mapping[str, str] | None = None
    timeout_ms: int = DEFAULT_TIMEOUT_MS

    @classmethod
    def from_config(cls, config: object, path: str = "taskConfig") -> HttpInvokerTask:
        """Validate a `taskConfig` object; every bad field is named."""
        config = _require_mapping(config, path)
        _check_unknown(config, cls.known, path)
        errors: list[InvalidField] = []

        def check(fn: Any) -> Any:
            try:
                return fn()
            except InvalidField as e:
                errors.append(e)
            except InvalidFields as e:
                errors.extend(e.errors)
            return None

        url, endpoint, url_path = config.get("url"), config.get("endpoint"), config.get("path")
        for name, value in (("url", url), ("endpoint", endpoint), ("path", url_path)):
            if value is not None and not isinstance(value, str):
                errors.append(InvalidField(f"{path}.{name}", "must be a string"))
        if not errors:
            if url is not None and (endpoint is not None or url_path is not None):
                errors.append(InvalidField(f"{path}.url", "give either url or endpoint + path"))
            elif url is None and endpoint is None:
                errors.append(InvalidField(f"{path}.url", "required (or endpoint + path)"))
            elif url is not None:
                check(lambda: check_http_url(url, f"{path}.url"))
            else:
                check(lambda: check_http_url(endpoint, f"{path}.endpoint"))
                if url_path is not None and url_path and not url_path.startswith("/"):
                    errors.append(InvalidField(f"{path}.path", "must start with /"))
        method = config.get("method", "GET")
        if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
            errors.append(
                InvalidField(f"{path}.method", f"must be one of {', '.join(HTTP_METHODS)}")
            )
            method = "GET"
        headers = check(lambda: _headers(config.get("headers"), f"{path}.headers")) or {}
        auth = check(lambda: _auth(config.get("auth"), f"{path}.auth"))
        timeout = check(lambda: _timeout_ms(config, path)) or DEFAULT_TIMEOUT_MS
        body = config.get("body")
        for name, value in (("url", url), ("endpoint", endpoint), ("path", url_path),
                            ("headers", headers), ("body", body)):  # fmt: skip
            check(lambda v=value, n=name: validate_parameters(v, f"{path}.{n}"))
        InvalidFields.collect(errors)
        return cls(
            method=method.upper(), url=url, endpoint=endpoint, path=url_path,
            headers=dict(headers), body=body, auth=auth, timeout_ms=timeout,
        )  # fmt: skip

    def target(self) -> str:
        """The URL to call, parameters unresolved."""
        if self.url is not None:
            return self.url
        return (self.endpoint or "").rstrip("/") + (self.path or "")

    def to_config(self) -> dict[str, Any]:
        """The normalised `taskConfig`, as stored in events and shown by the API."""
        config: dict[str, Any] = {"method": self.method}
        if self.url is not None:
            config["url"] = self.url
        else:
            config["endpoint"] = self.endpoint
            if self.path is not None:
                config["path"] = self.path
        if self.headers:
            config["headers"] = dict(self.headers)
        if self.body is not None:
            config["body"] = self.body
        if self.auth is not None:
            config["auth"] = dict(self.auth)
        config["timeout"] = self.timeout_ms
        return config


def _headers(value: object, path: str) -> dict[str, str]:
    if value is None:
        return {}
    value = _require_mapping(value, path)
    errors = []
    for name, v in value.items():
        if not HEADER_NAME.match(name):
            errors.append(InvalidField(f"{path}.{name}", "is not a valid header name"))
        elif not isinstance(v, str):
            errors.append(InvalidField(f"{path}.{name}", "must be a string"))
        elif "\r" in v or "\n" in v:
            errors.append(InvalidField(f"{path}.{name}", "must not contain line breaks"))
    InvalidFields.collect(errors)
    return dict(value)


def _auth(value: object, path: str) -> dict[str, str] | None:
    if value is None:
        return None
    value = _require_mapping(value, path)
    method = value.get("authMethod")
    if method == "bearer":
        _check_unknown(value, ("authMethod", "token"), path)
        if not isinstance(value.get("token"), str) or not value["token"]:
            raise InvalidField(f"{path}.token", "a non-empty string is required for bearer auth")
    elif method == "basic":
        _check_unknown(value, ("authMethod", "username", "password"), path)
        for name in ("username", "password"):
            if not isinstance(value.get(name), str):
                raise InvalidField(f"{path}.{name}", "a string is required for basic auth")
        if ":" in value["username"]:
            raise InvalidField(f"{path}.username", "must not contain ':'")
    else:
        raise InvalidField(f"{path}.authMethod", "must be 'bearer' or 'basic'")
    return dict(value)


@dataclass(frozen=True, slots=True)
class FunctionTask:
    """A call of a registered Python function with a JSON payload."""

    task_type: ClassVar[str] = "FunctionTask"
    known: ClassVar[tuple[str, ...]] = ("function", "payload", "timeout")

    function: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    timeout_ms: int = DEFAULT_TIMEOUT_MS

    @classmethod
    def from_config(cls, config: object, path: str = "taskConfig") -> FunctionTask:
        """Validate a `taskConfig` object; that the function exists is the application's check."""
        config = _require_mapping(config, path)
        _check_unknown(config, cls.known, path)
        errors = []
        function = config.get("function")
        if not isinstance(function, str) or not FUNCTION_NAME.match(function):
            errors.append(
                InvalidField(f"{path}.function", "a registered function name is required")
            )
        payload = config.get("payload", {})
        if payload is None:
            payload = {}
        if not isinstance(payload, Mapping):
            errors.append(InvalidField(f"{path}.payload", "must be an object"))
        else:
            try:
                validate_parameters(payload, f"{path}.payload")
            except InvalidField as e:
                errors.append(e)
        try:
            timeout = _timeout_ms(config, path)
        except InvalidField as e:
            errors.append(e)
        InvalidFields.collect(errors)
        return cls(function=function, payload=dict(payload), timeout_ms=timeout)

    def to_config(self) -> dict[str, Any]:
        """The normalised `taskConfig`."""
        return {
            "function": self.function,
            "payload": dict(self.payload),
            "timeout": self.timeout_ms,
        }


Task = HttpInvokerTask | FunctionTask
TASK_TYPES: dict[str, type[HttpInvokerTask] | type[FunctionTask]] = {
    HttpInvokerTask.task_type: HttpInvokerTask,
    FunctionTask.task_type: FunctionTask,
}


def parse_task(task_type: object, config: object) -> Task:
    """The task a job runs, from its `taskType` and `taskConfig`."""
    if task_type not in TASK_TYPES:
        raise InvalidField("taskType", f"must be one of {', '.join(TASK_TYPES)}")
    return TASK_TYPES[task_type].from_config(config)
