"""Event state to bytes with orjson, noting the types JSON lacks so they come back typed.

Only an event's own (top-level) fields may hold UUIDs, datetimes, decimals or tuples: each
is stored in its text (or list) form and named in a `_types_` map, so decoding touches just
those fields. Nested values (definitions, results, errors, snapshots) must be plain JSON and
come back untouched; a client's body is never mistaken for a tag. A nested datetime is
refused rather than silently turned into a string.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import Transcoder

_TYPES = "_types_"
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME
_ENCODE: dict[type, tuple[str, Any]] = {
    UUID: ("uuid", str),
    datetime: ("datetime", datetime.isoformat),
    Decimal: ("decimal", str),
    tuple: ("tuple", list),
}
_DECODE: dict[str, Any] = {
    "uuid": UUID,
    "datetime": datetime.fromisoformat,
    "decimal": Decimal,
    "tuple": tuple,
}


def _nested(value: Any) -> Any:
    raise TypeError(
        f"a nested {type(value).__qualname__} cannot be stored: only an event's own fields "
        "may hold UUIDs or datetimes"
    )


class OrjsonTranscoder(Transcoder):
    """orjson with the types of an event's own fields recorded beside them."""

    def encode(self, obj: dict[str, Any]) -> bytes:
        """Serialise event state."""
        state: dict[str, Any] = {}
        types: dict[str, str] = {}
        for key, value in obj.items():
            encoding = _ENCODE.get(type(value))
            if encoding is None:
                state[key] = value
            else:
                types[key] = encoding[0]
                state[key] = encoding[1](value)
        if types:
            state[_TYPES] = types
        return orjson.dumps(state, default=_nested, option=_OPTIONS)

    def decode(self, data: bytes) -> dict[str, Any]:
        """Deserialise event state, restoring the noted types."""
        state = orjson.loads(data)
        types = state.pop(_TYPES, None)
        if types:
            for key, kind in types.items():
                state[key] = _DECODE[kind](state[key])
        return state
