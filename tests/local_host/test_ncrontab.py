"""NCRONTAB schedules as the Functions host reads them: six fields, seconds first."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from local_host.ncrontab import Schedule, ScheduleError


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def next_of(expression: str, after: datetime) -> datetime | None:
    return Schedule.parse(expression).next_after(after)


def test_a_daily_schedule_fires_at_its_time_today_or_tomorrow():
    assert next_of("0 30 3 * * *", at(2026, 1, 1, 1, 0, 0)) == at(2026, 1, 1, 3, 30, 0)
    assert next_of("0 30 3 * * *", at(2026, 1, 1, 3, 30, 0)) == at(2026, 1, 2, 3, 30, 0)


def test_the_next_occurrence_is_strictly_after_the_given_time_even_within_its_second():
    assert next_of("* * * * * *", at(2026, 1, 1, 0, 0, 0)) == at(2026, 1, 1, 0, 0, 1)
    moment = datetime(2026, 1, 1, 0, 0, 0, 999_999, tzinfo=UTC)
    assert next_of("* * * * * *", moment) == at(2026, 1, 1, 0, 0, 1)


def test_seconds_come_first_so_five_fields_are_refused():
    with pytest.raises(ScheduleError, match="6 fields"):
        Schedule.parse("30 3 * * *")


def test_steps_ranges_and_lists_combine_within_a_field():
    assert next_of("*/15 * * * * *", at(2026, 1, 1, 0, 0, 16)) == at(2026, 1, 1, 0, 0, 30)
    assert next_of("5/20 * * * * *", at(2026, 1, 1, 0, 0, 26)) == at(2026, 1, 1, 0, 0, 45)
    assert next_of("0 10-20/5,59 * * * *", at(2026, 1, 1, 0, 20, 0)) == at(2026, 1, 1, 0, 59, 0)


def test_a_reversed_range_is_read_as_its_ascending_twin_as_ncrontab_does():
    assert Schedule.parse("0 0 20-10 * * *").hours == tuple(range(10, 21))


def test_a_minute_rolls_over_the_hour_day_month_and_year():
    assert next_of("0 0 0 1 1 *", at(2026, 12, 31, 23, 59, 59)) == at(2027, 1, 1, 0, 0, 0)


def test_day_of_month_and_day_of_week_must_both_match():
    # Friday the 13th (Vixie cron would fire on every 13th and every Friday)
    assert next_of("0 0 0 13 * 5", at(2026, 12, 2, 0, 0, 0)) == at(2027, 8, 13, 0, 0, 0)


def test_names_of_months_and_days_match_by_prefix_in_any_case():
    assert next_of("0 0 12 * * Mon-fri", at(2026, 12, 5, 0, 0, 0)) == at(2026, 12, 7, 12, 0, 0)
    assert next_of("0 0 0 1 JUL,january Sunday", at(2026, 1, 1, 0, 0, 0)) == at(2029, 7, 1)


def test_sunday_is_zero_and_seven_is_out_of_range():
    assert next_of("0 0 0 * * 0", at(2026, 12, 2, 0, 0, 0)) == at(2026, 12, 6, 0, 0, 0)
    with pytest.raises(ScheduleError, match="range 0-6"):
        Schedule.parse("0 0 0 * * 7")


def test_the_thirty_first_skips_the_months_without_one():
    assert next_of("0 0 0 31 * *", at(2026, 1, 31, 0, 0, 0)) == at(2026, 3, 31, 0, 0, 0)


def test_the_twenty_ninth_of_february_waits_for_a_leap_year():
    assert next_of("0 0 0 29 2 *", at(2026, 3, 1, 0, 0, 0)) == at(2028, 2, 29, 0, 0, 0)


def test_a_date_that_never_exists_has_no_occurrence():
    assert next_of("0 0 0 30 2 *", at(2026, 1, 1, 0, 0, 0)) is None


def test_the_result_keeps_the_time_zone_it_was_given():
    assert next_of("0 0 * * * *", at(2026, 1, 1, 0, 30, 0)).tzinfo is UTC  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("60 * * * * *", "range 0-59"),
        ("0 0 24 * * *", "range 0-23"),
        ("0 0 0 0 * *", "range 1-31"),
        ("0 0 0 * 13 *", "range 1-12"),
        ("*/0 * * * * *", "positive"),
        ("*/x * * * * *", "positive"),
        ("1,,2 * * * * *", "empty"),
        ("0 0 0 * Foo *", "not a value"),
        ("0 0 0 * * 1-", "not a value"),
        ("", "6 fields"),
    ],
)
def test_an_invalid_field_is_refused_saying_which(expression: str, message: str):
    with pytest.raises(ScheduleError, match=message):
        Schedule.parse(expression)
