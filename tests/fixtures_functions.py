"""Sample function tasks, registered the ways an operator names them in CRONSOURCE_FUNCTIONS."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from application.ports import FunctionContext


def double_it(payload: dict[str, Any], context: FunctionContext) -> dict[str, Any]:
    """Double `payload.n`.

    The rest of a docstring is not shown in the function list.
    """
    return {"n": payload["n"] * 2}


def report_thread(payload: dict[str, Any], context: FunctionContext) -> dict[str, Any]:
    """Say whether it ran on the main thread, and what context it was given."""
    return {
        "onMainThread": threading.current_thread() is threading.main_thread(),
        "jobId": context.job_id,
        "attempt": context.attempt,
    }


async def report_thread_async(payload: dict[str, Any], context: FunctionContext) -> dict[str, Any]:
    """Say, from a coroutine, whether it ran on the main thread (the event loop's)."""
    await asyncio.sleep(0)
    return {"onMainThread": threading.current_thread() is threading.main_thread()}


def explode(payload: dict[str, Any], context: FunctionContext) -> None:
    """Fail with a ValueError."""
    _deeper(payload["message"])


def _deeper(message: str) -> None:
    raise ValueError(message)


def return_a_set(payload: dict[str, Any], context: FunctionContext) -> object:
    """Return something JSON cannot hold."""
    return {"ids": {1, 2}}


CRONSOURCE_FUNCTIONS = {
    "double": double_it,
    "report-thread": report_thread,
    "report-thread-async": report_thread_async,
    "explode": explode,
    "return-a-set": return_a_set,
}
