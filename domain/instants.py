"""Instants as the API and the read models write them: UTC ISO 8601 with milliseconds and Z."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.errors import InvalidField


def iso_ms(instant: datetime | None) -> str | None:
    """`2026-02-04T14:30:00.000Z`, or None."""
    if instant is None:
        return None
    if instant.tzinfo is not UTC:
        instant = instant.astimezone(UTC)
    return instant.isoformat(timespec="milliseconds")[:-6] + "Z"  # "+00:00" → "Z"


def parse_instant(text: str, field: str) -> datetime:
    """An ISO 8601 instant with an offset (or Z); a naive one is refused, not guessed."""
    try:
        instant = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except (ValueError, AttributeError):
        raise InvalidField(field, f"{text!r} is not an ISO 8601 instant") from None
    if instant.tzinfo is None:
        raise InvalidField(field, "needs a UTC offset or Z, e.g. 2026-02-04T14:30:00Z")
    try:
        return instant.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is in year 0 in UTC
        raise InvalidField(field, f"{text!r} is outside the years 1 to 9999 in UTC") from None
