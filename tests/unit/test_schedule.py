"""Schedule: the instants a cron pattern names in its time zone, daylight saving included."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import UTC, datetime, timedelta, timezone
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidField
from domain.schedule import Schedule


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


def local(instant: datetime, zone: str) -> tuple[int, int, int]:
    """Hour, minute and fold of `instant` on the wall clock of `zone`."""
    wall = instant.astimezone(ZoneInfo(zone))
    return wall.hour, wall.minute, wall.fold


WEDNESDAY = utc(2026, 2, 4, 14, 30, 15)
BERLIN_SPRING, BERLIN_AUTUMN = utc(2026, 3, 29, 1), utc(2026, 10, 25, 1)
NEW_YORK_SPRING, NEW_YORK_AUTUMN = utc(2026, 3, 8, 7), utc(2026, 11, 1, 6)
LORD_HOWE_AUTUMN, LORD_HOWE_SPRING = utc(2026, 4, 4, 15), utc(2026, 10, 3, 15, 30)
TRANSITIONS = [
    ("Europe/Berlin", BERLIN_SPRING),
    ("Europe/Berlin", BERLIN_AUTUMN),
    ("America/New_York", NEW_YORK_SPRING),
    ("America/New_York", NEW_YORK_AUTUMN),
    ("Australia/Lord_Howe", LORD_HOWE_AUTUMN),
    ("Australia/Lord_Howe", LORD_HOWE_SPRING),
]


# the examples of the seed's module documentation


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("* * * * *", [utc(2026, 2, 4, 14, 31), utc(2026, 2, 4, 14, 32)]),
        ("0 * * * *", [utc(2026, 2, 4, 15), utc(2026, 2, 4, 16)]),
        ("0 0 * * *", [utc(2026, 2, 5), utc(2026, 2, 6)]),
        ("0 9 * * 1-5", [utc(2026, 2, 5, 9), utc(2026, 2, 6, 9), utc(2026, 2, 9, 9)]),
        ("0 0 1 * *", [utc(2026, 3, 1), utc(2026, 4, 1)]),
        ("*/15 * * * *", [utc(2026, 2, 4, 14, 45), utc(2026, 2, 4, 15)]),
        ("*/5 * * * *", [utc(2026, 2, 4, 14, 35), utc(2026, 2, 4, 14, 40)]),
        ("*/10 * * * *", [utc(2026, 2, 4, 14, 40), utc(2026, 2, 4, 14, 50)]),
        ("0 2 * * *", [utc(2026, 2, 5, 2), utc(2026, 2, 6, 2)]),
        ("0 1 * * 0", [utc(2026, 2, 8, 1), utc(2026, 2, 15, 1)]),
        ("0 9 * * 1", [utc(2026, 2, 9, 9), utc(2026, 2, 16, 9)]),
    ],
)
def test_each_seed_example_fires_at_its_expected_instants(pattern, expected):
    assert Schedule(pattern).next_n(WEDNESDAY, len(expected)) == expected


def test_a_pattern_is_read_on_the_wall_clock_of_its_time_zone():
    assert Schedule("0 2 * * *", "Europe/Berlin").next_after(WEDNESDAY) == utc(2026, 2, 5, 1)


# macros, seconds, names, ranges


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@hourly", utc(2026, 2, 4, 15)),
        ("@daily", utc(2026, 2, 5)),
        ("@midnight", utc(2026, 2, 5)),
        ("@weekly", utc(2026, 2, 8)),
        ("@monthly", utc(2026, 3, 1)),
        ("@yearly", utc(2027, 1, 1)),
        ("@annually", utc(2027, 1, 1)),
        ("@DAILY", utc(2026, 2, 5)),
    ],
)
def test_a_macro_fires_as_its_cron_pattern(macro, expected):
    assert Schedule(macro).next_after(WEDNESDAY) == expected


def test_a_sixth_field_is_seconds_and_comes_first():
    expected = [utc(2026, 2, 4, 14, 30, 20), utc(2026, 2, 4, 14, 30, 30)]
    assert Schedule("*/10 * * * * *").next_n(WEDNESDAY, 2) == expected


def test_a_fixed_second_fires_once_a_minute():
    expected = [utc(2026, 2, 4, 14, 30, 30), utc(2026, 2, 4, 14, 31, 30)]
    assert Schedule("30 * * * * *").next_n(WEDNESDAY, 2) == expected


def test_a_pattern_with_seconds_has_seconds():
    assert Schedule("0 30 2 * * *").has_seconds
    assert not Schedule("30 2 * * *").has_seconds


def test_weekday_names_select_weekdays():
    friday_evening = utc(2026, 2, 6, 18)
    assert Schedule("0 9 * * MON-FRI").next_after(friday_evening) == utc(2026, 2, 9, 9)


def test_names_are_read_in_any_case():
    lower, upper = Schedule("0 9 * * mon-fri"), Schedule("0 9 * * MON-FRI")
    assert lower.next_n(WEDNESDAY, 5) == upper.next_n(WEDNESDAY, 5)


def test_month_names_select_months():
    assert Schedule("0 0 1 JAN *").next_after(WEDNESDAY) == utc(2027, 1, 1)


def test_weekday_seven_is_sunday():
    assert Schedule("0 0 * * 7").next_after(WEDNESDAY) == utc(2026, 2, 8)


def test_a_range_of_hours_fires_in_each():
    expected = [utc(2026, 2, 5, 8), utc(2026, 2, 5, 9), utc(2026, 2, 5, 10), utc(2026, 2, 6, 8)]
    assert Schedule("0 8-10 * * *").next_n(WEDNESDAY, 4) == expected


def test_a_list_of_minutes_fires_at_each():
    expected = [utc(2026, 2, 4, 14, 35), utc(2026, 2, 4, 15, 5)]
    assert Schedule("5,35 * * * *").next_n(WEDNESDAY, 2) == expected


def test_a_stepped_range_starts_at_its_low_end():
    expected = [utc(2026, 2, 4, 14, 50), utc(2026, 2, 4, 15, 10), utc(2026, 2, 4, 15, 30)]
    assert Schedule("10-50/20 * * * *").next_n(WEDNESDAY, 3) == expected


def test_an_equal_range_is_a_single_value():
    # croniter alone reads `30-30` as the whole hour
    expected = [utc(2026, 2, 4, 15, 30), utc(2026, 2, 4, 16, 30)]
    assert Schedule("30-30 * * * *").next_n(WEDNESDAY, 2) == expected


def test_l_is_the_last_day_of_the_month():
    assert Schedule("0 0 L * *").next_after(WEDNESDAY) == utc(2026, 2, 28)


def test_hash_picks_the_nth_weekday_of_the_month():
    assert Schedule("0 9 * * 1#1").next_after(WEDNESDAY) == utc(2026, 3, 2, 9)


def test_w_picks_the_weekday_nearest_a_day():
    # 2026-02-15 is a Sunday
    assert Schedule("0 0 15W * *").next_after(WEDNESDAY) == utc(2026, 2, 16)


def test_a_question_mark_is_any_day():
    assert Schedule("0 0 ? * MON").next_after(WEDNESDAY) == utc(2026, 2, 9)


def test_day_of_month_and_weekday_both_given_fire_on_either():
    # cron's rule: the 5th (a Thursday) or any Monday
    assert Schedule("0 0 5 * 1").next_n(WEDNESDAY, 2) == [utc(2026, 2, 5), utc(2026, 2, 9)]


# refusals


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("* * * *", "expected 5 fields (or 6 with seconds first), got 4"),
        ("* * * * * * 2026", "expected 5 fields (or 6 with seconds first), got 7"),
        ("@every 5m", "unknown macro '@every 5m'"),
        ("60 * * * *", "minute field '60' is out of range 0-59"),
        ("* 25 * * *", "hour field '25' is out of range 0-23"),
        ("* * 0 * *", "day-of-month field '0' is out of range 1-31"),
        ("* * 32 * *", "day-of-month field '32' is out of range 1-31"),
        ("* * * 13 *", "month field '13' is out of range 1-12"),
        ("* * * * 8", "day-of-week field '8' is out of range 0-7"),
        ("61 * * * * *", "second field '61' is out of range 0-59"),
        ("1-60 * * * *", "minute field '1-60' is out of range 0-59"),
        ("* * * * FOO", "day-of-week field 'FOO' is not valid"),
        ("* * * FOO *", "month field 'FOO' is not valid"),
        ("*/0 * * * *", "minute field '*/0' is not valid"),
        ("1,,2 * * * *", "minute field '1,,2' is not valid"),
        ("-1 * * * *", "minute field '-1' is not valid"),
        ("? * * * *", "minute field '?' is not valid"),
        ("* 1-2-3 * * *", "hour field '1-2-3' is not valid"),
        ("* * * * MON#6", "day-of-week field 'MON#6' is not valid"),
        ("H * * * *", "minute field 'H' is not valid"),
        ("0 R * * *", "hour field 'R' is not valid"),
        ("0 0 30 2 *", "day-of-month field '30' never occurs in month field '2'"),
        ("0 0 1 * 5#1", "day-of-week field '5#1' cannot be combined with day-of-month field"),
    ],
)
def test_an_invalid_pattern_is_refused_naming_the_bad_field(pattern, reason):
    with pytest.raises(InvalidField) as refused:
        Schedule(pattern)
    assert refused.value.field == "pattern"
    assert str(refused.value).startswith("pattern: ")
    assert reason in str(refused.value)


@pytest.mark.parametrize("zone", ["Mars/Base", "", "localtime", "europe/berlin", "../etc"])
def test_an_unknown_time_zone_is_refused(zone):
    with pytest.raises(InvalidField) as refused:
        Schedule("* * * * *", zone)
    assert refused.value.field == "timezone"
    assert str(refused.value) == f"timezone: unknown time zone {zone!r}"


@pytest.mark.parametrize(
    "call",
    [
        lambda s, t: s.next_after(t),
        lambda s, t: s.latest_at_or_before(t),
        lambda s, t: s.slots(t, WEDNESDAY),
        lambda s, t: s.slots(WEDNESDAY, t),
        lambda s, t: s.next_n(t, 1),
    ],
)
def test_a_naive_datetime_is_a_programming_error(call):
    with pytest.raises(ValueError, match="timezone-aware"):
        call(Schedule("* * * * *"), datetime(2026, 2, 4, 14, 30))


# a value object


def test_surrounding_whitespace_is_not_part_of_the_pattern():
    assert Schedule("  0 2 * * *\n").pattern == "0 2 * * *"


def test_schedules_are_equal_by_pattern_and_zone():
    assert Schedule("0 2 * * *", "Europe/Berlin") == Schedule(" 0 2 * * *", "Europe/Berlin")
    assert hash(Schedule("0 2 * * *")) == hash(Schedule("0 2 * * *", "UTC"))
    assert Schedule("0 2 * * *", "Europe/Berlin") != Schedule("0 2 * * *", "Europe/Paris")


def test_only_the_pattern_and_zone_show_in_repr_and_asdict():
    schedule = Schedule("0 2 * * *", "Europe/Berlin")
    assert repr(schedule) == "Schedule(pattern='0 2 * * *', timezone='Europe/Berlin')"
    assert dataclasses.asdict(schedule) == {"pattern": "0 2 * * *", "timezone": "Europe/Berlin"}


def test_a_schedule_cannot_be_changed():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Schedule("0 2 * * *").pattern = "0 3 * * *"  # type: ignore[misc]


def test_a_pickled_schedule_still_computes():
    schedule = pickle.loads(pickle.dumps(Schedule("0 2 * * *", "Europe/Berlin")))
    assert schedule.next_after(WEDNESDAY) == utc(2026, 2, 5, 1)


def test_an_instant_in_any_zone_is_the_same_instant():
    kolkata = WEDNESDAY.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert Schedule("*/5 * * * *").next_after(kolkata) == utc(2026, 2, 4, 14, 35)


def test_fires_are_whole_seconds_in_utc():
    fire = Schedule("* * * * *", "Asia/Kolkata").next_after(WEDNESDAY.replace(microsecond=7))
    assert fire.tzinfo is UTC
    assert fire.microsecond == 0


# slots, the latest fire, next_n


def test_slots_include_their_start_and_exclude_their_end():
    slots = list(Schedule("0 * * * *").slots(utc(2026, 2, 4, 10), utc(2026, 2, 4, 12)))
    assert slots == [utc(2026, 2, 4, 10), utc(2026, 2, 4, 11)]


def test_slots_start_just_after_a_fire_leaves_it_out():
    start = utc(2026, 2, 4, 10).replace(microsecond=1)
    assert list(Schedule("0 * * * *").slots(start, utc(2026, 2, 4, 12))) == [utc(2026, 2, 4, 11)]


def test_slots_of_an_empty_range_are_empty():
    assert list(Schedule("* * * * *").slots(utc(2026, 2, 4, 12), utc(2026, 2, 4, 10))) == []


def test_slots_are_produced_lazily():
    slots = Schedule("* * * * * *").slots(WEDNESDAY, utc(2126, 1, 1))
    assert list(islice(slots, 2)) == [WEDNESDAY, WEDNESDAY + timedelta(seconds=1)]


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_slots_from_the_first_day_of_the_calendar_start_the_next_day(zone):
    # found by the fuzzer: a backfill from 0001-01-01T00:00:00Z answered 500 (OverflowError)
    slots = list(Schedule("0 0 1 1 *", zone).slots(utc(1, 1, 1), utc(3, 1, 2)))
    assert len(slots) == 2 and slots[0] > utc(1, 1, 2)


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_slots_end_with_the_last_fire_of_the_year_9999(zone):
    # the next fire after it would be in the year 10000, which datetime cannot hold
    slots = list(Schedule("0 0 1 1 *", zone).slots(utc(9997, 1, 1), utc(9999, 12, 31, 23)))
    assert slots[-1] >= utc(9998, 12, 31)  # Kolkata's 9999-12-31T18:30Z is 10000-01-01 there


def test_the_latest_fire_at_a_fire_is_that_fire():
    assert Schedule("0 * * * *").latest_at_or_before(utc(2026, 2, 4, 14)) == utc(2026, 2, 4, 14)


def test_the_latest_fire_between_fires_is_the_earlier_one():
    schedule = Schedule("0 2 * * *", "Europe/Berlin")
    assert schedule.latest_at_or_before(WEDNESDAY) == utc(2026, 2, 4, 1)


def test_the_latest_fire_reaches_back_a_year():
    assert Schedule("@yearly").latest_at_or_before(WEDNESDAY) == utc(2026, 1, 1)


def test_next_n_lists_the_next_fires():
    expected = [utc(2026, 2, 4, 15), utc(2026, 2, 4, 16), utc(2026, 2, 4, 17)]
    assert Schedule("@hourly").next_n(WEDNESDAY, 3) == expected


def test_next_n_of_zero_is_empty():
    assert Schedule("@hourly").next_n(WEDNESDAY, 0) == []


def test_next_n_refuses_a_negative_count():
    with pytest.raises(ValueError, match="negative"):
        Schedule("@hourly").next_n(WEDNESDAY, -1)


# daylight saving: the hour field decides which rule applies


@pytest.mark.parametrize(
    ("pattern", "fixed"),
    [
        ("30 2 * * *", True),
        ("0 1,2 * * *", True),
        ("0 1-3 * * *", True),
        ("* 2 * * *", True),
        ("0 0 2 * * *", True),
        ("@daily", True),
        ("@midnight", True),
        ("@weekly", True),
        ("@monthly", True),
        ("@yearly", True),
        ("* * * * *", False),
        ("0 */2 * * *", False),
        ("0 1-5/2 * * *", False),
        ("*/30 * * * *", False),
        ("@hourly", False),
        ("* * * * * *", False),
    ],
)
def test_an_hour_field_of_numbers_is_a_fixed_hour(pattern, fixed):
    assert Schedule(pattern).fixed_hour is fixed


@pytest.mark.parametrize(
    ("zone", "local_day", "pattern", "fire"),
    [
        # spring: the wall time does not exist, it fires as the clock lands after the gap
        ("Europe/Berlin", (2026, 3, 29), "30 2 * * *", BERLIN_SPRING),
        ("America/New_York", (2026, 3, 8), "30 2 * * *", NEW_YORK_SPRING),
        ("Australia/Lord_Howe", (2026, 10, 4), "0 2 * * *", LORD_HOWE_SPRING),
        # autumn: the wall time happens twice, it fires at the first copy
        ("Europe/Berlin", (2026, 10, 25), "30 2 * * *", utc(2026, 10, 25, 0, 30)),
        ("America/New_York", (2026, 11, 1), "30 1 * * *", utc(2026, 11, 1, 5, 30)),
        ("America/New_York", (2026, 11, 1), "30 2 * * *", utc(2026, 11, 1, 7, 30)),
        ("Australia/Lord_Howe", (2026, 4, 5), "45 1 * * *", utc(2026, 4, 4, 14, 45)),
    ],
)
def test_a_fixed_hour_job_fires_exactly_once_on_a_change_day(zone, local_day, pattern, fire):
    day_start = datetime(*local_day, tzinfo=ZoneInfo(zone))
    day_end = day_start + timedelta(days=1)
    assert list(Schedule(pattern, zone).slots(day_start, day_end)) == [fire]


def test_a_fixed_hour_job_keeps_its_wall_time_on_the_days_around_a_change():
    slots = Schedule("30 2 * * *", "Europe/Berlin").slots(utc(2026, 10, 23), utc(2026, 10, 27))
    assert [local(s, "Europe/Berlin") for s in slots] == [(2, 30, 0)] * 4


@pytest.mark.parametrize("pattern", ["0,30 2 * * *", "*/20 2 * * *", "* 2 * * *"])
def test_fixed_hour_slots_in_a_gap_fire_once(pattern):
    slots = Schedule(pattern, "Europe/Berlin").slots(utc(2026, 3, 28, 23), utc(2026, 3, 29, 2))
    assert list(slots) == [BERLIN_SPRING]


def test_a_wall_time_after_a_gap_does_not_fire_twice_with_the_gap():
    schedule = Schedule("0,30 2,3 * * *", "Europe/Berlin")
    slots = schedule.slots(utc(2026, 3, 28, 23), utc(2026, 3, 29, 3))
    assert list(slots) == [BERLIN_SPRING, utc(2026, 3, 29, 1, 30)]  # 03:00 once, then 03:30


def test_an_elapsed_time_job_fires_in_both_copies_of_a_repeated_hour():
    schedule = Schedule("*/30 * * * *", "Europe/Berlin")
    slots = schedule.slots(utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 2, 30))
    walls = [local(s, "Europe/Berlin") for s in slots]
    assert walls == [(1, 30, 0), (2, 0, 0), (2, 30, 0), (2, 0, 1), (2, 30, 1), (3, 0, 0)]


def test_an_elapsed_time_job_does_not_fire_in_a_gap():
    schedule = Schedule("*/30 * * * *", "Europe/Berlin")
    slots = schedule.slots(utc(2026, 3, 29, 0), utc(2026, 3, 29, 2))
    walls = [local(s, "Europe/Berlin") for s in slots]
    assert walls == [(1, 0, 0), (1, 30, 0), (3, 0, 0), (3, 30, 0)]


@pytest.mark.parametrize(("zone", "transition"), TRANSITIONS)
def test_an_elapsed_time_job_keeps_its_interval_across_a_change(zone, transition):
    window = timedelta(hours=3)
    slots = list(Schedule("*/30 * * * *", zone).slots(transition - window, transition + window))
    assert len(slots) == 12
    assert {b - a for a, b in pairwise(slots)} == {timedelta(minutes=30)}


@pytest.mark.parametrize(("zone", "transition"), TRANSITIONS)
def test_an_every_second_job_neither_repeats_nor_skips_across_a_change(zone, transition):
    window = timedelta(minutes=2)
    slots = list(Schedule("* * * * * *", zone).slots(transition - window, transition + window))
    assert len(slots) == 240
    assert {b - a for a, b in pairwise(slots)} == {timedelta(seconds=1)}


def test_in_the_second_copy_a_fixed_hour_job_waits_for_the_next_day():
    second_copy = utc(2026, 10, 25, 1, 10)  # 02:10 again
    next_fire = Schedule("30 2 * * *", "Europe/Berlin").next_after(second_copy)
    assert next_fire == utc(2026, 10, 26, 1, 30)


def test_in_the_second_copy_an_elapsed_time_job_fires_again():
    second_copy = utc(2026, 10, 25, 1, 10)  # 02:10 again
    next_fire = Schedule("*/30 * * * *", "Europe/Berlin").next_after(second_copy)
    assert next_fire == utc(2026, 10, 25, 1, 30)


def test_in_the_first_copy_an_elapsed_time_job_fires_next_in_the_second():
    first_copy = utc(2026, 10, 25, 0, 40)  # 02:40, before the clocks go back
    assert Schedule("*/30 * * * *", "Europe/Berlin").next_after(first_copy) == BERLIN_AUTUMN


def test_the_latest_fire_in_the_second_copy_of_a_fixed_hour_job_is_the_first_copy():
    schedule = Schedule("50 2 * * *", "Europe/Berlin")
    assert schedule.latest_at_or_before(utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 25, 0, 50)


def test_the_latest_fire_in_the_second_copy_of_an_elapsed_time_job_is_in_the_second_copy():
    schedule = Schedule("*/30 * * * *", "Europe/Berlin")
    assert schedule.latest_at_or_before(utc(2026, 10, 25, 1, 10)) == BERLIN_AUTUMN


def test_the_latest_fire_of_a_gap_job_is_where_the_clock_landed():
    schedule = Schedule("30 2 * * *", "Europe/Berlin")
    assert schedule.latest_at_or_before(utc(2026, 3, 29, 1, 20)) == BERLIN_SPRING
    assert schedule.latest_at_or_before(utc(2026, 3, 29, 0, 59)) == utc(2026, 3, 28, 1, 30)


def test_a_zone_without_daylight_saving_keeps_its_offset():
    assert Schedule("30 2 * * *", "Asia/Kolkata").next_after(WEDNESDAY) == utc(2026, 2, 4, 21)


# properties over random patterns, zones and instants


def _patterns() -> st.SearchStrategy[str]:
    seconds = st.sampled_from(["0", "*/10", "15,45", "5-10", "*"])
    fields = st.tuples(
        st.sampled_from(["*", "0", "*/15", "5,35", "10-20", "0-59/20", "59"]),
        st.sampled_from(["*", "2", "*/2", "1-3", "0,12", "1,2,3", "*/5"]),
        st.sampled_from(["*", "1", "15", "1-7", "L", "*/10", "25-31"]),
        st.sampled_from(["*", "JAN", "3,10", "MAR-NOV", "*/2", "4,11"]),
        st.sampled_from(["*", "MON-FRI", "0", "SUN", "1,3,5", "sat,sun"]),
    ).map(" ".join)
    return fields | st.tuples(seconds, fields).map(" ".join)


SCHEDULES = st.builds(
    Schedule,
    _patterns(),
    st.sampled_from(
        ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
    ),
)
NEAR_A_CHANGE = st.builds(
    lambda change, seconds, micros: change + timedelta(seconds=seconds, microseconds=micros),
    st.sampled_from([change for _, change in TRANSITIONS]),
    st.integers(-4 * 3600, 4 * 3600),
    st.sampled_from([0, 0, 1, 999_999]),
)
ANYWHERE = st.datetimes(datetime(2000, 1, 1), datetime(2040, 12, 31), timezones=st.just(UTC))
INSTANTS = NEAR_A_CHANGE | ANYWHERE
PROPERTY = settings(max_examples=60, deadline=None)


@PROPERTY
@given(SCHEDULES, INSTANTS)
def test_the_next_fire_is_strictly_later(schedule, instant):
    fire = schedule.next_after(instant)
    assert fire > instant
    assert fire.tzinfo is UTC
    assert fire.microsecond == 0


@PROPERTY
@given(SCHEDULES, INSTANTS, INSTANTS)
def test_the_next_fire_never_goes_back_as_time_goes_on(schedule, one, other):
    earlier, later = sorted([one, other])
    assert schedule.next_after(earlier) <= schedule.next_after(later)


@PROPERTY
@given(SCHEDULES, INSTANTS)
def test_slots_strictly_increase(schedule, instant):
    slots = list(islice(schedule.slots(instant, instant + timedelta(days=3)), 50))
    assert all(a < b for a, b in pairwise(slots))


@PROPERTY
@given(SCHEDULES, INSTANTS)
def test_the_next_fire_is_the_first_slot_after_the_instant(schedule, instant):
    fire = schedule.next_after(instant)
    slots = schedule.slots(instant + timedelta(microseconds=1), fire + timedelta(days=1))
    assert next(slots) == fire


@PROPERTY
@given(SCHEDULES, INSTANTS)
def test_the_latest_fire_is_the_last_one_up_to_the_instant(schedule, instant):
    latest = schedule.latest_at_or_before(instant)
    assert latest is not None
    assert latest <= instant
    assert schedule.next_after(latest) > instant  # nothing fires in between
    assert schedule.next_after(latest - timedelta(seconds=1)) == latest  # and it is a fire
