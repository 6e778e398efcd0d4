"""Dynamic date parameters (`${T:FORMAT}`, `${T-N:FORMAT}`, `${T+N:FORMAT}`) in job task configs.

A job is checked once, at creation, with `validate_parameters`; every execution then calls
`resolve_parameters` against its scheduled instant (not the wall clock), so a retry or a late
fire resolves to the same values. Every `${...}` is reserved for parameters: anything that is
not a valid T-parameter is refused at creation rather than sent out verbatim at 2 AM.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

from domain.errors import InvalidField

MAX_DAYS = 36500

# No brace inside, so each `${` scans only to the next brace: linear on hostile input.
_PLACEHOLDER = re.compile(r"\$\{([^{}]*)\}")
_OPENING = re.compile(r"\$\{")
_PARAMETER = re.compile(r"T(?:([+-])([^:]*))?:(.*)", re.DOTALL)
_DAYS = re.compile(r"[0-9]+")
# Known tokens first; an unknown letter is reported together with its repeats ('YY', 'hh').
_FORMAT_PART = re.compile(r"YYYY|MM|DD|HH|mm|ss|[-:/._ T]|([A-Za-z])\1*|.", re.DOTALL)
# Positions index the fields tuple built in `_Resolver`: year, month, day, hour, minute, second.
_TEMPLATE_BY_TOKEN = {
    "YYYY": "{0:04d}",
    "MM": "{1:02d}",
    "DD": "{2:02d}",
    "HH": "{3:02d}",
    "mm": "{4:02d}",
    "ss": "{5:02d}",
}
_SEPARATORS = frozenset("-:/._ T")

_FORMS = "use ${T:FORMAT}, ${T-N:FORMAT} or ${T+N:FORMAT} with N whole days (0 to 36500)"
_TOKENS = "use YYYY, MM, DD, HH, mm, ss"
_TOKENS_AND_SEPARATORS = f"{_TOKENS} and the separators - : / . _ T and space"


class _Parameter(NamedTuple):
    """One parsed placeholder: a shift of the local date and a `str.format` template."""

    days: int
    template: str


class _ParameterError(ValueError):
    """The reason one placeholder, or a stray `${`, cannot be resolved."""


@lru_cache(maxsize=1024)
def _parse(inner: str) -> _Parameter:
    """Parse the text between `${` and `}` once; executions reuse the cached plan."""
    shown = "${" + (inner if len(inner) <= 40 else inner[:37] + "...") + "}"
    match = _PARAMETER.fullmatch(inner)
    if match is None:
        if _PARAMETER.fullmatch(inner + ":x"):
            raise _ParameterError(f"{shown} has no format; {_FORMS}")
        raise _ParameterError(f"unsupported parameter {shown}; {_FORMS}")
    sign, digits, fmt = match.groups()
    days = 0
    if sign is not None:
        if not _DAYS.fullmatch(digits):
            raise _ParameterError(
                f"day offset {digits!r} in {shown} is not a whole number of days; {_FORMS}"
            )
        days = int(digits)
        if days > MAX_DAYS:
            raise _ParameterError(
                f"day offset {days} in {shown} is more than {MAX_DAYS} days; {_FORMS}"
            )
        days = -days if sign == "-" else days
    if not fmt:
        raise _ParameterError(f"empty format in {shown}; {_TOKENS}")
    return _Parameter(days, _template(fmt, shown))


def _template(fmt: str, shown: str) -> str:
    parts = []
    for part in (m.group() for m in _FORMAT_PART.finditer(fmt)):
        if part in _TEMPLATE_BY_TOKEN:
            parts.append(_TEMPLATE_BY_TOKEN[part])
        elif part in _SEPARATORS:
            parts.append(part)
        elif part.isascii() and part.isalpha():
            raise _ParameterError(f"unknown token {part!r} in {shown}; {_TOKENS}")
        else:
            raise _ParameterError(
                f"unsupported character {part!r} in {shown}; {_TOKENS_AND_SEPARATORS}"
            )
    return "".join(parts)


def _check_string(text: str) -> None:
    if "${" not in text:
        return
    starts = set()
    for match in _PLACEHOLDER.finditer(text):
        _parse(match.group(1))
        starts.add(match.start())
    for opening in _OPENING.finditer(text):
        if opening.start() not in starts:
            raise _ParameterError(
                f"'${{' at character {opening.start()} opens no complete parameter; {_FORMS}"
            )


def validate_parameters(value: object, field: str) -> None:
    """Refuse any `${...}` in the string values of `value` that is not a valid T-parameter."""
    if isinstance(value, str):
        try:
            _check_string(value)
        except _ParameterError as e:
            raise InvalidField(field, str(e)) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            validate_parameters(item, f"{field}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            validate_parameters(item, f"{field}[{index}]")


def has_parameters(value: object) -> bool:
    """Whether any string value in `value` holds a `${...}` placeholder."""
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, dict):
        return any(has_parameters(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(has_parameters(item) for item in value)
    return False


class _Resolver:
    """Formats placeholders for one scheduled instant, shifting its local date by whole days."""

    __slots__ = ("_fields_by_days", "_local")

    def __init__(self, local: datetime) -> None:
        self._local = local
        self._fields_by_days: dict[int, tuple[int, ...]] = {}

    def _fields(self, days: int) -> tuple[int, ...]:
        fields = self._fields_by_days.get(days)
        if fields is None:
            local = self._local
            try:
                # The calendar date moves; the wall time stays, even in a DST gap.
                shifted: date = local.date() + timedelta(days=days)
            except OverflowError:
                raise _ParameterError(
                    f"shifting {local.date().isoformat()} by {days} days leaves the calendar"
                ) from None
            fields = (
                shifted.year,
                shifted.month,
                shifted.day,
                local.hour,
                local.minute,
                local.second,
            )
            self._fields_by_days[days] = fields
        return fields

    def _replace(self, match: re.Match[str]) -> str:
        parameter = _parse(match.group(1))
        return parameter.template.format(*self._fields(parameter.days))

    def string(self, text: str) -> str:
        if "${" not in text:
            return text
        resolved, count = _PLACEHOLDER.subn(self._replace, text)
        if count != text.count("${"):
            _check_string(text)  # raises: some `${` opens no placeholder
        return resolved

    def value(self, value: object) -> object:
        if isinstance(value, str):
            return self.string(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, tuple):
            return tuple(self.value(item) for item in value)
        return value


def resolve_parameters(value: object, scheduled_for: datetime, timezone: str) -> object:
    """A copy of `value` with every parameter resolved at `scheduled_for` in `timezone`.

    `scheduled_for` must be aware. Strings without parameters come back as they are, other
    scalars pass through, and `value` itself is never changed. A placeholder that
    `validate_parameters` would refuse raises `InvalidField`, its path rooted at `value`.
    """
    if scheduled_for.utcoffset() is None:
        raise ValueError("scheduled_for must be an aware datetime")
    resolver = _Resolver(scheduled_for.astimezone(ZoneInfo(timezone)))
    try:
        return resolver.value(value)
    except _ParameterError as e:
        validate_parameters(value, "value")  # names the path of a malformed placeholder
        raise InvalidField("value", str(e)) from None  # valid, but shifted off the calendar
