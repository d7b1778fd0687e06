"""NCRONTAB schedules, as the Functions host's timer trigger reads them.

Six fields, seconds first: `{second} {minute} {hour} {day} {month} {day-of-week}`, e.g.
`0 30 3 * * *` (03:30:00 every day) or `*/10 * * * * Mon-Fri`. As in NCrontab (the library the
host uses): each field takes `*`, a value, a range `a-b` (reversed ranges are swapped), a step
`*/n`, `a-b/n` or `a/n` (from a to the field's maximum), and comma lists of these; months and
days of the week also take names, matched case-insensitively by prefix (`Jan`, `mon`,
`Thursday`); day of week is 0-6 with Sunday 0. A time must match every field, day of month
*and* day of week (unlike Vixie cron's "either").

Differences, on purpose: a step of 0 is refused (NCrontab takes it as 1), and a schedule with no
occurrence within `HORIZON_YEARS` (e.g. `0 0 0 30 2 *`) has none (`next_after` returns None).
Times are timezone-aware; the local host evaluates schedules in UTC, as Azure does by default
(`WEBSITE_TIME_ZONE` is not read).
"""

from __future__ import annotations

import calendar
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

HORIZON_YEARS = 100

_MONTHS = tuple(calendar.month_name[1:])  # January..December
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


class ScheduleError(ValueError):
    """An expression that is not a valid NCRONTAB schedule; the message says which part."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()

    def parse(self, text: str) -> tuple[int, ...]:
        values: set[int] = set()
        for part in text.split(","):
            values.update(self._part(part))
        return tuple(sorted(values))

    def _part(self, part: str) -> range:
        if not part:
            raise ScheduleError(f"the {self.name} field has an empty value")
        base, slash, step_text = part.partition("/")
        step = self._step(step_text) if slash else 1
        if base == "*":
            return range(self.low, self.high + 1, step)
        first_text, dash, last_text = base.partition("-")
        first = self._value(first_text)
        if dash:
            first, last = sorted((first, self._value(last_text)))
        else:
            last = self.high if slash else first  # `a/n`: from a to the maximum
        return range(first, last + 1, step)

    def _step(self, text: str) -> int:
        if not text.isdigit() or int(text) == 0:
            raise ScheduleError(f"the {self.name} field's step must be a positive number")
        return int(text)

    def _value(self, text: str) -> int:
        value = int(text) if text.isdigit() else self._named(text)
        if not self.low <= value <= self.high:
            raise ScheduleError(
                f"{value} is outside the {self.name} field's range {self.low}-{self.high}"
            )
        return value

    def _named(self, text: str) -> int:
        lowered = text.lower()
        for index, name in enumerate(self.names):
            if lowered and name.lower().startswith(lowered):
                return self.low + index
        raise ScheduleError(f"{text!r} is not a value of the {self.name} field")


_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 6, _DAYS),
)


@dataclass(frozen=True)
class Schedule:
    expression: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: frozenset[int]  # 0 = Sunday

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        parts = expression.split()
        if len(parts) != len(_FIELDS):
            raise ScheduleError(
                f"{expression!r} must have 6 fields: second minute hour day month day-of-week"
            )
        seconds, minutes, hours, days, months, weekdays = (
            field.parse(part) for field, part in zip(_FIELDS, parts, strict=True)
        )
        return cls(expression, seconds, minutes, hours, days, months, frozenset(weekdays))

    def next_after(self, moment: datetime) -> datetime | None:
        """The first occurrence strictly after `moment` (whole seconds), or None within the
        horizon."""
        start = moment.replace(microsecond=0) + timedelta(seconds=1)
        for day in self._days_from(start):
            begin = start if day == start.date() else None
            found = self._time_on(day, begin)
            if found is not None:
                return datetime.combine(day, found, tzinfo=moment.tzinfo)
        return None

    def _days_from(self, start: datetime) -> Iterator[date]:
        """Matching dates from `start`'s, in order, up to the horizon."""
        year, month = start.year, start.month
        for _ in range(HORIZON_YEARS * 12):
            if month in self.months:
                last = calendar.monthrange(year, month)[1]
                for day in self.days:
                    if day > last:
                        break
                    candidate = date(year, month, day)
                    if candidate < start.date():
                        continue
                    if (candidate.weekday() + 1) % 7 in self.weekdays:  # Python: Monday 0
                        yield candidate
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)

    def _time_on(self, day: date, begin: datetime | None) -> time | None:
        """The first matching time of day at or after `begin`'s (any time when None)."""
        floor = (begin.hour, begin.minute, begin.second) if begin is not None else (0, 0, 0)
        for hour in self.hours[bisect_left(self.hours, floor[0]) :]:
            minute_floor = floor[1] if hour == floor[0] else 0
            for minute in self.minutes[bisect_left(self.minutes, minute_floor) :]:
                second_floor = floor[2] if (hour, minute) == floor[:2] else 0
                index = bisect_left(self.seconds, second_floor)
                if index < len(self.seconds):
                    return time(hour, minute, self.seconds[index])
        return None
