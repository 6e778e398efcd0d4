"""Dynamic date parameters: checked at job creation, resolved at each scheduled instant."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidField
from domain.parameters import has_parameters, resolve_parameters, validate_parameters

AT = datetime(2026, 2, 4, 14, 30, 0, tzinfo=UTC)


def resolve_at(text: str, when: datetime = AT, timezone: str = "UTC") -> object:
    return resolve_parameters(text, when, timezone)


def refusal(value: object, field: str = "taskConfig") -> InvalidField:
    with pytest.raises(InvalidField) as raised:
        validate_parameters(value, field)
    return raised.value


# Formats


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("YYYY-MM-DD", "2026-02-04"),
        ("YYYY-MM-DDTHH:mm:ss", "2026-02-04T14:30:00"),
        ("HH:mm:ss", "14:30:00"),
        ("YYYY", "2026"),
        ("MM", "02"),
        ("DD", "04"),
    ],
)
def test_each_format_of_the_seed_table_resolves(fmt: str, expected: str) -> None:
    assert resolve_at(f"${{T:{fmt}}}") == expected


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("YYYYMMDD", "20260204"),
        ("DD.MM.YYYY", "04.02.2026"),
        ("MM/DD/YYYY", "02/04/2026"),
        ("YYYY_MM_DD HH.mm.ss", "2026_02_04 14.30.00"),
        ("HHmm", "1430"),
        ("YYYY-MM", "2026-02"),
    ],
)
def test_tokens_combine_with_separators_into_any_format(fmt: str, expected: str) -> None:
    assert resolve_at(f"${{T:{fmt}}}") == expected


def test_seconds_are_formatted_from_the_scheduled_instant() -> None:
    when = datetime(2026, 2, 4, 9, 5, 7, tzinfo=UTC)

    assert resolve_at("${T:HH:mm:ss}", when) == "09:05:07"


# Day offsets


def test_a_negative_offset_moves_back_across_a_month_end() -> None:
    assert resolve_at("${T-1:YYYY-MM-DD}", datetime(2026, 3, 1, 8, 0, tzinfo=UTC)) == "2026-02-28"


def test_a_negative_offset_lands_on_the_leap_day_of_a_leap_year() -> None:
    assert resolve_at("${T-1:YYYY-MM-DD}", datetime(2028, 3, 1, 8, 0, tzinfo=UTC)) == "2028-02-29"


def test_a_negative_offset_moves_back_across_a_year_end() -> None:
    assert resolve_at("${T-1:YYYY-MM-DD}", datetime(2026, 1, 1, 0, 0, tzinfo=UTC)) == "2025-12-31"


def test_a_positive_offset_moves_forward_across_a_year_end() -> None:
    assert (
        resolve_at("${T+1:YYYY-MM-DD}", datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == "2027-01-01"
    )


def test_an_offset_keeps_the_wall_time() -> None:
    assert resolve_at("${T-7:YYYY-MM-DDTHH:mm:ss}") == "2026-01-28T14:30:00"


def test_a_zero_offset_is_the_scheduled_day() -> None:
    assert resolve_at("${T+0:YYYY-MM-DD}") == resolve_at("${T-0:YYYY-MM-DD}") == "2026-02-04"


def test_an_offset_of_a_hundred_years_is_accepted() -> None:
    assert resolve_at("${T+36500:YYYY}") == "2126"


# Time zones and the scheduled instant


def test_parameters_resolve_in_the_jobs_time_zone() -> None:
    late_evening_utc = datetime(2026, 2, 4, 23, 30, tzinfo=UTC)

    assert (
        resolve_at("${T:YYYY-MM-DD HH:mm}", late_evening_utc, "Asia/Tokyo") == "2026-02-05 08:30"
    )


def test_an_offset_shifts_the_local_date_not_the_utc_date() -> None:
    late_evening_utc = datetime(2026, 2, 4, 23, 30, tzinfo=UTC)

    assert resolve_at("${T-1:YYYY-MM-DD}", late_evening_utc, "Asia/Tokyo") == "2026-02-04"


def test_an_offset_keeps_the_local_wall_time_across_a_dst_change() -> None:
    # Berlin moves to summer time on 2026-03-29; the day before, 12:30 is still winter time.
    when = datetime(2026, 3, 29, 10, 30, tzinfo=UTC)  # 12:30 CEST

    assert resolve_at("${T-1:YYYY-MM-DDTHH:mm}", when, "Europe/Berlin") == "2026-03-28T12:30"


def test_an_offset_into_a_dst_gap_formats_the_wall_time() -> None:
    # 02:30 on 2026-03-29 never happens in Berlin; the day after, 02:30 does.
    when = datetime(2026, 3, 30, 0, 30, tzinfo=UTC)  # 02:30 CEST on the 30th

    assert resolve_at("${T-1:YYYY-MM-DDTHH:mm}", when, "Europe/Berlin") == "2026-03-29T02:30"


def test_a_non_utc_aware_instant_is_read_in_the_jobs_zone() -> None:
    in_new_york = datetime(2026, 2, 4, 9, 30, tzinfo=ZoneInfo("America/New_York"))

    assert resolve_at("${T:HH:mm}", in_new_york, "UTC") == "14:30"


def test_two_scheduled_instants_resolve_to_two_results() -> None:
    first = resolve_at("${T:YYYY-MM-DDTHH:mm:ss}", datetime(2020, 5, 6, 7, 8, 9, tzinfo=UTC))
    second = resolve_at("${T:YYYY-MM-DDTHH:mm:ss}", datetime(2031, 10, 11, 12, 13, 14, tzinfo=UTC))

    assert (first, second) == ("2020-05-06T07:08:09", "2031-10-11T12:13:14")


def test_the_same_scheduled_instant_resolves_the_same_whatever_the_wall_clock() -> None:
    past = datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)

    assert resolve_at("${T:YYYY-MM-DD}", past) == "1999-12-31"


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        resolve_at("${T:YYYY}", datetime(2026, 2, 4, 14, 30))


# Strings and structures


def test_several_parameters_in_one_string_mixed_with_text_all_resolve() -> None:
    text = "/reports?from=${T-7:YYYY-MM-DD}&to=${T:YYYY-MM-DD}&at=${T:HH:mm}"

    assert resolve_at(text) == "/reports?from=2026-01-28&to=2026-02-04&at=14:30"


def test_the_seed_example_resolves_exactly() -> None:
    body = {
        "date": "${T:YYYY-MM-DD}",
        "startDate": "${T-7:YYYY-MM-DD}",
        "endDate": "${T:YYYY-MM-DD}",
        "timestamp": "${T:YYYY-MM-DDTHH:mm:ss}",
    }

    assert resolve_parameters(body, AT, "UTC") == {
        "date": "2026-02-04",
        "startDate": "2026-01-28",
        "endDate": "2026-02-04",
        "timestamp": "2026-02-04T14:30:00",
    }


def test_parameters_resolve_in_nested_dicts_and_lists() -> None:
    config = {"headers": {"X-Date": "${T:YYYY}"}, "body": {"items": [1, ["${T:MM}"]]}}

    assert resolve_parameters(config, AT, "UTC") == {
        "headers": {"X-Date": "2026"},
        "body": {"items": [1, ["02"]]},
    }


def test_dict_keys_are_not_resolved() -> None:
    assert resolve_parameters({"${T:YYYY}": "x"}, AT, "UTC") == {"${T:YYYY}": "x"}


def test_non_string_scalars_pass_through() -> None:
    config = {"count": 3, "ratio": 0.5, "on": True, "none": None}

    assert resolve_parameters(config, AT, "UTC") == config


def test_a_string_without_parameters_is_returned_as_is() -> None:
    text = "plain text with $ and { braces }"

    assert resolve_at(text) is text


def test_resolving_leaves_the_input_untouched() -> None:
    config = {"body": {"dates": ["${T:YYYY}", {"d": "${T-1:DD}"}]}}
    before = copy.deepcopy(config)

    resolved = resolve_parameters(config, AT, "UTC")

    assert config == before
    assert resolved == {"body": {"dates": ["2026", {"d": "03"}]}}


def test_resolving_a_malformed_placeholder_names_it() -> None:
    with pytest.raises(InvalidField, match=r"value\.body\.x: unsupported parameter \$\{HOST\}"):
        resolve_parameters({"body": {"x": "${HOST}"}}, AT, "UTC")


def test_has_parameters_finds_a_placeholder_at_any_depth() -> None:
    assert has_parameters({"body": {"items": [1, {"d": "from ${T-1:YYYY}"}]}}) is True


def test_has_parameters_is_false_without_placeholders() -> None:
    assert has_parameters({"url": "https://example.com/$x{y}", "n": 1, "l": [None]}) is False


# Validation


def test_valid_parameters_pass_validation() -> None:
    config = {"url": "https://x/${T:YYYY}/${T-1:MM}", "body": ["${T+36500:YYYY-MM-DDTHH:mm:ss}"]}

    validate_parameters(config, "taskConfig")


def test_text_without_placeholders_passes_validation() -> None:
    validate_parameters({"a": "cost: $5 {net}", "b": 7, "c": None}, "taskConfig")


def test_an_unknown_token_is_named_with_the_supported_tokens() -> None:
    error = refusal({"body": {"fromDate": "${T:YY-MM}"}})

    assert error.field == "taskConfig.body.fromDate"
    assert str(error) == (
        "taskConfig.body.fromDate: unknown token 'YY' in ${T:YY-MM}; use YYYY, MM, DD, HH, mm, ss"
    )


@pytest.mark.parametrize(
    ("fmt", "token"),
    [("YY", "YY"), ("hh:mm", "hh"), ("YYYY-Q", "Q"), ("HH:mm:ss.SSS", "SSS"), ("D", "D")],
)
def test_every_unknown_token_is_refused(fmt: str, token: str) -> None:
    assert f"unknown token '{token}'" in str(refusal(f"${{T:{fmt}}}"))


@pytest.mark.parametrize(
    "text",
    [
        "${HOST}",
        "https://${HOST}/api",
        "${T}",
        "${T-7}",
        "${T-x:YYYY}",
        "${T+:YYYY}",
        "${T+-1:YYYY}",
        "${T*1:YYYY}",
        "${t:YYYY}",
        "${ T:YYYY}",
        "${T+36501:YYYY}",
        "${}",
    ],
)
def test_every_malformed_placeholder_is_refused_with_the_supported_forms(text: str) -> None:
    error = refusal({"body": {"items": ["ok", 1, text]}})

    assert error.field == "taskConfig.body.items[2]"
    assert "use ${T:FORMAT}, ${T-N:FORMAT} or ${T+N:FORMAT}" in str(error)


def test_an_empty_format_is_refused() -> None:
    assert "empty format in ${T:}" in str(refusal("${T:}"))


def test_a_character_outside_the_separators_is_refused() -> None:
    assert "unsupported character '%' in ${T:%Y}" in str(refusal("${T:%Y}"))


def test_an_unclosed_placeholder_is_refused() -> None:
    assert "'${' at character 5 opens no complete parameter" in str(refusal("from ${T:YYYY"))


def test_a_nested_placeholder_is_refused() -> None:
    assert "opens no complete parameter" in str(refusal("${T:${T:YYYY}}"))


def test_a_second_bad_placeholder_after_a_good_one_is_refused() -> None:
    assert "${HOST}" in str(refusal("${T:YYYY}/${HOST}"))


def test_a_header_path_names_the_header() -> None:
    assert refusal({"headers": {"X-Date": "${T:YYYY-DD-hh}"}}).field == "taskConfig.headers.X-Date"


def test_a_path_names_nested_list_indexes() -> None:
    assert refusal({"a": [[0, "${T}"]]}, "body").field == "body.a[0][1]"


def test_a_long_bad_placeholder_is_shortened_in_the_message() -> None:
    assert len(str(refusal("${" + "A" * 5000 + "}"))) < 300


# Properties

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]
INSTANTS = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
FORMAT_PARTS = st.sampled_from(
    ["YYYY", "MM", "DD", "HH", "mm", "ss", "-", ":", "/", ".", "_", " ", "T"]
)


@given(when=INSTANTS, days=st.integers(-400, 400), zone=st.sampled_from(ZONES))
def test_an_offset_is_the_local_date_plus_whole_days(when: datetime, days: int, zone: str) -> None:
    local_date = when.astimezone(ZoneInfo(zone)).date()
    sign = "-" if days < 0 else "+"

    resolved = resolve_parameters(f"${{T{sign}{abs(days)}:YYYY-MM-DD}}", when, zone)

    assert resolved == (local_date + timedelta(days=days)).isoformat()


@given(text=st.text().filter(lambda t: "${" not in t), when=INSTANTS, zone=st.sampled_from(ZONES))
def test_a_string_without_placeholders_resolves_to_itself(
    text: str, when: datetime, zone: str
) -> None:
    assert resolve_parameters(text, when, zone) == text


@given(parts=st.lists(FORMAT_PARTS, min_size=1, max_size=12), days=st.integers(0, 36500))
def test_every_format_built_from_tokens_and_separators_is_valid(
    parts: list[str], days: int
) -> None:
    text = f"x ${{T-{days}:{''.join(parts)}}} y"

    validate_parameters(text, "taskConfig.body")

    assert "${" not in str(resolve_parameters(text, AT, "UTC"))
