"""Event state to bytes with orjson, tagging the types JSON lacks so they come back typed.

Only an event's own (top-level) fields are tagged: UUIDs, datetimes, decimals and tuples
there come back as they went in. Nested values (definitions, results, errors, snapshots)
must be plain JSON; they are stored and read back untouched, so a client's body that happens
to contain `_type_` keys is never mistaken for a tag. A nested datetime is refused rather
than silently turned into a string.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import Transcoder

_TYPE, _DATA = "_type_", "_data_"
_PLAIN = (str, int, float, bool, type(None), dict, list)
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME


_TAGS: dict[type, tuple[str, Any]] = {
    UUID: ("uuid_hex", lambda v: v.hex),
    datetime: ("datetime_iso", datetime.isoformat),
    Decimal: ("decimal_str", str),
    tuple: ("tuple", list),
}


def _tag(value: Any) -> Any:
    tag = _TAGS.get(type(value))
    if tag is None:
        if type(value) in _PLAIN or isinstance(value, str | int | float | dict | list):
            return value  # plain JSON, or an enum (stored as its value)
        raise TypeError(f"cannot store a {type(value).__qualname__} in an event: {value!r}")
    return {_TYPE: tag[0], _DATA: tag[1](value)}


def _nested(value: Any) -> Any:
    raise TypeError(
        f"a nested {type(value).__qualname__} cannot be stored: only an event's own fields "
        "may hold UUIDs or datetimes"
    )


_UNTAG = {
    "uuid_hex": UUID,
    "datetime_iso": datetime.fromisoformat,
    "decimal_str": Decimal,
    "tuple": tuple,
}


class OrjsonTranscoder(Transcoder):
    """orjson with explicit type tags (an untagged orjson would give UUIDs back as strings)."""

    def encode(self, obj: dict[str, Any]) -> bytes:
        """Serialise event state."""
        return orjson.dumps({k: _tag(v) for k, v in obj.items()}, default=_nested, option=_OPTIONS)

    def decode(self, data: bytes) -> dict[str, Any]:
        """Deserialise event state, restoring its tagged fields."""
        state = orjson.loads(data)
        for key, value in state.items():
            if type(value) is dict and len(value) == 2 and _TYPE in value and _DATA in value:
                state[key] = _UNTAG[value[_TYPE]](value[_DATA])
        return state
