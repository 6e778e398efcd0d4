"""A job's definition as clients write it, validated whole, with the seeds' flat aliases."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from domain.errors import InvalidField, InvalidFields
from domain.masking import MASK
from domain.policies import (
    DEFAULT_CATCH_UP_WINDOW_SECONDS,
    MAX_DELAY_SECONDS,
    ConcurrencyPolicy,
    MisfirePolicy,
    RetryPolicy,
)
from domain.schedule import Schedule
from domain.tasks import HttpInvokerTask, parse_task

NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
MAX_DESCRIPTION = 2000
MAX_JITTER_SECONDS = 3600
MAX_PAUSE_AFTER_FAILURES = 1000

#: The fields of a stored definition, in the order the API shows them.
DEFINITION_FIELDS = (
    "name", "description", "pattern", "timezone", "taskType", "taskConfig", "retry",
    "concurrencyPolicy", "misfirePolicy", "catchUpWindowSeconds", "pauseAfterFailures",
    "jitterSeconds",
)  # fmt: skip
#: Accepted on input besides the definition fields.
INPUT_ONLY_FIELDS = (
    "enabled", "applicationId", "maxRetries", "retryDelaySeconds", "timeoutSeconds", "catchUp",
)  # fmt: skip
DEFAULTS: dict[str, Any] = {
    "description": None,
    "timezone": "UTC",
    "taskType": HttpInvokerTask.task_type,
    "retry": RetryPolicy().to_dict(),
    "concurrencyPolicy": ConcurrencyPolicy.ALLOW.value,
    "misfirePolicy": MisfirePolicy.SKIP.value,
    "catchUpWindowSeconds": DEFAULT_CATCH_UP_WINDOW_SECONDS,
    "pauseAfterFailures": None,
    "jitterSeconds": 0,
}


def validate_name(value: object) -> str:
    """1–200 characters of letters, digits, '.', '_' and '-'."""
    if not isinstance(value, str) or not value:
        raise InvalidField("name", "required: 1-200 characters of A-Z a-z 0-9 . _ -")
    if not NAME.match(value):
        raise InvalidField("name", "must be 1-200 characters of A-Z a-z 0-9 . _ -")
    return value


def application_id(value: object) -> str:
    """An application named by a string or an integer (the seed used integers)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidField("applicationId", "must be a string or an integer")
    text = str(value)
    if not NAME.match(text):
        raise InvalidField("applicationId", "must be 1-200 characters of A-Z a-z 0-9 . _ -")
    return text


def _restore_masked(given: Any, current: Any) -> Any:
    """A value sent back masked ("***") keeps the stored secret: secrets are write-only."""
    if given == MASK and current is not None:
        return current
    if isinstance(given, Mapping) and isinstance(current, Mapping):
        return {k: _restore_masked(v, current.get(k)) for k, v in given.items()}
    return given


def _apply_aliases(doc: Mapping[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Fold the seeds' flat fields into the definition's own."""
    merged = dict(base)
    for key in DEFINITION_FIELDS:
        if key in doc:
            merged[key] = doc[key]
    if "taskConfig" in doc and base.get("taskConfig") is not None:
        merged["taskConfig"] = _restore_masked(doc["taskConfig"], base["taskConfig"])
    if (
        "retry" in doc
        and isinstance(doc["retry"], Mapping)
        and isinstance(base.get("retry"), Mapping)
    ):
        merged["retry"] = {**base["retry"], **doc["retry"]}
    flat_retry = {k: doc[k] for k in ("maxRetries", "retryDelaySeconds") if k in doc}
    if flat_retry:
        retry = merged.get("retry")
        merged["retry"] = {**(retry if isinstance(retry, Mapping) else {}), **flat_retry}
    if "timeoutSeconds" in doc:
        seconds = doc["timeoutSeconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
            raise InvalidField("timeoutSeconds", "must be a positive integer")
        config = merged.get("taskConfig")
        if isinstance(config, Mapping):
            merged["taskConfig"] = {**config, "timeout": seconds * 1000}
    if "catchUp" in doc:
        if not isinstance(doc["catchUp"], bool):
            raise InvalidField("catchUp", "must be true or false")
        if "misfirePolicy" not in doc:
            merged["misfirePolicy"] = "runOnce" if doc["catchUp"] else "skip"
    return merged


def _validate(merged: dict[str, Any]) -> dict[str, Any]:
    """Check every field of a whole definition; return its normalised form."""
    errors: list[InvalidField] = []
    out: dict[str, Any] = {}

    def check(key: str, fn: Any) -> None:
        try:
            out[key] = fn(merged.get(key))
        except InvalidField as e:
            errors.append(e)
        except InvalidFields as e:
            errors.extend(e.errors)

    check("name", validate_name)
    check("description", _description)
    check("pattern", lambda p: Schedule(_pattern(p)).pattern)
    check("timezone", _timezone)
    task_type = merged.get("taskType")
    try:
        task = parse_task(task_type, merged.get("taskConfig"))
        out["taskType"], out["taskConfig"] = task.task_type, task.to_config()
    except InvalidField as e:
        errors.append(e)
    except InvalidFields as e:
        errors.extend(e.errors)
    check("retry", lambda r: RetryPolicy.from_dict(r).to_dict())
    check("concurrencyPolicy", lambda p: ConcurrencyPolicy.parse(p).value)
    check("misfirePolicy", lambda p: MisfirePolicy.parse(p).value)
    check(
        "catchUpWindowSeconds", lambda v: _bounded("catchUpWindowSeconds", v, 0, MAX_DELAY_SECONDS)
    )
    check("pauseAfterFailures", _pause_after_failures)
    check("jitterSeconds", lambda v: _bounded("jitterSeconds", v, 0, MAX_JITTER_SECONDS))
    InvalidFields.collect(errors)
    return {key: out[key] for key in DEFINITION_FIELDS}


def _description(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField("description", "must be a string")
    if len(value) > MAX_DESCRIPTION:
        raise InvalidField("description", f"must be at most {MAX_DESCRIPTION} characters")
    if "\x00" in value:
        raise InvalidField("description", "must not contain NUL characters")
    return value


def _pattern(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidField("pattern", "required: a cron pattern such as '0 2 * * *'")
    return value.strip()


def _timezone(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidField("timezone", "must be an IANA time zone name such as 'Europe/Berlin'")
    Schedule("* * * * *", value)  # raises InvalidField("timezone", ...) when unknown
    return value


def _bounded(path: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(path, "must be an integer")
    if not low <= value <= high:
        raise InvalidField(path, f"must be between {low} and {high}")
    return value


def _pause_after_failures(value: object) -> int | None:
    if value is None:
        return None
    return _bounded("pauseAfterFailures", value, 1, MAX_PAUSE_AFTER_FAILURES)


def _check_fields(doc: object, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise InvalidField("body", "must be a JSON object")
    unknown = [k for k in doc if k not in allowed]
    InvalidFields.collect([InvalidField(str(k), "unknown field") for k in unknown])
    return doc


def parse_new_job(doc: object) -> tuple[dict[str, Any], bool, str]:
    """A new job's definition, whether it starts enabled, and its application id."""
    doc = _check_fields(doc, DEFINITION_FIELDS + INPUT_ONLY_FIELDS)
    errors: list[InvalidField] = []
    for required in ("name", "pattern", "taskConfig"):
        if doc.get(required) is None:
            errors.append(InvalidField(required, "required"))
    enabled = doc.get("enabled", True)
    if not isinstance(enabled, bool):
        errors.append(InvalidField("enabled", "must be true or false"))
    app_id = "default"
    if doc.get("applicationId") is not None:
        try:
            app_id = application_id(doc["applicationId"])
        except InvalidField as e:
            errors.append(e)
    try:
        definition = _validate(_apply_aliases(doc, dict(DEFAULTS)))
    except InvalidField as e:
        errors.append(e)
    except InvalidFields as e:
        errors.extend(e.errors)
    # a missing field is reported once, as "required", not again by its validator
    seen: set[str] = set()
    unique = [e for e in errors if not (e.field in seen or seen.add(e.field))]
    InvalidFields.collect(unique)
    return definition, enabled, app_id


def parse_job_changes(
    doc: object, current: Mapping[str, Any]
) -> tuple[dict[str, Any], bool | None]:
    """The fields an update changes (validated against the whole result), and `enabled` if given."""
    doc = _check_fields(doc, DEFINITION_FIELDS + INPUT_ONLY_FIELDS)
    if "applicationId" in doc:
        raise InvalidField("applicationId", "cannot be changed; create the job in the application")
    enabled = doc.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise InvalidField("enabled", "must be true or false")
    merged = _validate(_apply_aliases(doc, dict(current)))
    changes = {k: v for k, v in merged.items() if current.get(k) != v}
    return changes, enabled
