"""Mainland China's working days (工作日) and deadlines that fall at the end of one.

The calendar is chinese_calendar's (public holidays and the 调休 make-up workdays) under an
admin-editable override table: an override always wins. For a year the package has no data for,
the calendar falls back to weekends only instead of raising, and `missing_years` tells a job to
warn about it well before such a year starts (the package publishes a new year each November).

Deadlines: "N working days from issue" is the end of the Nth working day after the day of issue,
in Asia/Shanghai: 23:59:59.999999 Beijing time (`end_of_day`), returned in UTC like the rest of
the domain. A moment is on time when it is at or before the deadline, overdue when after it.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
from collections.abc import Mapping

import chinese_calendar

from server.domain.periods import SHANGHAI, local_date

_ONE_DAY = dt.timedelta(days=1)


@functools.cache
def has_data(year: int) -> bool:
    """True when the installed chinese_calendar knows `year`'s holidays and make-up workdays."""
    try:
        chinese_calendar.is_workday(dt.date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


def missing_years(today: dt.date, horizon_days: int = 60) -> list[int]:
    """Years from `today` to `today + horizon_days` that the package has no data for, in order.

    With the default horizon a daily job starts warning on 2 November about the next year, and
    keeps warning (the list includes the current year) once such a year has begun.
    """
    last = today + dt.timedelta(days=max(horizon_days, 0))
    return [year for year in range(today.year, last.year + 1) if not has_data(year)]


def end_of_day(day: dt.date) -> dt.datetime:
    """The last instant of `day` in Asia/Shanghai (23:59:59.999999), as an aware UTC datetime."""
    return dt.datetime.combine(day, dt.time.max, SHANGHAI).astimezone(dt.UTC)


def _aware(instant: dt.datetime, name: str) -> dt.datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")
    return instant


class WorkCalendar:
    """Working days: overrides first, then chinese_calendar, then (years without data) Mon–Fri.

    `overrides` maps a day to True (a working day) or False (a day off); it is copied, so a
    calendar never changes after it is built. Build a new one when the table changes.
    """

    def __init__(self, overrides: Mapping[dt.date, bool] | None = None) -> None:
        self._overrides: dict[dt.date, bool] = dict(overrides or {})
        # Per year, prefix[i] = working days among the year's first i + 1 days: counts in O(years).
        self._prefix: dict[int, tuple[int, ...]] = {}

    @property
    def overrides(self) -> Mapping[dt.date, bool]:
        return dict(self._overrides)

    def is_workday(self, day: dt.date) -> bool:
        override = self._overrides.get(day)
        if override is not None:
            return override
        return _base_year(day.year)[day.timetuple().tm_yday - 1]

    def next_workday(self, day: dt.date) -> dt.date:
        """The first working day strictly after `day`."""
        return self.add_workdays(day, 1)

    def add_workdays(self, day: dt.date, n: int) -> dt.date:
        """The Nth working day strictly after `day`; `day` itself when n == 0 (working or not)."""
        if n < 0:
            raise ValueError("n must be zero or more")
        while n:
            day += _ONE_DAY
            if self.is_workday(day):
                n -= 1
        return day

    def workdays_between(self, a: dt.date, b: dt.date) -> int:
        """Working days after `a` up to and including `b`; 0 when a == b, negative when b < a.

        So `workdays_between(d, add_workdays(d, n)) == n`, and swapping the days flips the sign.
        """
        if b < a:
            return -self.workdays_between(b, a)
        if a.year == b.year:
            return self._upto(b) - self._upto(a)
        count = self._year(a.year)[-1] - self._upto(a)
        for year in range(a.year + 1, b.year):
            count += self._year(year)[-1]
        return count + self._upto(b)

    def deadline_at(self, issued_at: dt.datetime, workdays: int) -> dt.datetime:
        """The end of the `workdays`-th working day after the (Beijing) day of `issued_at`, in UTC."""
        return end_of_day(self.add_workdays(local_date(_aware(issued_at, "issued_at")), workdays))

    def overdue_workdays(self, deadline: dt.datetime, now: dt.datetime) -> int:
        """Working days from the deadline's day to today (Beijing), once `now` is past the deadline.

        0 until the deadline has passed, and 0 on a weekend right after it: the first working day
        after the due day is day 1.
        """
        if _aware(now, "now") <= _aware(deadline, "deadline"):
            return 0
        return self.workdays_between(local_date(deadline), local_date(now))

    def _upto(self, day: dt.date) -> int:
        return self._year(day.year)[day.timetuple().tm_yday - 1]

    def _year(self, year: int) -> tuple[int, ...]:
        prefix = self._prefix.get(year)
        if prefix is None:
            first = dt.date(year, 1, 1)
            last = dt.date(year, 12, 31)
            mine = tuple(sorted((day, on) for day, on in self._overrides.items() if first <= day <= last))
            prefix = self._prefix[year] = _year_prefix(year, mine)
        return prefix


@functools.lru_cache(maxsize=64)
def _base_year(year: int) -> tuple[bool, ...]:
    """Each day of `year`: a working day by chinese_calendar, or Mon–Fri for a year without data.

    Cached for the process: the package's data does not change while it runs, and asking it day by
    day (it validates each date) made every console page that counts overdue days pay for a year.
    """
    data = has_data(year)
    first = dt.date(year, 1, 1).toordinal()
    days = (dt.date.fromordinal(o) for o in range(first, first + (366 if calendar.isleap(year) else 365)))
    return tuple(bool(chinese_calendar.is_workday(d)) if data else d.weekday() < 5 for d in days)


@functools.lru_cache(maxsize=256)
def _year_prefix(year: int, overrides: tuple[tuple[dt.date, bool], ...]) -> tuple[int, ...]:
    """prefix[i] = working days among the year's first i + 1 days, with that year's overrides."""
    changed = {day.timetuple().tm_yday - 1: on for day, on in overrides}
    count, prefix = 0, []
    for i, base in enumerate(_base_year(year)):
        count += changed.get(i, base)
        prefix.append(count)
    return tuple(prefix)
