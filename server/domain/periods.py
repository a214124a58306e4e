"""Days in Asia/Shanghai as UTC instants: a day starts at 00:00 Beijing time, 16:00 UTC the day before."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), SHANGHAI).astimezone(dt.UTC)


def day_bounds(first: dt.date | None, last: dt.date | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    """[start, end) in UTC covering the days first..last inclusive; None where open.

    The calendar's first day starts, in UTC, before year 1 and its last day ends after year 9999,
    which no datetime holds: from 0001-01-01 or to 9999-12-31 is open on that side.
    """
    start = day_start(first) if first and first > dt.date.min else None
    end = day_start(last + dt.timedelta(days=1)) if last and last < dt.date.max else None
    return start, end


def local_date(instant: dt.datetime) -> dt.date:
    return instant.astimezone(SHANGHAI).date()
