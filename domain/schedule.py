"""When a job fires: a cron pattern read in one IANA time zone, with Vixie cron's DST rule.

croniter finds the wall-clock times a pattern names; this module maps them to instants. The
zone's UTC offset is constant between two transitions, so each stretch is searched with one
offset, and a transition is only looked at when a candidate crosses it:

- a job whose hour field is fixed (`30 2 * * *`) fires once per matching wall time: a wall
  time the clock skips fires at the first instant after the gap, a repeated one in its first
  copy only;
- any other job (`*/30 * * * *`) follows elapsed time: it fires at every instant whose wall
  time matches, so in both copies of a repeated hour and never in a gap.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from threading import Lock
from typing import NamedTuple
from zoneinfo import ZoneInfo, available_timezones

from croniter import CroniterBadDateError, CroniterError, croniter
from croniter.croniter import DOW_ALPHAS, M_ALPHAS

from domain.errors import InvalidField

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_BOUNDS = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day-of-month": (1, 31),
    "month": (1, 12),
    "day-of-week": (0, 7),
}
_FIELD_TEXT = re.compile(r"\S+", re.ASCII)  # croniter's own split: cron fields are ASCII-separated
_RANGE = re.compile(r"([0-9a-z]+)-([0-9a-z]+)(?:/\d+)?", re.IGNORECASE)
_HASHED = re.compile(r"[hr](?:\(\d+-\d+\))?(?:/\d+)?", re.IGNORECASE)
_NAMES = {**M_ALPHAS, **DOW_ALPHAS}  # month and weekday names never collide
_UTC_ZONES = frozenset({"UTC", "Etc/UTC"})
_SECOND = timedelta(seconds=1)
_MICROSECOND = timedelta(microseconds=1)
# a day in, so that no zone's wall time (UTC ± 14 h) falls before the year 1
_CALENDAR_START = datetime(1, 1, 2, tzinfo=UTC)
_NEXT_FIRES_KEPT = 4096  # per pattern and zone
_ANCHOR = datetime(2000, 1, 1)  # any start: croniter is always handed the time to search from


class _Cache:
    """Holds a Schedule's compiled rules in a slot that is not a dataclass field.

    A dataclass with slots=True declares only its fields; a slot from a base stays out of
    equality, hashing, `repr`, `asdict` and pickling (it is rebuilt when missing).
    """

    __slots__ = ("_compiled",)
    _compiled: _Rules


@dataclass(frozen=True, slots=True)
class Schedule(_Cache):
    """A cron pattern read in one IANA time zone."""

    pattern: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        for name in ("pattern", "timezone"):
            if not isinstance(getattr(self, name), str):
                raise InvalidField(name, "must be a string")
        object.__setattr__(self, "pattern", self.pattern.strip())
        object.__setattr__(self, "_compiled", _compile(self.pattern, self.timezone))

    @property
    def has_seconds(self) -> bool:
        """Whether the pattern has a seconds field (six fields, seconds first)."""
        return self._rules.has_seconds

    @property
    def fixed_hour(self) -> bool:
        """Whether the hour field names hours (fires by wall time) rather than `*` or a step."""
        return self._rules.fixed_hour

    def next_after(self, instant: datetime) -> datetime:
        """The first fire strictly after `instant`, in UTC."""
        lo = _utc_second(instant)
        rules = self._rules
        found = rules.next_fires.get(lo)
        if found is None:  # thousands of jobs share a pattern, and ask about the same seconds
            if rules.zone is None:
                found = rules.wall_after(lo.replace(tzinfo=None)).replace(tzinfo=UTC)
            else:
                found = rules.next_in_zone(lo)
            if len(rules.next_fires) >= _NEXT_FIRES_KEPT:
                rules.next_fires.clear()
            rules.next_fires[lo] = found
        return found

    def latest_at_or_before(self, instant: datetime) -> datetime | None:
        """The last fire at or before `instant`, in UTC; None if none within 50 years."""
        hi = _utc_second(instant)
        rules = self._rules
        try:
            if rules.zone is None:
                return rules.wall_at_or_before(hi.replace(tzinfo=None)).replace(tzinfo=UTC)
            return rules.latest_in_zone(hi)
        except (CroniterBadDateError, OverflowError):  # nothing since the year 1
            return None

    def slots(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Every fire in `[start, end)`, ascending, in UTC. The calendar's edges hold none:
        fires before `0001-01-02` or after the last one in the year 9999 are not listed (their
        wall times, or the next fire after them, fall outside the years datetime can hold)."""
        _utc_second(end)  # refuse a naive end now, not at the first step of the iteration
        start = max(_utc_second(start, floor=False), _CALENDAR_START)
        return self._slots_from(self._next_in_calendar(start - _MICROSECOND), end)

    def next_n(self, after: datetime, n: int) -> list[datetime]:
        """The first `n` fires strictly after `after`, in UTC."""
        if n < 0:
            raise ValueError(f"n must not be negative, got {n}")
        fires: list[datetime] = []
        for _ in range(n):
            after = self.next_after(after)
            fires.append(after)
        return fires

    def _slots_from(self, fire: datetime | None, end: datetime) -> Iterator[datetime]:
        while fire is not None and fire < end:
            yield fire
            fire = self._next_in_calendar(fire)

    def _next_in_calendar(self, instant: datetime) -> datetime | None:
        """The first fire after `instant`, or None past the year 9999."""
        try:
            return self.next_after(instant)
        except (OverflowError, ValueError, CroniterBadDateError):  # "year 10000 is out of range"
            return None

    @property
    def _rules(self) -> _Rules:
        try:
            return self._compiled
        except AttributeError:  # unpickled or copied: slots outside the fields are not carried
            rules = _compile(self.pattern, self.timezone)
            object.__setattr__(self, "_compiled", rules)
            return rules


class _Shift(NamedTuple):
    """One change of a zone's UTC offset."""

    at: datetime  # the first instant on the new offset, aware UTC
    before: timedelta
    after: timedelta


class _Rules:
    """What a Schedule computes once: croniter's expansion, its zone and which DST rule applies."""

    __slots__ = ("_cron", "_lock", "fixed_hour", "has_seconds", "next_fires", "zone")

    def __init__(self, expression: str, has_seconds: bool, fixed_hour: bool, zone: str) -> None:
        self._cron = croniter(expression, _ANCHOR, second_at_beginning=has_seconds)
        self._lock = Lock()  # a croniter keeps its position between calls; threads share it
        self.has_seconds = has_seconds
        self.fixed_hour = fixed_hour
        self.zone = None if zone in _UTC_ZONES else ZoneInfo(zone)
        self.next_fires: dict[datetime, datetime] = {}  # a second → the next fire after it

    def wall_after(self, wall: datetime) -> datetime:
        """The first matching wall time strictly after `wall` (both naive)."""
        with self._lock:
            return self._cron.get_next(datetime, start_time=wall)

    def wall_at_or_before(self, wall: datetime) -> datetime:
        """The last matching wall time at or before `wall` (both naive, whole seconds)."""
        with self._lock:  # croniter's get_prev looks strictly before its start
            return self._cron.get_prev(datetime, start_time=wall + _SECOND)

    def next_in_zone(self, lo: datetime) -> datetime:
        """The first fire after `lo` (aware UTC, whole seconds) in a zone that has transitions."""
        zone = self.zone
        off = _offset(zone, lo)
        checked = lo  # no transition in (lo, checked] is left unaccounted for
        while True:
            wall = self.wall_after(_wall(lo, off))
            fire = wall.replace(tzinfo=UTC) - off
            shift = _first_shift(zone, checked, fire)
            if shift is None:
                if self.fixed_hour and fire.astimezone(zone).fold:
                    # a repeated wall time's second copy: the first copy already fired, so go on
                    # from the end of the repeat
                    shift = _shift_at_or_before(zone, fire)
                    lo, checked = shift.at + (shift.before - shift.after) - _SECOND, fire
                    continue
                return fire
            if (
                self.fixed_hour
                and shift.after > shift.before
                and wall < _wall(shift.at, shift.after)
            ):
                return shift.at  # a wall time the clock skipped fires as the clock lands
            lo, off, checked = shift.at - _SECOND, shift.after, shift.at

    def latest_in_zone(self, hi: datetime) -> datetime:
        """The last fire at or before `hi` (aware UTC, whole seconds) in a zone with transitions."""
        zone = self.zone
        local = hi.astimezone(zone)
        off, checked = local.utcoffset(), hi  # no transition in (fire, checked] unaccounted for
        if self.fixed_hour and local.fold:
            # inside a repeat: every repeated wall time has fired in its first copy already
            shift = _shift_at_or_before(zone, hi)
            hi, off, checked = shift.at - _SECOND, shift.before, shift.at - _SECOND
        while True:
            wall = self.wall_at_or_before(_wall(hi, off))
            fire = wall.replace(tzinfo=UTC) - off
            shift = _last_shift(zone, fire, checked)
            if shift is None:
                if self.fixed_hour and fire.astimezone(zone).fold:
                    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)  # the first copy
                return fire
            if (
                self.fixed_hour
                and shift.after > shift.before
                and wall >= _wall(shift.at, shift.before)
            ):
                return shift.at  # a wall time the clock skipped fired as the clock landed
            hi, off, checked = shift.at - _SECOND, shift.before, shift.at - _SECOND


@lru_cache(maxsize=4096)
def _compile(pattern: str, timezone: str) -> _Rules:
    """Check a pattern and a zone, and build what evaluating them needs."""
    if timezone not in _known_zones():
        raise InvalidField("timezone", f"unknown time zone {timezone!r}")
    fields = _split(pattern)
    has_seconds = len(fields) == len(_FIELDS) + 1
    names = ("second", *_FIELDS) if has_seconds else _FIELDS
    given = dict(zip(names, fields, strict=True))
    for name, text in given.items():
        if any(_HASHED.fullmatch(part) for part in text.split(",")):
            # croniter draws R anew in every process and wants a seed for H: no stable schedule
            reason = "hashed (H) and random (R) values are not supported"
            raise InvalidField("pattern", f"{name} field {text!r} is not valid: {reason}")
    expression = " ".join(_collapse_equal_ranges(text) for text in fields)
    try:
        croniter.expand(expression, second_at_beginning=has_seconds)
    except CroniterError:
        for name, text in given.items():  # find the field to blame
            _check_field(name, text, names)
    _check_whole(expression, given, has_seconds)
    fixed_hour = not any(c in given["hour"] for c in "*/")
    return _Rules(expression, has_seconds, fixed_hour, timezone)


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    # `localtime` is whatever the host is set to: not a zone a job can name
    return frozenset(available_timezones() - {"localtime"})


def _split(pattern: str) -> list[str]:
    if not pattern:
        raise InvalidField("pattern", "must not be empty")
    if pattern.startswith("@"):
        try:
            pattern = MACROS[pattern.lower()]
        except KeyError:
            known = ", ".join(MACROS)
            raise InvalidField("pattern", f"unknown macro {pattern!r} (known: {known})") from None
    fields = _FIELD_TEXT.findall(pattern)
    if len(fields) not in (len(_FIELDS), len(_FIELDS) + 1):
        raise InvalidField(
            "pattern", f"expected 5 fields (or 6 with seconds first), got {len(fields)}"
        )
    return fields


def _check_field(name: str, text: str, names: tuple[str, ...]) -> None:
    """Try one field with `*` in all the others, so an error can say which field is wrong."""
    alone = " ".join(_collapse_equal_ranges(text) if n == name else "*" for n in names)
    try:
        croniter.expand(alone, second_at_beginning=len(names) > len(_FIELDS))
    except CroniterError:
        low, high = _BOUNDS[name]
        numbers = (
            int(bound)
            for part in text.split(",")
            for bound in part.split("/")[0].split("-")
            if bound.isdigit()
        )
        if any(not low <= number <= high for number in numbers):
            raise InvalidField(
                "pattern", f"{name} field {text!r} is out of range {low}-{high}"
            ) from None
        raise InvalidField("pattern", f"{name} field {text!r} is not valid") from None


def _check_whole(expression: str, given: dict[str, str], has_seconds: bool) -> None:
    """Refuse days that never occur: the 30th of February, or an empty day-and-weekday mix."""
    day, month, weekday = given["day-of-month"], given["month"], given["day-of-week"]
    nth = "w" in day.lower() or "#" in weekday or "l" in weekday.lower()  # no name has w or l
    if nth and day not in ("*", "?") and weekday not in ("*", "?"):
        # croniter intersects these instead of taking cron's union of days and weekdays
        raise InvalidField(
            "pattern",
            f"day-of-week field {weekday!r} cannot be combined with day-of-month field {day!r}"
            " when either uses #, L (weekday) or W",
        )
    never = f"day-of-month field {day!r} never occurs in month field {month!r}"
    try:
        # croniter's strict check ignores that a weekday list widens the days (cron's OR rule)
        croniter.expand(expression, second_at_beginning=has_seconds, strict=weekday in ("*", "?"))
        iterator = croniter(expression, _ANCHOR, second_at_beginning=has_seconds)
        iterator.get_next(datetime)
    except CroniterBadDateError:
        raise InvalidField("pattern", f"{never} with day-of-week field {weekday!r}") from None
    except CroniterError:
        raise InvalidField("pattern", never) from None


def _collapse_equal_ranges(text: str) -> str:
    """`5-5` is 5 to cron, but croniter reads an equal range as the whole cycle."""
    parts = []
    for part in text.split(","):
        match = _RANGE.fullmatch(part)
        if match and _bound(match[1]) is not None and _bound(match[1]) == _bound(match[2]):
            part = match[1]
        parts.append(part)
    return ",".join(parts)


def _bound(token: str) -> int | None:
    if token.isdigit():
        return int(token)
    value = _NAMES.get(token.lower())
    return value if isinstance(value, int) else None


def _utc_second(instant: datetime, floor: bool = True) -> datetime:
    """`instant` in UTC, cut to the whole second: fires fall on whole seconds."""
    if not isinstance(instant, datetime):
        raise TypeError(f"expected a datetime, got {type(instant).__name__}")
    if instant.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {instant.isoformat()}")
    instant = instant.astimezone(UTC)
    return instant.replace(microsecond=0) if floor else instant


def _wall(instant: datetime, offset: timedelta) -> datetime:
    """The naive wall time of a UTC instant under one offset."""
    return (instant + offset).replace(tzinfo=None)


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def _first_shift(zone: ZoneInfo, after: datetime, until: datetime) -> _Shift | None:
    """The zone's first transition in `(after, until]`."""
    for year in range(after.year, until.year + 1):
        for shift in _shifts_in_year(zone, year):
            if shift.at > after:
                return shift if shift.at <= until else None
    return None


def _last_shift(zone: ZoneInfo, after: datetime, until: datetime) -> _Shift | None:
    """The zone's last transition in `(after, until]`."""
    for year in range(until.year, after.year - 1, -1):
        for shift in reversed(_shifts_in_year(zone, year)):
            if shift.at <= until:
                return shift if shift.at > after else None
    return None


def _shift_at_or_before(zone: ZoneInfo, instant: datetime) -> _Shift:
    """The transition that put `instant` on its offset; it is close when this is asked."""
    shift = _last_shift(zone, instant - timedelta(days=7), instant)
    assert shift is not None, "a repeated wall time lies just after a transition"
    return shift


@lru_cache(maxsize=4096)
def _shifts_in_year(zone: ZoneInfo, year: int) -> tuple[_Shift, ...]:
    """The zone's transitions in one UTC calendar year, found by probing daily and bisecting.

    zoneinfo does not publish its transitions. A pair less than a day apart that cancels out
    would go unseen; the daily probes keep a year's search to a few hundred look-ups.
    """
    if not datetime.min.year < year < datetime.max.year:
        return ()
    start, end = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    probes = [start - _SECOND]
    probes.extend(start + timedelta(days=d) for d in range(1, (end - start).days))
    probes.append(end - _SECOND)
    shifts = []
    lo, lo_offset = probes[0], _offset(zone, probes[0])
    for hi in probes[1:]:
        hi_offset = _offset(zone, hi)
        if hi_offset != lo_offset:
            shifts.append(_bisect_shift(zone, lo, lo_offset, hi))
        lo, lo_offset = hi, hi_offset
    return tuple(shifts)


def _bisect_shift(zone: ZoneInfo, lo: datetime, lo_offset: timedelta, hi: datetime) -> _Shift:
    """The first whole second in `(lo, hi]` not on `lo_offset`; `hi` is not on it."""
    while hi - lo > _SECOND:
        mid = lo + (hi - lo) // _SECOND // 2 * _SECOND
        if _offset(zone, mid) == lo_offset:
            lo = mid
        else:
            hi = mid
    return _Shift(hi, lo_offset, _offset(zone, hi))
