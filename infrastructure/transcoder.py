"""Event state to bytes with orjson, tagging the types JSON lacks so they come back typed."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import Transcoder

_TYPE, _DATA = "_type_", "_data_"
_PLAIN = (str, int, float, bool, type(None))


def _tag(value: Any) -> Any:
    """A copy of `value` with UUIDs, datetimes, decimals and tuples tagged."""
    cls = type(value)
    if cls in _PLAIN:
        return value
    if cls is dict:
        tagged = {k: _tag(v) for k, v in value.items()}
        # a client's own dict that looks like a tag is wrapped, so it comes back as it was
        return {_TYPE: "dict", _DATA: tagged} if _TYPE in value else tagged
    if cls is list:
        return [_tag(v) for v in value]
    if isinstance(value, UUID):
        return {_TYPE: "uuid_hex", _DATA: value.hex}
    if isinstance(value, datetime):
        return {_TYPE: "datetime_iso", _DATA: value.isoformat()}
    if isinstance(value, Decimal):
        return {_TYPE: "decimal_str", _DATA: str(value)}
    if cls is tuple:
        return {_TYPE: "tuple", _DATA: [_tag(v) for v in value]}
    if isinstance(value, str | int | float):  # StrEnum, IntEnum: stored as their value
        return value
    if isinstance(value, dict):
        return _tag(dict(value))
    raise TypeError(f"cannot store a {cls.__qualname__} in an event: {value!r}")


_UNTAG = {
    "uuid_hex": UUID,
    "datetime_iso": datetime.fromisoformat,
    "decimal_str": Decimal,
}


def _untag(value: Any) -> Any:
    cls = type(value)
    if cls is dict:
        if _TYPE in value and len(value) == 2 and _DATA in value:
            kind = value[_TYPE]
            if kind == "tuple":
                return tuple(_untag(v) for v in value[_DATA])
            if kind == "dict":
                return {k: _untag(v) for k, v in value[_DATA].items()}
            return _UNTAG[kind](value[_DATA])
        return {k: _untag(v) for k, v in value.items()}
    if cls is list:
        return [_untag(v) for v in value]
    return value


class OrjsonTranscoder(Transcoder):
    """orjson with explicit type tags (an untagged orjson would give UUIDs back as strings)."""

    def encode(self, obj: Any) -> bytes:
        """Serialise event state."""
        return orjson.dumps(_tag(obj))

    def decode(self, data: bytes) -> Any:
        """Deserialise event state, restoring tagged types."""
        return _untag(orjson.loads(data))
