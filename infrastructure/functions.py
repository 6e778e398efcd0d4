"""Function tasks: the registry of callables a FunctionTask may name, and the runner that calls them.

A function is a plain callable `fn(payload, context)`, sync or async, returning something
JSON can hold (or None). The service finds functions at start: a few built-ins, the entry
points of the group `cronsource.functions`, and what the `CRONSOURCE_FUNCTIONS` setting
names. A name that cannot be imported stops the start, so a typo shows at deploy time rather
than as a failed execution at 2 AM.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import inspect
import logging
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from application.ports import FunctionContext, TaskOutcome, TaskRequest
from domain.execution import ErrorCode
from domain.masking import mask_secrets
from domain.tasks import FUNCTION_NAME

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "cronsource.functions"
MODULE_MAPPING = "CRONSOURCE_FUNCTIONS"  # the mapping a module named alone must define
MAX_SLEEP_SECONDS = 3600
STACK_LINES = 20

Function = Callable[[dict[str, Any], FunctionContext], Any]


# -- built-ins ---------------------------------------------------------------------------------


def noop(payload: dict[str, Any], context: FunctionContext) -> dict[str, Any]:
    """Do nothing and succeed."""
    return {"ok": True}


def log(payload: dict[str, Any], context: FunctionContext) -> None:
    """Write the payload to the service log at INFO (secrets masked)."""
    logger.info(
        "function log: job %s execution %s attempt %d: %s",
        context.job_id, context.execution_id, context.attempt,
        orjson.dumps(mask_secrets(payload), default=str).decode(),
    )  # fmt: skip


async def sleep(payload: dict[str, Any], context: FunctionContext) -> None:
    """Wait `payload.seconds` seconds (at most 3600), then succeed."""
    seconds = payload.get("seconds")
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 <= seconds <= MAX_SLEEP_SECONDS
    ):
        raise ValueError(f"payload.seconds must be a number from 0 to {MAX_SLEEP_SECONDS}")
    await asyncio.sleep(seconds)


def fail(payload: dict[str, Any], context: FunctionContext) -> None:
    """Raise an error with `payload.message`, to try out failures and retries."""
    raise RuntimeError(payload.get("message", "failed"))


BUILTINS: dict[str, Function] = {"noop": noop, "log": log, "sleep": sleep, "fail": fail}


# -- the registry ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisteredFunction:
    """A callable under its name; `source` is builtin | entry-point | module, `origin` where."""

    name: str
    fn: Function
    source: str
    origin: str


class FunctionRegistry:
    """The functions a FunctionTask may name."""

    def __init__(self, functions: Iterable[RegisteredFunction] = ()) -> None:
        self._functions: dict[str, RegisteredFunction] = {}
        for function in functions:
            self.add(function)

    @classmethod
    def discover(cls, setting: str | None) -> FunctionRegistry:
        """Built-ins, then entry points, then the `CRONSOURCE_FUNCTIONS` setting's entries.

        A later registration of a name replaces an earlier one (with a warning), so an
        operator's setting can override a package's function. Anything that does not import
        or is not callable raises ValueError naming it.
        """
        registry = cls(
            RegisteredFunction(n, f, "builtin", f"builtin {n}") for n, f in BUILTINS.items()
        )
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            registry.add(_from_entry_point(entry_point))
        for entry in (setting or "").split(","):
            if entry.strip():
                for function in _from_setting_entry(entry.strip()):
                    registry.add(function)
        return registry

    def add(self, function: RegisteredFunction) -> None:
        """Register a function; one already under its name is replaced, with a warning."""
        if not FUNCTION_NAME.match(function.name):
            raise ValueError(
                f"{function.origin}: {function.name!r} is not a valid function name "
                "(letters, digits, '.', '_', ':' and '-', starting with a letter or digit)"
            )
        if not callable(function.fn):
            raise ValueError(f"{function.origin}: {function.name!r} is not callable")
        previous = self._functions.get(function.name)
        if previous is not None:
            logger.warning(
                "function %r from %s replaces the one from %s",
                function.name, function.origin, previous.origin,
            )  # fmt: skip
        self._functions[function.name] = function

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._functions)

    def get(self, name: str) -> Function | None:
        """The callable registered under `name`, or None."""
        function = self._functions.get(name)
        return function.fn if function is not None else None

    def describe(self) -> list[dict[str, str]]:
        """Name, first docstring line and source of each function, by name (for the API)."""
        return [
            {"name": f.name, "doc": _first_line(inspect.getdoc(f.fn)), "source": f.source}
            for f in sorted(self._functions.values(), key=lambda f: f.name)
        ]


def _first_line(doc: str | None) -> str:
    return next((line.strip() for line in (doc or "").splitlines() if line.strip()), "")


def _from_entry_point(entry_point: Any) -> RegisteredFunction:
    origin = f"entry point {entry_point.name!r} ({entry_point.value}) of {ENTRY_POINT_GROUP}"
    try:
        fn = entry_point.load()
    except Exception as e:  # importing runs the package's code: anything may fail
        raise ValueError(f"{origin} failed to load: {type(e).__name__}: {e}") from e
    return RegisteredFunction(entry_point.name, fn, "entry-point", origin)


def _from_setting_entry(entry: str) -> list[RegisteredFunction]:
    """`name=pkg.mod:attr`, `pkg.mod:attr` (named after the callable) or `pkg.mod` (its mapping)."""
    origin = f"{MODULE_MAPPING} entry {entry!r}"
    name, _, target = entry.rpartition("=")
    module_name, colon, attribute = target.strip().partition(":")
    if not module_name or (colon and not attribute) or (name and not colon):
        raise ValueError(f"{origin}: expected pkg.mod:callable, name=pkg.mod:callable or pkg.mod")
    module = _import(module_name.strip(), origin)
    if colon:
        fn = _attribute(module, attribute.strip(), origin)
        default = getattr(fn, "__name__", attribute.rpartition(".")[2]).replace("_", "-")
        return [RegisteredFunction(name.strip() or default, fn, "module", origin)]
    mapping = getattr(module, MODULE_MAPPING, None)
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{origin}: module {module_name!r} defines no {MODULE_MAPPING} mapping")
    return [RegisteredFunction(str(n), fn, "module", origin) for n, fn in mapping.items()]


def _import(module_name: str, origin: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except Exception as e:  # importing runs the module's code: anything may fail
        raise ValueError(
            f"{origin}: cannot import module {module_name!r}: {type(e).__name__}: {e}"
        ) from e


def _attribute(module: Any, path: str, origin: str) -> Any:
    value = module
    for part in path.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ValueError(f"{origin}: {module.__name__} has no attribute {path!r}") from None
    return value


# -- the runner --------------------------------------------------------------------------------


class FunctionTaskRunner:
    """Runs FunctionTask attempts: async functions on the loop, sync ones in a worker thread.

    Both are bounded by the attempt's timeout. An async function is cancelled when it runs
    out; a thread cannot be killed, so a sync function that runs out keeps running in its
    thread until it returns by itself: the attempt's outcome is TIMEOUT all the same, and
    whatever the thread returns later is discarded. A sync function meant to be stopped
    should finish its work in bounded steps.
    """

    def __init__(self, registry: FunctionRegistry) -> None:
        self.registry = registry

    async def run(self, request: TaskRequest) -> TaskOutcome:
        """Call the named function with the resolved payload and the attempt's context."""
        started = time.monotonic()
        name = request.config.get("function")
        fn = self.registry.get(name) if isinstance(name, str) else None
        if fn is None:
            message = f"no function named {name!r} is registered"
            return _failure(ErrorCode.UNKNOWN_FUNCTION, message, started)
        # the function's own copy, nested values too: what it changes stays in this call
        payload = orjson.loads(orjson.dumps(request.config.get("payload") or {}))
        context = FunctionContext(
            job_id=str(request.job_id),
            execution_id=str(request.execution_id),
            scheduled_for=request.scheduled_for,
            attempt=request.attempt,
        )
        deadline = asyncio.timeout(request.timeout_ms / 1000)
        try:
            async with deadline:
                value = await _call(fn, payload, context)
        except TimeoutError as e:
            if not deadline.expired():  # the function's own TimeoutError is its failure
                return _function_error(e, started)
            message = f"function {name!r} did not finish within {request.timeout_ms} ms"
            return _failure(ErrorCode.TIMEOUT, message, started)
        except Exception as e:  # noqa: BLE001  # whatever a function raises is its outcome
            return _function_error(e, started)
        try:  # through JSON and back: what is recorded is plain JSON, whatever was returned
            data = orjson.loads(orjson.dumps(value))
        except orjson.JSONEncodeError as e:
            message = f"function {name!r} returned a result that is not JSON-serialisable: {e}"
            return _failure(ErrorCode.FUNCTION_ERROR, message, started, type=type(value).__name__)
        return TaskOutcome(ok=True, result={"data": data, "durationMs": _elapsed_ms(started)})

    async def close(self) -> None:
        """Nothing to release: functions hold no resources of the runner."""


async def _call(fn: Function, payload: dict[str, Any], context: FunctionContext) -> Any:
    if _is_async(fn):
        return await fn(payload, context)
    value = await asyncio.to_thread(fn, payload, context)  # never block the event loop
    if inspect.isawaitable(value):  # a sync wrapper around an async function
        value = await value
    return value


def _is_async(fn: Function) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004  # an object with `async def __call__`
    )


def _function_error(error: BaseException, started: float) -> TaskOutcome:
    lines = "".join(traceback.format_exception(error)).splitlines()
    return _failure(
        ErrorCode.FUNCTION_ERROR,
        str(error) or type(error).__name__,
        started,
        type=type(error).__name__,
        stack="\n".join(lines[-STACK_LINES:]),
    )


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _failure(code: ErrorCode, message: str, started: float, **details: Any) -> TaskOutcome:
    error = {"code": code.value, "message": message, **details, "durationMs": _elapsed_ms(started)}
    return TaskOutcome(ok=False, error=error)
