"""Log lines as JSON objects, one per line (orjson), or as text: the stdlib logging module with
a formatter of ours, configured from `CRONSOURCE_LOG_LEVEL` and `CRONSOURCE_LOG_FORMAT`.

Each object has `time`, `level`, `logger` and `message`, and where known `job_id`,
`execution_id`, `trigger`, `position` (given as `extra=` by the caller, or, for anything logged
while a task runs, from the task being run), and `exception`. Secrets are masked in the message,
the exception and the extra fields.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from domain.instants import iso_ms
from domain.masking import mask_text

#: fields a log call may give with `extra=`, in the order they are written
FIELDS = ("job_id", "execution_id", "trigger", "position")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("json", "text")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: (job id, execution id) of the task being run in this context (its asyncio task, or the
#: thread a sync function runs in): what it logs names them
running_task: ContextVar[tuple[object, object] | None] = ContextVar(
    "cronsource_running_task", default=None
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": iso_ms(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_text(record.getMessage()),
        }
        task = running_task.get()
        if task is not None:
            line["job_id"], line["execution_id"] = str(task[0]), str(task[1])
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value if isinstance(value, int | float) else str(value)
        if record.exc_info:
            line["exception"] = mask_text(self.formatException(record.exc_info))
        elif record.stack_info:
            line["exception"] = mask_text(self.formatStack(record.stack_info))
        return orjson.dumps(line).decode()


def configure_logging(
    level: str, fmt: str, stream: TextIO | None = None, text: str = TEXT
) -> None:
    """Log records of `level` (one of `LEVELS`) and above to `stream` (stderr) as `fmt` (one of
    `FORMATS`; `text` is the line's template when it is "text")."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(text))
    logging.basicConfig(level=level, handlers=[handler])
