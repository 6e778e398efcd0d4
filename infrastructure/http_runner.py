"""The HTTP task runner: every HttpInvokerTask call goes through one pooled, guarded session.

One `aiohttp.ClientSession` serves all jobs so connections to a target are reused; the URL
guard builds it, so each connection and each redirect hop is judged (see `url_guard`), and
what aiohttp itself refuses that the guard refuses too is reported as blocked. What
a call comes to is always an outcome, never an exception, except cancellation: the engine
cancels a running attempt on the `replace` policy and at shutdown, and that must get through.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import traceback
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import aiohttp
import orjson
from multidict import CIMultiDict
from yarl import URL

from application.ports import TaskOutcome, TaskRequest
from domain.errors import DomainError, UrlBlocked
from domain.execution import ErrorCode
from domain.masking import MASK, is_secret_key, mask_url
from domain.tasks import HttpInvokerTask
from infrastructure.url_guard import UrlGuard

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 65_536
# The response headers a result keeps: enough to see what came back, none that carry secrets.
RESULT_HEADERS = (
    "content-type", "content-length", "etag", "location", "retry-after", "date", "last-modified",
)  # fmt: skip
STACK_LINES = 20
PREPARED_CALLS = 4096  # distinct resolved configs whose prepared call is kept


class HttpTaskRunner:
    """Runs HttpInvokerTask attempts through the URL guard; a failure is an outcome with a code.

    The session is created on the first call, inside the running event loop, and is bound to
    that loop: use one runner per loop and `close()` it there.
    """

    def __init__(
        self,
        guard: UrlGuard,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        on_blocked: Callable[[], None] | None = None,
    ) -> None:
        if max_body_bytes < 0:
            raise ValueError("max_body_bytes must not be negative")
        self.guard = guard
        self.on_blocked = on_blocked or _nothing  # counted in the metrics
        self.max_body_bytes = max_body_bytes
        self._session: aiohttp.ClientSession | None = None
        self._calls: dict[bytes, _Call] = {}

    async def run(self, request: TaskRequest) -> TaskOutcome:
        """Make the call of one attempt, bounded by `request.timeout_ms` from start to body."""
        started = time.monotonic()
        try:
            call = self._prepared(request.config)
        except DomainError as e:  # validated at creation, so resolving parameters broke it
            return _failure(ErrorCode.UNKNOWN, f"invalid task config: {e}", started)
        except (TypeError, ValueError) as e:  # a body JSON cannot hold, a URL yarl refuses
            # only the type: the exception's text may repeat a secret
            message = f"cannot prepare the request: {type(e).__name__}"
            return _failure(ErrorCode.UNKNOWN, message, started, type=type(e).__name__)
        try:
            async with asyncio.timeout(request.timeout_ms / 1000):
                with self.guard.refusals_as_blocked():  # e.g. a redirect to file://
                    return await self._exchange(call, started)
        except TimeoutError:
            message = f"no complete response from {call.shown} within {request.timeout_ms} ms"
            return _failure(ErrorCode.TIMEOUT, message, started)
        except UrlBlocked as e:  # the guard's reason names an address, never a secret
            self.on_blocked()
            return _failure(ErrorCode.URL_BLOCKED, e.reason, started, url=call.scrub(e.url))
        except aiohttp.ClientError as e:
            message = f"{call.shown}: {call.scrub(_client_error_detail(e))}"
            return _failure(ErrorCode.CONNECTION, message, started, type=type(e).__name__)
        except Exception as e:  # noqa: BLE001  # the runner's boundary: anything is an outcome
            stack = call.scrub("".join(traceback.format_exc().splitlines(True)[-STACK_LINES:]))
            logger.error("unexpected error calling %s: %s", call.shown, stack)
            message = call.scrub(f"{type(e).__name__}: {e}")
            return _failure(ErrorCode.UNKNOWN, message, started, type=type(e).__name__)

    def _prepared(self, config: Mapping[str, Any]) -> _Call:
        """The call a resolved config makes. A job calls alike slot after slot (unless its
        parameters differ), so a call is prepared once per distinct config and then reused:
        a `_Call` is not changed after it is made."""
        key = orjson.dumps(config)
        call = self._calls.get(key)
        if call is None:
            call = _Call(HttpInvokerTask.from_config(config))
            if len(self._calls) >= PREPARED_CALLS:
                self._calls.clear()
            self._calls[key] = call
        return call

    async def close(self) -> None:
        """Close the shared session and its pooled connections."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _shared_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self.guard.session(
                cookie_jar=aiohttp.DummyCookieJar(),  # jobs of different tenants share it
                timeout=aiohttp.ClientTimeout(total=None),  # each call has its own deadline
            )
        return self._session

    async def _exchange(self, call: _Call, started: float) -> TaskOutcome:
        session = self._shared_session()
        async with session.request(
            call.method, call.url, headers=call.headers, data=call.data
        ) as response:
            body, truncated = b"", False
            if call.method != "HEAD":
                body, truncated = await _read_at_most(response.content, self.max_body_bytes)
            shown: dict[str, Any] = {
                "status": response.status,
                "headers": {
                    n: response.headers[n] for n in RESULT_HEADERS if n in response.headers
                },
                "data": _decode(body, response.content_type, response.charset, truncated),
            }
            if truncated:
                shown["truncated"] = True
            if 200 <= response.status < 300:
                return TaskOutcome(ok=True, result={**shown, "durationMs": _elapsed_ms(started)})
            message = f"HTTP {response.status} {response.reason or _phrase(response.status)}"
            return _failure(ErrorCode.HTTP_STATUS, message.rstrip(), started, **shown)


class _Call:
    """One request as it goes on the wire, and the secrets its error messages must not show."""

    def __init__(self, task: HttpInvokerTask) -> None:
        self.method, self.url = task.method, task.target()
        self.shown = mask_url(self.url)
        self.headers: CIMultiDict[str] = CIMultiDict(task.headers)
        self.data: bytes | str | None = None
        if isinstance(task.body, str):
            self.data = task.body
        elif task.body is not None:
            self.data = orjson.dumps(task.body)
            self.headers.setdefault("Content-Type", "application/json")
        auth = task.auth or {}
        if auth:  # the task's auth replaces an Authorization header or URL credentials
            self.headers.popall("Authorization", None)
            self.url = str(URL(self.url).with_user(None))
        if auth.get("authMethod") == "bearer":
            self.headers["Authorization"] = f"Bearer {auth['token']}"
        elif auth.get("authMethod") == "basic":
            pair = f"{auth['username']}:{auth['password']}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        self._secrets = _secret_values(task.target(), task.headers, auth)

    def scrub(self, text: str) -> str:
        """`text` with every secret of this call replaced by the mask."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


def _secret_values(url: str, headers: Mapping[str, str], auth: Mapping[str, str]) -> list[str]:
    """Each secret a library's message could repeat: auth fields, secret headers, URL parts."""
    values = [v for k, v in auth.items() if k != "authMethod"]
    values += [v for k, v in headers.items() if is_secret_key(k)]
    try:
        parts = urlsplit(url)
        values.append(parts.password or "")
    except ValueError:
        parts = None
    for query in (parts.query, parts.fragment) if parts else ():
        for pair in query.split("&"):
            name, _, value = pair.partition("=")
            if is_secret_key(unquote_plus(name)):
                values += [value, unquote_plus(value)]  # as written, and as a library decodes it
    return sorted({v for v in values if v}, key=len, reverse=True)  # longest first: no stubs


async def _read_at_most(content: aiohttp.StreamReader, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of a body, and whether there was more (which is then left unread)."""
    body = bytearray()
    while len(body) <= limit:
        chunk = await content.read(limit + 1 - len(body))
        if not chunk:
            return bytes(body), False
        body += chunk
    return bytes(body[:limit]), True


def _decode(body: bytes, content_type: str, charset: str | None, truncated: bool) -> Any:
    """A JSON body parsed, anything else (or JSON cut short) as text; no body is None."""
    if not body:
        return None
    if not truncated and (content_type == "application/json" or content_type.endswith("+json")):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # a server that says JSON and sends something else: show what it sent
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


def _client_error_detail(error: aiohttp.ClientError) -> str:
    """What went wrong, without the URL a response error's text would repeat."""
    if isinstance(error, aiohttp.InvalidURL):
        return f"invalid URL {mask_url(str(error.url))}"
    if isinstance(error, aiohttp.ClientResponseError):
        return (
            f"{type(error).__name__}: {error.message}" if error.message else type(error).__name__
        )
    return str(error) or type(error).__name__


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _failure(code: ErrorCode, message: str, started: float, **details: Any) -> TaskOutcome:
    error = {"code": code.value, "message": message, **details, "durationMs": _elapsed_ms(started)}
    return TaskOutcome(ok=False, error=error)


def _nothing() -> None:
    pass
