"""JSON log lines: one object per record, the known fields, secrets masked."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from uuid import uuid4

import orjson

from application.ports import TaskOutcome, TaskRequest
from infrastructure.logs import JsonFormatter
from infrastructure.task_runners import TaskRunners


def line(record: logging.LogRecord) -> dict[str, object]:
    text = JsonFormatter().format(record)
    assert "\n" not in text  # one line per record, whatever the message holds
    return orjson.loads(text)


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("cronsource.test", logging.WARNING, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_a_line_has_time_level_logger_and_message() -> None:
    logged = line(record("job %s skipped\nsee above", "nightly"))

    assert logged["level"] == "WARNING"
    assert logged["logger"] == "cronsource.test"
    assert logged["message"] == "job nightly skipped\nsee above"
    assert str(logged["time"]).endswith("Z") and len(str(logged["time"])) == 24


def test_fields_given_by_the_caller_are_kept_and_positions_stay_numbers() -> None:
    job_id = uuid4()

    logged = line(record("x", job_id=job_id, trigger="cron", position=42))

    assert (logged["job_id"], logged["trigger"], logged["position"]) == (str(job_id), "cron", 42)
    assert "execution_id" not in logged


def test_secrets_in_the_message_and_the_exception_are_masked() -> None:
    try:
        raise ValueError("refused https://ana:hunter2@db.example/x?token=abc")
    except ValueError:
        failed = record("call to %s failed", "https://h.example/?api_key=k3y")
        failed.exc_info = sys.exc_info()

    logged = line(failed)

    assert logged["message"] == "call to https://h.example/?api_key=*** failed"
    assert "ValueError: refused https://ana:***@db.example/x?token=***" in str(logged["exception"])
    assert "hunter2" not in orjson.dumps(logged).decode()


@contextmanager
def json_lines(name: str) -> Iterator[list[dict[str, object]]]:
    """What logger `name` writes through a handler with the formatter, one object per line."""
    stream, lines = io.StringIO(), []
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        lines += [orjson.loads(text) for text in stream.getvalue().splitlines()]


def test_a_handler_with_the_formatter_writes_one_json_object_per_line() -> None:
    with json_lines("cronsource.test.handler") as lines:
        logging.getLogger("cronsource.test.handler").warning("one")
        logging.getLogger("cronsource.test.handler").error("two", extra={"position": 7})

    assert [(x["message"], x.get("position")) for x in lines] == [("one", None), ("two", 7)]


class LoggingTask:
    """A task that logs as it runs, as a function task may (sync ones in a worker thread)."""

    async def run(self, request: TaskRequest) -> TaskOutcome:
        logging.getLogger("cronsource.test.task").warning("in the loop")
        await asyncio.to_thread(logging.getLogger("cronsource.test.task").warning, "in a thread")
        return TaskOutcome(ok=True)

    async def close(self) -> None:
        return None


def test_what_a_task_logs_while_it_runs_names_its_job_and_execution() -> None:
    request = TaskRequest(uuid4(), uuid4(), "FunctionTask", {}, datetime.now(UTC), 1, 1000)
    runners = TaskRunners({"FunctionTask": LoggingTask()})

    with json_lines("cronsource.test.task") as lines:
        asyncio.run(runners.run(request))
        logging.getLogger("cronsource.test.task").warning("after it")

    ids = [(x.get("job_id"), x.get("execution_id")) for x in lines]
    named = (str(request.job_id), str(request.execution_id))
    assert ids == [named, named, (None, None)]
