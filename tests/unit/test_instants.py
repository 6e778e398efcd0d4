"""Instants the API reads and writes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.errors import InvalidField
from domain.instants import parse_instant


def test_an_instant_with_an_offset_is_read_in_utc() -> None:
    assert parse_instant("2026-02-04T15:30:00+01:00", "from") == datetime(
        2026, 2, 4, 14, 30, tzinfo=UTC
    )


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:27", "9999-12-31T23:30:00-01:00"])
def test_an_instant_outside_the_utc_calendar_is_refused_naming_the_field(text: str) -> None:
    # found by the fuzzer: POST /jobs/{id}/backfill with such a `to` answered 500
    with pytest.raises(InvalidField) as refused:
        parse_instant(text, "to")

    assert refused.value.field == "to"
