"""Working days on mainland China's calendar: holidays, 调休 make-up days, overrides, years without data."""

from __future__ import annotations

import datetime as dt

import pytest

from server.domain import workdays
from server.domain.periods import SHANGHAI
from server.domain.workdays import WorkCalendar, end_of_day, has_data, missing_years

D = dt.date
CAL = WorkCalendar()
# chinese_calendar 1.11: 春节 2026 is Sun 15 Feb to Mon 23 Feb, with Saturdays 14 and 28 Feb worked.
SPRING_FESTIVAL_2026 = [D(2026, 2, 15) + dt.timedelta(days=i) for i in range(9)]
MAKE_UP_SATURDAYS_2026 = [D(2026, 2, 14), D(2026, 2, 28)]
NO_DATA_YEAR = 2100  # far enough that no release of the package will cover it


def shanghai(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=SHANGHAI)


def brute_between(cal: WorkCalendar, a: dt.date, b: dt.date) -> int:
    sign, (lo, hi) = (1, (a, b)) if a <= b else (-1, (b, a))
    return sign * sum(cal.is_workday(lo + dt.timedelta(days=i)) for i in range(1, (hi - lo).days + 1))


def test_installed_package_covers_2004_to_2026():
    assert has_data(2004) and has_data(2025) and has_data(2026)
    assert not has_data(2003)
    assert not has_data(NO_DATA_YEAR)


@pytest.mark.parametrize("day", SPRING_FESTIVAL_2026)
def test_spring_festival_2026_is_off(day):
    assert not CAL.is_workday(day)


@pytest.mark.parametrize("day", MAKE_UP_SATURDAYS_2026)
def test_make_up_saturdays_are_worked(day):
    assert day.weekday() == 5
    assert CAL.is_workday(day)


def test_ordinary_weeks():
    assert [CAL.is_workday(D(2026, 3, 2) + dt.timedelta(days=i)) for i in range(7)] == [True] * 5 + [False] * 2


def test_add_workdays_across_spring_festival():
    friday = D(2026, 2, 13)
    assert CAL.add_workdays(friday, 1) == D(2026, 2, 14)  # the make-up Saturday
    assert CAL.add_workdays(friday, 2) == D(2026, 2, 24)  # first day back
    assert CAL.add_workdays(friday, 3) == D(2026, 2, 25)
    assert CAL.next_workday(D(2026, 2, 14)) == D(2026, 2, 24)


def test_add_zero_workdays_is_the_day_itself_even_a_holiday():
    assert CAL.add_workdays(D(2026, 2, 16), 0) == D(2026, 2, 16)


def test_add_negative_workdays_is_refused():
    with pytest.raises(ValueError):
        CAL.add_workdays(D(2026, 2, 16), -1)


def test_next_workday_after_a_friday_and_after_a_make_up_saturday():
    assert CAL.next_workday(D(2026, 3, 6)) == D(2026, 3, 9)
    assert CAL.next_workday(D(2026, 2, 27)) == D(2026, 2, 28)


def test_workdays_between_counts_after_a_up_to_b():
    assert CAL.workdays_between(D(2026, 2, 13), D(2026, 2, 24)) == 2
    assert CAL.workdays_between(D(2026, 2, 13), D(2026, 2, 13)) == 0
    assert CAL.workdays_between(D(2026, 2, 24), D(2026, 2, 13)) == -2
    assert CAL.workdays_between(D(2026, 2, 15), D(2026, 2, 23)) == 0


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (D(2025, 12, 20), D(2026, 1, 10)),  # New Year 2026 and its make-up Sunday 4 Jan
        (D(2024, 2, 1), D(2026, 3, 1)),  # several whole years
        (D(2026, 12, 1), D(2027, 2, 1)),  # into a year that may have no data
        (D(2026, 1, 1), D(2026, 12, 31)),
        (D(2024, 12, 31), D(2025, 1, 1)),
        (D(2026, 10, 10), D(2026, 9, 20)),  # backwards
    ],
)
def test_workdays_between_agrees_with_counting_day_by_day(a, b):
    assert CAL.workdays_between(a, b) == brute_between(CAL, a, b)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 10, 30])
def test_between_undoes_add(n):
    for start in (D(2026, 2, 10), D(2026, 2, 14), D(2026, 9, 30), D(2025, 12, 31)):
        assert CAL.workdays_between(start, CAL.add_workdays(start, n)) == n


def test_overrides_win_both_ways():
    cal = WorkCalendar({D(2026, 2, 24): False, D(2026, 2, 22): True, D(2026, 3, 7): True})
    assert not cal.is_workday(D(2026, 2, 24))  # a normal working day given off
    assert cal.is_workday(D(2026, 2, 22))  # a holiday worked
    assert cal.is_workday(D(2026, 3, 7))  # an ordinary Saturday worked
    assert cal.add_workdays(D(2026, 2, 14), 2) == D(2026, 2, 25)
    assert cal.workdays_between(D(2026, 2, 13), D(2026, 3, 7)) == brute_between(cal, D(2026, 2, 13), D(2026, 3, 7))


def test_override_can_cancel_a_make_up_saturday():
    cal = WorkCalendar({D(2026, 2, 14): False})
    assert cal.add_workdays(D(2026, 2, 13), 1) == D(2026, 2, 24)


def test_calendar_keeps_a_copy_of_its_overrides():
    table = {D(2026, 3, 9): False}
    cal = WorkCalendar(table)
    table[D(2026, 3, 10)] = False
    assert cal.is_workday(D(2026, 3, 10))
    assert cal.overrides == {D(2026, 3, 9): False}


def test_year_without_data_falls_back_to_weekends_and_never_raises():
    monday = D(NO_DATA_YEAR, 1, 4)
    assert monday.weekday() == 0
    assert CAL.is_workday(monday)
    assert not CAL.is_workday(monday + dt.timedelta(days=5))
    assert CAL.add_workdays(monday + dt.timedelta(days=4), 1) == monday + dt.timedelta(days=7)
    assert CAL.workdays_between(D(NO_DATA_YEAR, 1, 1), D(NO_DATA_YEAR, 12, 31)) == brute_between(
        CAL, D(NO_DATA_YEAR, 1, 1), D(NO_DATA_YEAR, 12, 31)
    )
    # Overrides still apply: the admin can enter a year's holidays by hand.
    assert not WorkCalendar({monday: False}).is_workday(monday)


def test_a_year_losing_its_data_uses_weekends_only(monkeypatch, request):
    monkeypatch.setattr(workdays, "has_data", lambda year: year < 2026)
    # The years' days are cached for the process: start from nothing, and leave nothing behind.
    for cached in (workdays._base_year, workdays._year_prefix):
        cached.cache_clear()
        request.addfinalizer(cached.cache_clear)
    cal = WorkCalendar()
    assert cal.is_workday(D(2026, 2, 16))  # a Monday of the festival: no data, so a working day
    assert not cal.is_workday(D(2026, 2, 14))  # the make-up Saturday is unknown too
    assert cal.is_workday(D(2025, 2, 8))  # 2025 still has data: its make-up Saturday


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (D(2026, 10, 1), []),
        (D(2026, 11, 1), []),  # 2026-12-31 is 60 days away
        (D(2026, 11, 2), [2027]),  # 2027-01-01 is 60 days away: start warning
        (D(2026, 12, 31), [2027]),
        (D(2027, 3, 1), [2027]),  # still missing once the year has begun
        (D(2027, 12, 1), [2027, 2028]),
    ],
)
def test_missing_years_warns_sixty_days_ahead(monkeypatch, today, expected):
    monkeypatch.setattr(workdays, "has_data", lambda year: year <= 2026)
    assert missing_years(today) == expected


def test_missing_years_horizon(monkeypatch):
    monkeypatch.setattr(workdays, "has_data", lambda year: year <= 2026)
    assert missing_years(D(2026, 6, 1), horizon_days=0) == []
    assert missing_years(D(2026, 6, 1), horizon_days=365) == [2027]
    assert missing_years(D(2026, 12, 31), horizon_days=-5) == []


def test_missing_years_with_the_installed_data():
    assert missing_years(D(2026, 3, 1)) == []
    assert missing_years(D(NO_DATA_YEAR, 3, 1)) == [NO_DATA_YEAR]


def test_end_of_day_is_the_last_microsecond_in_beijing():
    end = end_of_day(D(2026, 2, 25))
    assert end.tzinfo is dt.UTC
    assert end == shanghai(2026, 2, 25, 23, 59, 59, 999999)
    assert end + dt.timedelta(microseconds=1) == shanghai(2026, 2, 26)


def test_deadline_counts_from_the_beijing_day_of_issue():
    # 00:30 on Friday 13 Feb in Beijing is still Thursday in UTC.
    issued = dt.datetime(2026, 2, 12, 16, 30, tzinfo=dt.UTC)
    assert CAL.deadline_at(issued, 3) == end_of_day(D(2026, 2, 25))
    assert CAL.deadline_at(shanghai(2026, 2, 13, 23, 59), 2) == end_of_day(D(2026, 2, 24))
    assert CAL.deadline_at(shanghai(2026, 2, 12, 23, 59), 2) == end_of_day(D(2026, 2, 14))


def test_deadline_of_a_referral_issued_on_a_holiday():
    assert CAL.deadline_at(shanghai(2026, 2, 18, 10), 1) == end_of_day(D(2026, 2, 24))


def test_deadline_needs_an_aware_time():
    with pytest.raises(ValueError):
        CAL.deadline_at(dt.datetime(2026, 2, 13, 10), 1)
    with pytest.raises(ValueError):
        CAL.overdue_workdays(end_of_day(D(2026, 2, 25)), dt.datetime(2026, 3, 1))


def test_overdue_workdays():
    deadline = end_of_day(D(2026, 2, 13))  # Friday before the festival
    assert CAL.overdue_workdays(deadline, shanghai(2026, 2, 13, 12)) == 0
    assert CAL.overdue_workdays(deadline, deadline) == 0  # at the deadline is still on time
    assert CAL.overdue_workdays(deadline, shanghai(2026, 2, 14, 0)) == 1  # the make-up Saturday counts
    assert CAL.overdue_workdays(deadline, shanghai(2026, 2, 20, 9)) == 1  # holidays do not
    assert CAL.overdue_workdays(deadline, shanghai(2026, 2, 24, 9)) == 2
    assert CAL.overdue_workdays(deadline, shanghai(2026, 3, 2, 9)) == 7  # 24–28 Feb (Sat 28 worked), 2 Mar


def test_overdue_on_the_weekend_right_after_the_deadline_is_zero_working_days():
    deadline = end_of_day(D(2026, 3, 6))
    assert CAL.overdue_workdays(deadline, shanghai(2026, 3, 7, 9)) == 0
    assert CAL.overdue_workdays(deadline, shanghai(2026, 3, 9, 9)) == 1
