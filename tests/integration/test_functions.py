"""Function tasks: discovery from entry points and CRONSOURCE_FUNCTIONS, and the runner."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import threading
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from application.ports import FunctionContext, TaskOutcome, TaskRequest
from infrastructure.functions import FunctionRegistry, FunctionTaskRunner, RegisteredFunction
from tests import fixtures_functions

HANG_GUARD_SECONDS = 10
BUILTINS = ["fail", "log", "noop", "sleep"]


@dataclass(frozen=True)
class FakeEntryPoint:
    """What `importlib.metadata.entry_points` yields, as far as discovery reads it."""

    name: str
    value: str
    target: Any

    def load(self) -> Any:
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch) -> list[FakeEntryPoint]:
    """The entry points discovery sees (none unless a test adds some), by group."""
    installed: list[FakeEntryPoint] = []

    def fake(*, group: str) -> list[FakeEntryPoint]:
        return installed if group == "cronsource.functions" else []

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    return installed


def task(function: str, payload: Mapping[str, Any] | None = None, timeout_ms: int = 5000):
    return TaskRequest(
        job_id=uuid4(),
        execution_id=uuid4(),
        task_type="FunctionTask",
        config={"function": function, "payload": dict(payload or {}), "timeout": timeout_ms},
        scheduled_for=datetime(2025, 1, 1, 2, 0, tzinfo=UTC),
        attempt=1,
        timeout_ms=timeout_ms,
    )


def run(scenario: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(scenario, HANG_GUARD_SECONDS))


def run_task(registry: FunctionRegistry, request: TaskRequest) -> TaskOutcome:
    return run(FunctionTaskRunner(registry).run(request))


def registry_with(**functions: Any) -> FunctionRegistry:
    return FunctionRegistry(
        RegisteredFunction(n, f, "module", "test") for n, f in functions.items()
    )


@pytest.fixture
def samples(entry_points: list[FakeEntryPoint]) -> FunctionRegistry:
    return FunctionRegistry.discover("tests.fixtures_functions")


# -- discovery ---------------------------------------------------------------------------------


def test_a_module_named_alone_registers_its_mapping(samples: FunctionRegistry):
    assert samples.names() == sorted(
        [*BUILTINS, "double", "explode", "report-thread", "report-thread-async", "return-a-set"]
    )
    assert samples.get("double") is fixtures_functions.double_it


def test_a_callable_named_by_path_is_registered_under_its_name_with_dashes(entry_points):
    registry = FunctionRegistry.discover("tests.fixtures_functions:double_it")

    assert registry.names() == sorted([*BUILTINS, "double-it"])
    assert registry.get("double-it") is fixtures_functions.double_it


def test_a_callable_can_be_registered_under_a_chosen_name(entry_points):
    registry = FunctionRegistry.discover(
        " renamed = tests.fixtures_functions:double_it , tests.fixtures_functions:explode"
    )

    assert registry.get("renamed") is fixtures_functions.double_it
    assert registry.get("explode") is fixtures_functions.explode
    assert registry.get("double-it") is None


def test_no_setting_registers_the_builtins(entry_points):
    assert FunctionRegistry.discover(None).names() == BUILTINS


def test_a_module_that_does_not_import_is_named_in_the_error(entry_points):
    with pytest.raises(ValueError, match=r"cannot import module 'tests\.no_such_module'"):
        FunctionRegistry.discover("tests.fixtures_functions, tests.no_such_module:job")


def test_a_missing_callable_is_named_in_the_error(entry_points):
    with pytest.raises(ValueError, match=r"has no attribute 'no_such_function'"):
        FunctionRegistry.discover("tests.fixtures_functions:no_such_function")


def test_a_module_without_a_mapping_is_refused(entry_points):
    with pytest.raises(ValueError, match=r"'tests\.conftest' defines no CRONSOURCE_FUNCTIONS"):
        FunctionRegistry.discover("tests.conftest")


def test_builtins_are_described_with_the_first_line_of_their_doc(samples: FunctionRegistry):
    described = {d["name"]: d for d in samples.describe()}

    assert [d["name"] for d in samples.describe()] == samples.names()
    assert described["noop"] == {
        "name": "noop",
        "doc": "Do nothing and succeed.",
        "source": "builtin",
    }
    assert all(described[name]["doc"] for name in BUILTINS)
    assert described["double"] == {
        "name": "double",
        "doc": "Double `payload.n`.",
        "source": "module",
    }


def test_an_entry_point_is_registered_under_its_name(entry_points):
    entry_points.append(
        FakeEntryPoint("doubler", "pkg.mod:double_it", fixtures_functions.double_it)
    )

    registry = FunctionRegistry.discover(None)

    assert registry.get("doubler") is fixtures_functions.double_it
    assert {"name": "doubler", "doc": "Double `payload.n`.", "source": "entry-point"} in (
        registry.describe()
    )


def test_an_entry_point_that_fails_to_load_is_named_in_the_error(entry_points):
    entry_points.append(FakeEntryPoint("broken", "pkg.gone:fn", ModuleNotFoundError("pkg.gone")))

    with pytest.raises(ValueError, match=r"entry point 'broken' \(pkg\.gone:fn\)"):
        FunctionRegistry.discover(None)


def test_a_name_registered_twice_keeps_the_later_one_and_warns_naming_both(
    entry_points, caplog: pytest.LogCaptureFixture
):
    entry_points.append(FakeEntryPoint("noop", "pkg.mod:double_it", fixtures_functions.double_it))

    with caplog.at_level(logging.WARNING, logger="infrastructure.functions"):
        registry = FunctionRegistry.discover("noop=tests.fixtures_functions:explode")

    assert registry.get("noop") is fixtures_functions.explode
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # builtin → entry point → setting
    assert "entry point 'noop'" in warnings[1]
    assert "noop=tests.fixtures_functions:explode" in warnings[1]


# -- running -----------------------------------------------------------------------------------


def test_a_sync_function_runs_in_a_worker_thread_with_its_context(samples: FunctionRegistry):
    request = task("report-thread")

    outcome = run_task(samples, request)

    assert outcome.ok, outcome.error
    assert outcome.result is not None
    assert outcome.result["data"] == {
        "onMainThread": False,
        "jobId": str(request.job_id),
        "attempt": 1,
    }
    assert isinstance(outcome.result["durationMs"], int)


def test_an_async_function_runs_on_the_event_loop(samples: FunctionRegistry):
    outcome = run_task(samples, task("report-thread-async"))

    assert outcome.ok, outcome.error
    assert outcome.result is not None
    assert outcome.result["data"] == {"onMainThread": True}


def test_the_payload_reaches_the_function(samples: FunctionRegistry):
    outcome = run_task(samples, task("double", {"n": 21}))

    assert outcome.result == {"data": {"n": 42}, "durationMs": outcome.result["durationMs"]}


def test_what_a_function_changes_in_its_payload_stays_in_its_call():
    """The engine hands a config without parameters over as the job holds it, so the runner
    gives each call its own copy, nested values too."""

    def meddle(payload: dict[str, Any], context: Any) -> dict[str, Any]:
        seen = {"tags": list(payload["nested"]["tags"])}
        payload["nested"]["tags"].append("added")
        payload["nested"]["new"] = True
        return seen

    config = {"nested": {"tags": ["a"]}}
    request = task("meddle", config)
    runner = FunctionTaskRunner(registry_with(meddle=meddle))
    first, second = run(runner.run(request)), run(runner.run(request))

    assert first.result is not None and second.result is not None
    assert first.result["data"] == second.result["data"] == {"tags": ["a"]}
    assert request.config["payload"] == {"nested": {"tags": ["a"]}}


def test_an_exception_fails_with_function_error_and_the_stack(samples: FunctionRegistry):
    outcome = run_task(samples, task("explode", {"message": "disk full"}))

    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error["code"] == "FUNCTION_ERROR"
    assert outcome.error["message"] == "disk full"
    assert outcome.error["type"] == "ValueError"
    assert "in _deeper" in outcome.error["stack"]
    assert outcome.error["stack"].endswith("ValueError: disk full")


def test_an_unknown_name_fails_with_unknown_function(samples: FunctionRegistry):
    outcome = run_task(samples, task("no-such-function"))

    assert outcome.error is not None
    assert outcome.error["code"] == "UNKNOWN_FUNCTION"
    assert "no-such-function" in outcome.error["message"]


def test_a_result_json_cannot_hold_fails_with_function_error(samples: FunctionRegistry):
    outcome = run_task(samples, task("return-a-set"))

    assert outcome.error is not None
    assert outcome.error["code"] == "FUNCTION_ERROR"
    assert "not JSON-serialisable" in outcome.error["message"]


def test_a_sync_function_past_its_timeout_fails_with_timeout():
    release, returned = threading.Event(), threading.Event()

    def stuck(payload: dict[str, Any], context: FunctionContext) -> str:
        release.wait(HANG_GUARD_SECONDS)
        returned.set()
        return "too late"

    async def scenario() -> TaskOutcome:
        try:
            return await FunctionTaskRunner(registry_with(stuck=stuck)).run(
                task("stuck", timeout_ms=100)
            )
        finally:
            release.set()  # the thread cannot be killed: let it finish

    outcome = run(scenario())

    assert outcome.error is not None
    assert outcome.error["code"] == "TIMEOUT"
    assert returned.is_set()  # asyncio.run waited for the worker thread; its result was dropped


def test_an_async_function_past_its_timeout_is_cancelled_and_fails_with_timeout():
    cancelled = []

    async def stuck(payload: dict[str, Any], context: FunctionContext) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    outcome = run_task(registry_with(stuck=stuck), task("stuck", timeout_ms=100))

    assert outcome.error is not None
    assert outcome.error["code"] == "TIMEOUT"
    assert cancelled == [True]


def test_a_timeout_error_raised_by_the_function_itself_is_a_function_error():
    async def gives_up(payload: dict[str, Any], context: FunctionContext) -> None:
        raise TimeoutError("upstream did not answer")

    outcome = run_task(registry_with(**{"gives-up": gives_up}), task("gives-up"))

    assert outcome.error is not None
    assert outcome.error["code"] == "FUNCTION_ERROR"
    assert outcome.error["message"] == "upstream did not answer"


def test_cancelling_a_running_function_propagates_the_cancellation():
    async def scenario() -> None:
        entered = asyncio.Event()

        async def waits(payload: dict[str, Any], context: FunctionContext) -> None:
            entered.set()
            await asyncio.Event().wait()

        runner = FunctionTaskRunner(registry_with(waits=waits))
        running = asyncio.create_task(runner.run(task("waits")))
        await entered.wait()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    run(scenario())


# -- built-ins ---------------------------------------------------------------------------------


def test_noop_succeeds(samples: FunctionRegistry):
    assert run_task(samples, task("noop")).result["data"] == {"ok": True}  # type: ignore[index]


def test_log_writes_the_payload_with_secrets_masked(
    samples: FunctionRegistry, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.INFO, logger="infrastructure.functions"):
        outcome = run_task(samples, task("log", {"table": "orders", "apiKey": "k-123"}))

    assert outcome.ok
    assert outcome.result is not None
    assert outcome.result["data"] is None
    logged = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    assert '"table":"orders"' in logged
    assert "k-123" not in logged


def test_sleep_refuses_a_duration_out_of_range(samples: FunctionRegistry):
    outcome = run_task(samples, task("sleep", {"seconds": 3601}))

    assert outcome.error is not None
    assert outcome.error["code"] == "FUNCTION_ERROR"
    assert "payload.seconds" in outcome.error["message"]


def test_sleep_succeeds_after_its_duration(samples: FunctionRegistry):
    assert run_task(samples, task("sleep", {"seconds": 0})).ok


def test_fail_fails_with_the_payload_message(samples: FunctionRegistry):
    outcome = run_task(samples, task("fail", {"message": "as asked"}))

    assert outcome.error is not None
    assert (outcome.error["code"], outcome.error["message"]) == ("FUNCTION_ERROR", "as asked")
