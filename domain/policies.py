"""How a job behaves when an attempt fails, when fires overlap, and when fires were missed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from domain.errors import InvalidField, InvalidFields

MAX_RETRIES = 100
MAX_DELAY_SECONDS = 7 * 24 * 3600
DEFAULT_CATCH_UP_WINDOW_SECONDS = 3600


def _int(value: object, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(path, "must be an integer")
    if not low <= value <= high:
        raise InvalidField(path, f"must be between {low} and {high}")
    return value


class Backoff(StrEnum):
    """How the delay grows between attempts."""

    FIXED = "fixed"
    EXPONENTIAL = "exponential"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts after the first, and the delay before each."""

    max_retries: int = 0
    retry_delay_seconds: int = 60
    backoff: Backoff = Backoff.FIXED
    max_delay_seconds: int = 3600

    @classmethod
    def from_dict(cls, value: object, path: str = "retry") -> RetryPolicy:
        """Validate a `retry` object."""
        if not isinstance(value, Mapping):
            raise InvalidField(path, "must be an object")
        known = ("maxRetries", "retryDelaySeconds", "backoff", "maxDelaySeconds")
        errors = [InvalidField(f"{path}.{k}", "unknown field") for k in value if k not in known]
        fields: dict[str, Any] = {}
        checks = (
            ("maxRetries", "max_retries", 0, MAX_RETRIES),
            ("retryDelaySeconds", "retry_delay_seconds", 0, MAX_DELAY_SECONDS),
            ("maxDelaySeconds", "max_delay_seconds", 0, MAX_DELAY_SECONDS),
        )
        for key, attr, low, high in checks:
            if key in value:
                try:
                    fields[attr] = _int(value[key], f"{path}.{key}", low, high)
                except InvalidField as e:
                    errors.append(e)
        if "backoff" in value:
            try:
                fields["backoff"] = Backoff(value["backoff"])
            except ValueError:
                errors.append(InvalidField(f"{path}.backoff", "must be 'fixed' or 'exponential'"))
        InvalidFields.collect(errors)
        return cls(**fields)

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt` (2 is the first retry)."""
        retry = attempt - 1
        if self.backoff is Backoff.FIXED:
            delay = self.retry_delay_seconds
        else:
            delay = self.retry_delay_seconds * 2 ** min(retry - 1, 32)
        return float(min(delay, self.max_delay_seconds))

    def allows(self, attempt: int) -> bool:
        """Whether another attempt may follow attempt number `attempt`."""
        return attempt <= self.max_retries

    def to_dict(self) -> dict[str, Any]:
        """The stored and shown form."""
        return {
            "maxRetries": self.max_retries,
            "retryDelaySeconds": self.retry_delay_seconds,
            "backoff": self.backoff.value,
            "maxDelaySeconds": self.max_delay_seconds,
        }


class ConcurrencyPolicy(StrEnum):
    """What a fire does while an execution of the same job still runs."""

    ALLOW = "allow"
    SKIP = "skip"
    QUEUE = "queue"
    REPLACE = "replace"

    @classmethod
    def parse(cls, value: object, path: str = "concurrencyPolicy") -> ConcurrencyPolicy:
        """Validate a policy name."""
        try:
            return cls(value)
        except ValueError:
            raise InvalidField(path, f"must be one of {', '.join(p.value for p in cls)}") from None


class MisfirePolicy(StrEnum):
    """What happens to fires missed while no engine ran."""

    SKIP = "skip"
    RUN_ONCE = "runOnce"
    RUN_ALL = "runAll"

    @classmethod
    def parse(cls, value: object, path: str = "misfirePolicy") -> MisfirePolicy:
        """Validate a policy name."""
        try:
            return cls(value)
        except ValueError:
            raise InvalidField(path, f"must be one of {', '.join(p.value for p in cls)}") from None
